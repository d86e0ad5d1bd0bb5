//! The validate → detect chain as WASM in `fluvio-smartengine` (the engine
//! Fluvio's SPU runs) must give exactly what the native crates give.

use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, Lookback, SmartEngine, SmartModuleChainBuilder,
    SmartModuleChainInstance, SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;
use gridwatch_contracts::ChainRecord;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_detect::DetectState;
use gridwatch_tests::inputs::{GARBAGE, NOW, mixed_inputs, schemas_only, schemas_param};
use gridwatch_tests::{golden, modules};
use gridwatch_validator::{ValidateConfig, validate_record};

fn chain_with(
    detect_params: &[(&str, &str)],
    lookback: Option<Lookback>,
) -> Result<SmartModuleChainInstance, String> {
    let engine = SmartEngine::new();
    let mut builder = SmartModuleChainBuilder::default();
    let schemas = schemas_param();
    builder.add_smart_module(
        SmartModuleConfig::builder()
            .smartmodule_names(vec!["gridwatch-validate".to_string()])
            .param("schemas", schemas)
            .build()
            .expect("config"),
        modules::module("gridwatch_validate"),
    );
    let mut detect = SmartModuleConfig::builder();
    detect
        .smartmodule_names(vec!["gridwatch-detect".to_string()])
        .param("schemas", schemas)
        .lookback(lookback);
    for (k, v) in detect_params {
        detect.param(*k, *v);
    }
    builder.add_smart_module(
        detect.build().expect("config"),
        modules::module("gridwatch_detect"),
    );
    builder.initialize(&engine).map_err(|e| format!("{e:#}"))
}

/// Runs inputs through the WASM chain in batches; offsets start at 0.
fn run_wasm(
    chain: &mut SmartModuleChainInstance,
    inputs: &[Vec<u8>],
    batch: usize,
) -> Vec<(i64, ChainRecord)> {
    let mut out = Vec::with_capacity(inputs.len());
    for (n, chunk) in inputs.chunks(batch).enumerate() {
        let records: Vec<Record> = chunk
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let mut r = Record::new(bytes.clone());
                r.preamble.set_offset_delta(i as i64);
                r
            })
            .collect();
        let mut input = SmartModuleInput::try_from_records(records, DEFAULT_SMARTENGINE_VERSION)
            .expect("input");
        input.set_base_offset((n * batch) as i64);
        input.set_base_timestamp(NOW);
        let output = chain.process(input).expect("chain runs");
        assert!(output.error.is_none(), "chain error: {:?}", output.error);
        for (i, record) in output.successes.iter().enumerate() {
            let decoded =
                ChainRecord::from_avro(record.value.as_ref()).expect("output is a ChainRecord");
            out.push(((n * batch + i) as i64, decoded));
        }
    }
    out
}

/// The same inputs through the native crates.
fn run_native(inputs: &[Vec<u8>], state: &mut DetectState) -> Vec<(i64, ChainRecord)> {
    let validate = ValidateConfig::from_params(schemas_only).expect("params");
    inputs
        .iter()
        .enumerate()
        .map(|(offset, bytes)| {
            let validated = validate_record(bytes, offset as i64, &validate, NOW);
            let out = state.process(&validated.to_avro().expect("avro"), offset as i64, 0);
            (offset as i64, out)
        })
        .collect()
}

fn blank_detected_at(record: &mut ChainRecord) {
    if let ChainRecord::Scored(s) = record {
        for a in &mut s.anomalies {
            a.detected_at = 0;
        }
    }
}

fn anomalies_of(outputs: &[(i64, ChainRecord)]) -> golden::Expected {
    outputs
        .iter()
        .filter_map(|(_, r)| match r {
            ChainRecord::Scored(s) => Some(s.anomalies.iter()),
            _ => None,
        })
        .flatten()
        .map(|a| {
            (
                (
                    a.original_event.meter_id.clone(),
                    a.original_event.timestamp,
                    a.anomaly_type.as_str().to_string(),
                ),
                (a.severity.as_str().to_string(), a.zscore),
            )
        })
        .collect()
}

