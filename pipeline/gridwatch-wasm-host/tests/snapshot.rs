//! A chain restored from a snapshot behaves exactly like the chain the
//! snapshot was taken from: the runtime's fast recovery rests on it.

mod common;

use common::{comparable, gridwatch_chain};
use gridwatch_tests::golden;
use gridwatch_tests::inputs::{NOW, mixed_inputs};
use gridwatch_wasm_host::{Batch, Chain, HostError, Record};

fn batch(inputs: &[Vec<u8>]) -> Batch {
    let records: Vec<Record> = inputs
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let mut r = Record::new(bytes.clone());
            r.preamble.set_offset_delta(i as i64);
            r
        })
        .collect();
    Batch::from_records(&records).expect("batch")
}

/// Runs `inputs` from `first_offset` in batches of 50; comparable outputs.
fn run(chain: &mut Chain, inputs: &[Vec<u8>], first_offset: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, chunk) in inputs.chunks(50).enumerate() {
        let output = chain
            .process_batch(&batch(chunk), first_offset + (n * 50) as i64, NOW)
            .expect("chain runs");
        assert!(output.error().is_none(), "{:?}", output.error());
        out.extend(output.iter().map(|r| comparable(r.value).1));
    }
    out
}

#[test]
fn a_restored_chain_continues_exactly_like_the_original() {
    let inputs = mixed_inputs(&golden::readings());
    assert!(
        inputs.len() > 200,
        "the golden set is large enough to split"
    );
    let half = inputs.len() / 2;
    let builder = gridwatch_chain(&[]);

    let mut whole = builder.build().expect("chain");
    let want = run(&mut whole, &inputs, 0);

    let mut first = builder.build().expect("chain");
    run(&mut first, &inputs[..half], 0);
    let snapshot = first.snapshot().expect("snapshot");
    assert_eq!(snapshot.memories.len(), 2, "one image per module");
    drop(first);

    let mut restored = builder.build().expect("chain");
    restored.restore(&snapshot).expect("restore");
    let got = run(&mut restored, &inputs[half..], half as i64);
    assert_eq!(got.len(), want.len() - half);
    for (i, (g, w)) in got.iter().zip(&want[half..]).enumerate() {
        assert_eq!(g, w, "output {} differs after the restore", half + i);
    }

    // Without the restore the second half scores differently: the windows
    // are empty, so the test above could not pass by accident.
    let mut cold = builder.build().expect("chain");
    let cold_out = run(&mut cold, &inputs[half..], half as i64);
    assert_ne!(cold_out, want[half..].to_vec(), "state matters to scores");
}

#[test]
fn a_snapshot_for_another_chain_shape_is_refused() {
    let builder = gridwatch_chain(&[]);
    let chain = builder.build().expect("chain");
    let mut snapshot = chain.snapshot().expect("snapshot");
    snapshot.memories.pop();
    let mut other = builder.build().expect("chain");
    match other.restore(&snapshot) {
        Err(HostError::Snapshot { reason, .. }) => {
            assert!(reason.contains("1 modules"), "{reason}")
        }
        other => panic!("expected a snapshot error, got {other:?}"),
    }
}

/// The detect module says how many meters it holds (for the detector-state
/// gauge), and a restored chain says the same as the one it came from.
#[test]
fn the_chain_reports_the_meters_its_detector_holds() {
    let readings = golden::readings();
    let meters: std::collections::BTreeSet<&str> =
        readings.iter().map(|r| r.meter_id.as_str()).collect();
    let builder = gridwatch_chain(&[]);
    let mut chain = builder.build().expect("chain");
    assert_eq!(chain.state_meters().expect("answers"), Some(0));
    run(&mut chain, &mixed_inputs(&readings), 0);
    let held = chain
        .state_meters()
        .expect("answers")
        .expect("detect exports it");
    eprintln!(
        "detect holds {held} of the golden set's {} meters",
        meters.len()
    );
    assert_eq!(
        held,
        meters.len() as u64,
        "every golden meter is in its window"
    );
    let mut restored = builder.build().expect("chain");
    restored
        .restore(&chain.snapshot().expect("snapshot"))
        .expect("restore");
    assert_eq!(restored.state_meters().expect("answers"), Some(held));
}
