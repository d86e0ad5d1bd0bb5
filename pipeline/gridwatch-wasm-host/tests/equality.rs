//! The host must run the real Gridwatch modules exactly as Fluvio's own
//! engine does: same records out (byte for byte, but for the wall-clock
//! `detected_at`), same look_back behaviour, same init errors.

mod common;

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::{comparable, detect_wasm, gridwatch_chain};
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance,
    SmartModuleConfig,
};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;
use gridwatch_contracts::ChainRecord;
use gridwatch_tests::golden;
use gridwatch_tests::inputs::{NOW, mixed_inputs as encode_inputs, schemas_param};
use gridwatch_wasm_host::{Batch, Chain, HostError, Lookback, Record};

fn smartengine_chain(lookback: Option<u64>) -> SmartModuleChainInstance {
    let engine = SmartEngine::new();
    let mut builder = SmartModuleChainBuilder::default();
    builder.add_smart_module(
        SmartModuleConfig::builder()
            .smartmodule_names(vec!["validate".to_string()])
            .param("schemas", schemas_param())
            .build()
            .expect("config"),
        common::validate_wasm().to_vec(),
    );
    builder.add_smart_module(
        SmartModuleConfig::builder()
            .smartmodule_names(vec!["detect".to_string()])
            .param("schemas", schemas_param())
            .lookback(lookback.map(fluvio_smartengine::Lookback::Last))
            .build()
            .expect("config"),
        detect_wasm().to_vec(),
    );
    builder.initialize(&engine).expect("smartengine chain")
}

/// Batches of records with offset deltas 0..n, as a producer numbers them.
fn batches(inputs: &[Vec<u8>], size: usize) -> Vec<Vec<Record>> {
    inputs
        .chunks(size)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, bytes)| {
                    let mut r = Record::new(bytes.clone());
                    r.preamble.set_offset_delta(i as i64);
                    r
                })
                .collect()
        })
        .collect()
}

fn run_smartengine(
    chain: &mut SmartModuleChainInstance,
    batches: &[Vec<Record>],
    first_offset: i64,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut offset = first_offset;
    for batch in batches {
        let mut input =
            SmartModuleInput::try_from_records(batch.clone(), DEFAULT_SMARTENGINE_VERSION)
                .expect("input");
        input.set_base_offset(offset);
        input.set_base_timestamp(NOW);
        let output = chain.process(input).expect("smartengine runs");
        assert!(output.error.is_none(), "{:?}", output.error);
        out.extend(output.successes);
        offset += batch.len() as i64;
    }
    out
}

fn run_host(chain: &mut Chain, batches: &[Vec<Record>], first_offset: i64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut offset = first_offset;
    for batch in batches {
        let output = chain.process(batch, offset, NOW).expect("host runs");
        assert!(output.error().is_none(), "{:?}", output.error());
        assert_eq!(output.iter().count(), output.len());
        out.extend(output.to_records().expect("records"));
        offset += batch.len() as i64;
    }
    out
}

/// Compares two hosts' outputs record by record; returns how many anomalies
/// the records carried, so a test can check it compared something.
fn assert_same_records(ours: &[Record], theirs: &[Record]) -> usize {
    assert_eq!(ours.len(), theirs.len(), "record counts differ");
    let mut anomalies = 0;
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            a.offset_delta(),
            b.offset_delta(),
            "offset delta of record {i}"
        );
        assert_eq!(
            a.timestamp_delta(),
            b.timestamp_delta(),
            "timestamp delta of record {i}"
        );
        assert_eq!(a.key(), b.key(), "key of record {i}");
        assert_eq!(a.headers, b.headers, "headers of record {i}");
        let (record, ours_bytes) = comparable(a.value().as_ref());
        let (_, theirs_bytes) = comparable(b.value().as_ref());
        assert_eq!(ours_bytes, theirs_bytes, "value of record {i}: {record:?}");
        match &record {
            ChainRecord::Scored(s) if !s.anomalies.is_empty() => anomalies += s.anomalies.len(),
            // Without anomalies there is no wall clock in the record at all.
            _ => assert_eq!(
                a.value().as_ref(),
                b.value().as_ref(),
                "raw value of record {i}"
            ),
        }
    }
    anomalies
}

