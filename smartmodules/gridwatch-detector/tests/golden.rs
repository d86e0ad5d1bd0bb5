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

/// FNV-1a over every bit the detector reports for a run, so a change of
/// internal representation (the compact window store) can be checked to
/// give exactly the same scores, not merely scores within 1e-9.
fn score_digest(config: DetectorConfig, readings: &[gridwatch_contracts::SensorReading]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    let opt = |x: Option<f64>| x.map_or(u64::MAX - 1, f64::to_bits);
    let mut detector = Detector::new(config);
    for (offset, reading) in readings.iter().enumerate() {
        let s = detector.process(reading, offset as i64, 0);
        eat(s.disposition as u64);
        for f in &s.scores {
            eat(f.value.to_bits());
            eat(f.window_count as u64);
            eat(opt(f.window_mean));
            eat(opt(f.window_stddev));
            eat(opt(f.zscore));
            eat(u64::from(f.anomalous));
        }
        eat(s.anomalies.len() as u64);
    }
    h
}

/// The golden readings, with every 7th reading delayed past the next few
/// of its meter (within the default 5 s lateness), so late inserts happen.
fn with_late_readings() -> Vec<gridwatch_contracts::SensorReading> {
    let mut readings = golden::readings();
    let n = readings.len();
    for i in (0..n.saturating_sub(40)).step_by(7) {
        readings[i..i + 12].rotate_left(1);
    }
    readings
}

/// Digests recorded with the `VecDeque` window (before the compact store):
/// every score must stay bit-for-bit identical.
#[test]
fn scores_are_bit_for_bit_those_of_the_vecdeque_window() {
    use gridwatch_detector::ScoredField as F;
    use std::time::Duration;
    let all = DetectorConfig {
        fields: vec![F::Voltage, F::Current, F::Temperature],
        ..DetectorConfig::default()
    };
    let small = DetectorConfig {
        fields: vec![F::Temperature, F::Voltage],
        window: Duration::from_secs(20),
        min_samples: 3,
        ..DetectorConfig::default()
    };
    let golden = golden::readings();
    let late = with_late_readings();
    // The shuffled copy really does exercise late inserts, none beyond the lateness.
    let mut newest = std::collections::HashMap::new();
    let mut d = Detector::new(DetectorConfig::default());
    let mut inserted_late = 0;
    for (o, r) in late.iter().enumerate() {
        let s = d.process(r, o as i64, 0);
        assert_ne!(s.disposition, gridwatch_contracts::Disposition::Late);
        let n = newest.entry(r.meter_id.clone()).or_insert(i64::MIN);
        if r.timestamp < *n && s.disposition == gridwatch_contracts::Disposition::Scored {
            inserted_late += 1;
        }
        *n = (*n).max(r.timestamp);
    }
    assert!(inserted_late > 1000, "{inserted_late} late inserts");
    let got = [
        score_digest(DetectorConfig::default(), &golden),
        score_digest(all.clone(), &golden),
        score_digest(small.clone(), &golden),
        score_digest(all, &late),
        score_digest(small, &late),
    ];
    let want: [u64; 5] = [
        0x6855b39c44e75bcf,
        0xbafce6538992730f,
        0x8d8acdab1b5cb710,
        0xdf6b713e4cfebabb,
        0xbea39b0efc9a3a3f,
    ];
    assert_eq!(got, want);
}