#[test]
fn wasm_chain_equals_native_on_the_golden_data_ids_and_evidence_included() {
    let readings = golden::readings();
    let inputs = mixed_inputs(&readings);
    let mut chain = chain_with(&[], None).expect("chain initialises");
    let mut wasm = run_wasm(&mut chain, &inputs, 1000);
    let mut state = DetectState::from_params(schemas_only).expect("state");
    let mut native = run_native(&inputs, &mut state);
    assert_eq!(
        wasm.len(),
        inputs.len(),
        "one output per input, nothing dropped"
    );
    for ((_, w), (_, n)) in wasm.iter_mut().zip(native.iter_mut()) {
        blank_detected_at(w);
        blank_detected_at(n);
    }
    for (w, n) in wasm.iter().zip(&native) {
        assert_eq!(w, n);
    }
    let dead = wasm
        .iter()
        .filter(|(_, r)| matches!(r, ChainRecord::DeadLetter(_)))
        .count();
    assert_eq!(
        dead,
        inputs.iter().filter(|b| b.as_slice() == GARBAGE).count()
    );

    // The garbage records took the place of real readings, so score the
    // complete golden set through WASM as well and hold it to the reference.
    let clean: Vec<Vec<u8>> = mixed_inputs(&readings)
        .into_iter()
        .zip(&readings)
        .map(|(b, r)| {
            if b == GARBAGE {
                gridwatch_tests::inputs::json(r)
            } else {
                b
            }
        })
        .collect();
    let mut chain = chain_with(&[], None).expect("chain initialises");
    let outputs = run_wasm(&mut chain, &clean, 10_000);
    golden::compare(&anomalies_of(&outputs), &golden::expected())
        .expect("WASM matches the golden anomalies");
}

#[test]
fn params_reach_the_detector_and_bad_ones_fail_init_with_the_key() {
    let Err(err) = chain_with(&[("threshold", "5")], None) else {
        panic!("init must fail")
    };
    assert!(err.contains("threshold = \"5\" is not allowed"), "{err}");
    let Err(err) = chain_with(&[("window", "soon")], None) else {
        panic!("init must fail")
    };
    assert!(err.contains("window"), "{err}");

    // A stricter threshold finds fewer anomalies than the default.
    let readings = golden::readings();
    let inputs: Vec<Vec<u8>> = readings.iter().map(gridwatch_tests::inputs::json).collect();
    let count = |params: &[(&str, &str)]| {
        let mut chain = chain_with(params, None).expect("chain");
        anomalies_of(&run_wasm(&mut chain, &inputs, 5000)).len()
    };
    assert!(count(&[("threshold", "3.5")]) < count(&[]));
}

#[test]
fn look_back_warms_windows_like_uninterrupted_processing() {
    let readings = golden::readings();
    let inputs = mixed_inputs(&readings[..12_000]);
    // Reference: one chain sees everything.
    let mut chain = chain_with(&[], None).expect("chain");
    let full = run_wasm(&mut chain, &inputs, 1000);

    // A restarted chain warms from the last 6 minutes (6 meters at 1 Hz,
    // more than the 5-minute window) and then processes the rest.
    let split = 10_000;
    let warm_from = split - 6 * 60 * 6;
    let mut chain =
        chain_with(&[], Some(Lookback::Last((split - warm_from) as u64))).expect("chain");
    let history: Vec<Record> = inputs[warm_from..split]
        .iter()
        .map(|b| Record::new(b.clone()))
        .collect();
    futures_executor::block_on(chain.look_back(|lookback| {
        let history = history.clone();
        async move {
            assert_eq!(lookback, Lookback::Last(history.len() as u64));
            Ok(history)
        }
    }))
    .expect("look_back runs");
    let mut rest = run_wasm(&mut chain, &inputs[split..], 1000);
    let mut expected: Vec<ChainRecord> = full[split..].iter().map(|(_, r)| r.clone()).collect();
    // Offsets restart at 0 in the second run, which changes anomaly ids; the
    // scoring itself must not change.
    for (r, e) in rest.iter_mut().zip(expected.iter_mut()) {
        blank_detected_at(&mut r.1);
        blank_detected_at(e);
        if let (ChainRecord::Scored(a), ChainRecord::Scored(b)) = (&r.1, &*e) {
            // Same window contents, but the running sums were built from a
            // different history, so floats may differ in the last bits.
            assert_eq!(a.scores.len(), b.scores.len());
            for (x, y) in a.scores.iter().zip(&b.scores) {
                assert_eq!((x.window_count, x.anomalous), (y.window_count, y.anomalous));
                for (p, q) in [
                    (x.window_mean, y.window_mean),
                    (x.window_stddev, y.window_stddev),
                    (x.zscore, y.zscore),
                ] {
                    let (Some(p), Some(q)) = (p, q) else {
                        assert_eq!(p, q);
                        continue;
                    };
                    assert!(
                        (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                        "{x:?} vs {y:?}"
                    );
                }
            }
            assert_eq!(
                a.anomalies
                    .iter()
                    .map(|x| (x.anomaly_type, x.severity))
                    .collect::<Vec<_>>(),
                b.anomalies
                    .iter()
                    .map(|x| (x.anomaly_type, x.severity))
                    .collect::<Vec<_>>()
            );
        } else {
            assert_eq!(std::mem::discriminant(&r.1), std::mem::discriminant(e));
        }
    }
}
