//! The peers' input: simulator readings as an NDJSON file (the JSON edge
//! format ingest accepts), and the native detector's verdict on them, so a
//! peer baseline can be checked for doing the same work, not just timed.

use std::io::Write as _;
use std::path::Path;

use gridwatch_contracts::AnomalyType;
use gridwatch_detector::{Detector, DetectorConfig};
use serde::Serialize;

use crate::error::BenchError;

/// What was written and what Gridwatch's detector makes of it.
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    pub events: usize,
    pub meters: u32,
    pub bytes: u64,
    /// Voltage z-score anomalies (surges and sags) under the default rule.
    pub zscore_anomalies: u64,
}

/// Writes `events` readings of `meters` meters to `path` and counts the
/// z-score anomalies the default detector finds in them.
pub fn dump(path: &Path, events: usize, meters: u32) -> Result<DumpReport, BenchError> {
    let readings = crate::wasm::readings(meters, events)?;
    let file = std::fs::File::create(path).map_err(BenchError::io(path))?;
    let mut out = std::io::BufWriter::new(file);
    let mut detector = Detector::new(DetectorConfig::default());
    let mut zscore = 0;
    for (i, r) in readings.iter().enumerate() {
        serde_json::to_writer(&mut out, r)
            .map_err(|e| BenchError::io(path)(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(BenchError::io(path))?;
        let scored = detector.process(r, i as i64, 0);
        zscore += scored
            .anomalies
            .iter()
            .filter(|a| {
                matches!(
                    a.anomaly_type,
                    AnomalyType::VoltageSurge | AnomalyType::VoltageSag
                )
            })
            .count() as u64;
    }
    out.flush().map_err(BenchError::io(path))?;
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok(DumpReport {
        events: readings.len(),
        meters,
        bytes,
        zscore_anomalies: zscore,
    })
}