#[test]
fn golden_readings_give_the_same_records_as_fluvio_smartengine() {
    let readings = golden::readings();
    let inputs = encode_inputs(&readings);
    let batches = batches(&inputs, 1000);

    let theirs = run_smartengine(&mut smartengine_chain(None), &batches, 0);
    let mut chain = gridwatch_chain(&[]).build().expect("chain");
    let ours = run_host(&mut chain, &batches, 0);
    assert_eq!(ours.len(), inputs.len(), "one output per input");
    let anomalies = assert_same_records(&ours, &theirs);
    assert!(anomalies > 400, "only {anomalies} anomalies compared");
    let dead = ours
        .iter()
        .filter(|r| matches!(comparable(r.value().as_ref()).0, ChainRecord::DeadLetter(_)))
        .count();
    assert_eq!(
        dead,
        inputs.iter().filter(|b| b.ends_with(b"\xff\xff")).count()
    );
}

#[test]
fn batch_boundaries_and_the_encoded_batch_path_change_nothing() {
    let readings = golden::readings();
    let inputs = encode_inputs(&readings[..9_000]);
    let theirs = run_smartengine(&mut smartengine_chain(None), &batches(&inputs, 1000), 0);

    // Odd batch sizes, built with `Batch::push` (offset delta = position).
    let mut chain = gridwatch_chain(&[]).build().expect("chain");
    let mut ours = Vec::new();
    let mut batch = Batch::new();
    let mut offset = 0;
    for chunk in inputs.chunks(1000) {
        // Same offsets as smartengine's 1000-record batches, split unevenly.
        for (start, end) in [(0, 337), (337, 338), (338, chunk.len())] {
            let end = end.min(chunk.len());
            if start >= end {
                continue;
            }
            batch.clear();
            for (i, bytes) in chunk[start..end].iter().enumerate() {
                batch.push_record(None, bytes, (start + i) as i64, 0);
            }
            let output = chain.process_batch(&batch, offset, NOW).expect("runs");
            ours.extend(output.to_records().expect("records"));
        }
        offset += chunk.len() as i64;
    }
    assert_same_records(&ours, &theirs);
}

/// Polls smartengine's `look_back` future, which completes at once because
/// the reader below never waits.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn look_back_warms_detect_as_in_fluvio_smartengine() {
    let readings = golden::readings();
    let inputs = encode_inputs(&readings[..12_000]);
    let split = 10_000;
    let warm_from = split - 6 * 60 * 6;
    let history: Vec<Record> = inputs[warm_from..split]
        .iter()
        .map(|b| Record::new(b.clone()))
        .collect();
    let rest = batches(&inputs[split..], 500);

    let mut theirs_chain = smartengine_chain(Some(history.len() as u64));
    block_on(theirs_chain.look_back(|lookback| {
        let history = history.clone();
        async move {
            assert_eq!(
                lookback,
                fluvio_smartengine::Lookback::Last(history.len() as u64)
            );
            Ok(history)
        }
    }))
    .expect("smartengine look_back");
    let theirs = run_smartengine(&mut theirs_chain, &rest, split as i64);

    let builder = {
        let mut b = gridwatch_chain(&[]);
        let detect = &mut b.modules_mut()[1];
        detect.lookback = Some(Lookback::last(history.len() as u64));
        b
    };
    let mut chain = builder.build().expect("chain");
    let requests = chain.lookbacks();
    assert_eq!(requests.len(), 1, "only detect asked for history");
    assert_eq!(requests[0].module, "detect");
    chain
        .look_back_with(|request| {
            assert_eq!(request.lookback, Lookback::last(history.len() as u64));
            Ok::<_, std::io::Error>(history.clone())
        })
        .expect("look_back");
    let ours = run_host(&mut chain, &rest, split as i64);
    let anomalies = assert_same_records(&ours, &theirs);
    assert!(anomalies > 0);

    // Warmed windows score the first readings after the split; a cold chain
    // cannot, so look_back really reached the module.
    let mut cold = gridwatch_chain(&[]).build().expect("chain");
    let cold_out = run_host(&mut cold, &rest[..1], split as i64);
    let scored = |records: &[Record]| {
        records
            .iter()
            .filter(|r| match comparable(r.value().as_ref()).0 {
                ChainRecord::Scored(s) => s.scores.iter().any(|x| x.zscore.is_some()),
                _ => false,
            })
            .count()
    };
    assert!(scored(&ours[..500]) > scored(&cold_out));
}

#[test]
fn init_errors_carry_the_module_message() {
    let err = gridwatch_chain(&[("threshold", "5")])
        .build()
        .expect_err("init must fail");
    match &err {
        HostError::Init { module, message } => {
            assert_eq!(module, "detect");
            assert!(
                message.contains("threshold = \"5\" is not allowed"),
                "{message}"
            );
        }
        other => panic!("expected an init error, got {other}"),
    }
    assert!(!err.is_retryable() && !err.poisons_chain());
    let err = gridwatch_chain(&[("window", "soon")])
        .build()
        .expect_err("init must fail");
    assert!(err.to_string().contains("window"), "{err}");
}
