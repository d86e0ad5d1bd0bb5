//! The golden data set in `tests/golden/` (a copy of the steering repo's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use gridwatch_contracts::{MeterStatus, SensorReading};

pub fn dir() -> PathBuf {
    crate::modules::workspace_root().join("tests/golden")
}

/// The 42,600 golden readings, in file (arrival) order.
pub fn readings() -> Vec<SensorReading> {
    let mut rdr = csv::Reader::from_path(dir().join("readings.csv")).expect("readings.csv");
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
                    "DEGRADED" => MeterStatus::Degraded,
                    "FAILURE" => MeterStatus::Failure,
                    _ => MeterStatus::Ok,
                },
            }
        })
        .collect()
}

/// (meter_id, timestamp_ms, anomaly_type) → (severity, zscore).
pub type Expected = BTreeMap<(String, i64, String), (String, Option<f64>)>;

/// The expected anomalies for the defaults.
pub fn expected() -> Expected {
    let mut rdr = csv::Reader::from_path(dir().join("expected-anomalies.csv"))
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

/// Compares anomalies with the expected set: same keys and severities, and
/// z-scores within 1e-9 relative. Returns a description of the first difference.
pub fn compare(got: &Expected, want: &Expected) -> Result<(), String> {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "missing {} (first {:?}), extra {} (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        ));
    }
    for (key, (severity, z)) in want {
        let (got_severity, got_z) = &got[key];
        if got_severity != severity {
            return Err(format!("{key:?}: severity {got_severity} vs {severity}"));
        }
        match (z, got_z) {
            (None, None) => {}
            (Some(z), Some(g)) if (z - g).abs() <= 1e-9 * z.abs() + 5e-10 => {}
            _ => return Err(format!("{key:?}: zscore {got_z:?} vs {z:?}")),
        }
    }
    Ok(())
}
