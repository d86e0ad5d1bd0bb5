//! Precision and recall of Gridwatch's detection on the simulator's
//! labelled faults, through the same validate → detect WASM chain the
//! pipeline runs (`gridwatch score`), not the native detector.
//!
//! ```sh
//! cargo run -p gridwatch-tests --example simulator_precision     # 1,000 meters, 1 h of event time
//! SIM_METERS=200 SIM_HOURS=6 cargo run -p gridwatch-tests --example simulator_precision
//! ```

use std::io::Write;
use std::process::Command;

use gridwatch_contracts::AnomalyEvent;
use gridwatch_simulator::score::{Detection, ScoreOptions, score};
use gridwatch_simulator::{SimEvent, Simulator, SimulatorConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let meters = env("SIM_METERS", 1000) as u32;
    let hours = env("SIM_HOURS", 1);
    let config = SimulatorConfig {
        meters,
        ..SimulatorConfig::default()
    };
    let per_meter = hours * 3600 / config.interval.as_secs().max(1);
    let total = per_meter * u64::from(meters);
    let mut sim = Simulator::starting_at(config, 1_767_225_600_000).expect("simulator config");
    let warmup_end = sim.warmup_end_ms();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.ndjson");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
    let (mut labels, mut readings, mut malformed) = (Vec::new(), 0u64, 0u64);
    let mut left = total;
    while left > 0 {
        let batch = sim.next_batch(left.min(100_000) as usize);
        if batch.is_empty() {
            break;
        }
        left -= batch.len() as u64;
        for event in batch {
            if let Some(label) = event.label() {
                labels.push(label.clone());
            }
            match event {
                SimEvent::Reading(r, _) => {
                    readings += 1;
                    serde_json::to_writer(&mut file, &r).expect("json");
                    file.write_all(b"\n").expect("write");
                }
                // A validation matter: validate dead-letters these.
                SimEvent::Malformed(..) => malformed += 1,
            }
        }
    }
    file.flush().expect("flush");
    drop(file);

    let out = Command::new(gridwatch_tests::process::binary())
        .arg("score")
        .arg(&path)
        .env(
            "GRIDWATCH_RUNTIME__MODULES_DIR",
            gridwatch_tests::modules::wasm_dir(),
        )
        .output()
        .expect("gridwatch score runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detections: Vec<Detection> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let a: AnomalyEvent = serde_json::from_str(l).expect("an AnomalyEvent");
            Detection::from(&a)
        })
        .collect();
    let result = score(
        &labels,
        &detections,
        ScoreOptions {
            ignore_before: Some(warmup_end),
            ..Default::default()
        },
    );
    println!(
        "{meters} meters x {hours} h: {readings} readings, {malformed} malformed, {} labels, {} anomalies detected",
        labels.len(),
        detections.len()
    );
    print!("{}", String::from_utf8_lossy(&out.stderr));
    println!("{result}");
    println!(
        "overall precision {:.4}, recall {:.4}",
        result.precision().unwrap_or(f64::NAN),
        result.recall().unwrap_or(f64::NAN)
    );
}
