//! The detection rule against the golden data set.
//!
//! `tests/golden/expected-anomalies.csv` was computed by an independent
//! two-pass implementation of the rule with the defaults. Every anomaly must
//! match by meter, timestamp, type and severity, and every z-score within
//! 1e-9 relative (the file prints nine decimals).

use std::collections::BTreeMap;
use std::path::PathBuf;

use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_detector::{Detector, DetectorConfig};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

pub fn readings() -> Vec<SensorReading> {
    let mut rdr = csv::Reader::from_path(golden_dir().join("readings.csv")).expect("readings.csv");
    rdr.records()
        .map(|row| {
            let row = row.expect("csv row");
            SensorReading {
                meter_id: row[0].to_string(),
                timestamp: row[1].parse().expect("timestamp_ms"),
                voltage: row[2].parse().expect("voltage"),
                current: row[3].parse().expect("current"),
                temperature: row[4].parse().expect("temperature"),
                status: match &row[5] {
                    "OK" => MeterStatus::Ok,
                    "DEGRADED" => MeterStatus::Degraded,
                    "FAILURE" => MeterStatus::Failure,
                    other => panic!("unknown status {other}"),
                },
            }
        })
        .collect()
}

type Key = (String, i64, String);

fn expected() -> BTreeMap<Key, (String, Option<f64>)> {
    let mut rdr = csv::Reader::from_path(golden_dir().join("expected-anomalies.csv"))
        .expect("expected-anomalies.csv");
    rdr.records()
        .map(|row| {
            let row = row.expect("csv row");
            let z = (!row[4].is_empty()).then(|| row[4].parse().expect("zscore"));
            (
                (
                    row[0].to_string(),
                    row[1].parse().expect("ts"),
                    row[2].to_string(),
                ),
                (row[3].to_string(), z),
            )
        })
        .collect()
}

#[test]
fn golden_readings_give_exactly_the_expected_anomalies() {
    let readings = readings();
    assert_eq!(readings.len(), 42_600);
    let mut detector = Detector::new(DetectorConfig::default());
    let mut got = BTreeMap::new();
    for (offset, reading) in readings.iter().enumerate() {
        let scored = detector.process(reading, offset as i64, 0);
        for a in scored.anomalies {
            let key = (
                a.original_event.meter_id.clone(),
                a.original_event.timestamp,
                a.anomaly_type.as_str().to_string(),
            );
            assert!(
                got.insert(key, (a.severity.as_str().to_string(), a.zscore))
                    .is_none()
            );
        }
    }
    let want = expected();
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {} (first {:?}), extra {} (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (key, (severity, z)) in &want {
        let (got_severity, got_z) = &got[key];
        assert_eq!(got_severity, severity, "{key:?}");
        match (z, got_z) {
            (None, None) => {}
            (Some(z), Some(g)) => assert!(
                (z - g).abs() <= 1e-9 * z.abs() + 5e-10,
                "{key:?}: z {g} vs expected {z}"
            ),
            _ => panic!("{key:?}: zscore presence differs: {got_z:?} vs {z:?}"),
        }
    }
    assert_eq!(got.len(), 512);
}

#[test]
fn shared_golden_copy_is_current() {
    // The repository carries a copy so CI needs nothing outside the clone;
    // when the steering copy is beside the checkout, they must agree.
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden");
    if !shared.exists() {
        println!(
            "skipped: no shared/golden beside the checkout at {}",
            shared.display()
        );
        return;
    }
    for file in ["readings.csv", "expected-anomalies.csv"] {
        let ours = std::fs::read(golden_dir().join(file)).expect("our copy");
        let theirs = std::fs::read(shared.join(file)).expect("shared copy");
        assert!(
            ours == theirs,
            "tests/golden/{file} differs from shared/golden/{file}"
        );
    }
}
