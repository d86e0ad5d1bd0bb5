//! The detection rule against the golden data set.
//!
//! `tests/golden/expected-anomalies.csv` was computed by an independent
//! two-pass implementation of the rule with the defaults. Every anomaly must
//! match by meter, timestamp, type and severity, and every z-score within
//! 1e-9 relative (the file prints nine decimals).

use std::path::PathBuf;

use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_tests::golden;

#[test]
fn golden_readings_give_exactly_the_expected_anomalies() {
    let readings = golden::readings();
    assert_eq!(readings.len(), 42_600);
    let mut detector = Detector::new(DetectorConfig::default());
    let mut got = golden::Expected::new();
    for (offset, reading) in readings.iter().enumerate() {
        for a in detector.process(reading, offset as i64, 0).anomalies {
            let key = (
                a.original_event.meter_id.clone(),
                a.original_event.timestamp,
                a.anomaly_type.as_str().to_string(),
            );
            let previous = got.insert(key, (a.severity.as_str().to_string(), a.zscore));
            assert!(previous.is_none(), "one anomaly of a type per reading");
        }
    }
    let want = golden::expected();
    assert_eq!(want.len(), 512);
    golden::compare(&got, &want).unwrap();
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
        let ours = std::fs::read(golden::dir().join(file)).expect("our copy");
        let theirs = std::fs::read(shared.join(file)).expect("shared copy");
        assert!(
            ours == theirs,
            "tests/golden/{file} differs from shared/golden/{file}"
        );
    }
}
