//! SR-005 / SC-004: kill -9 the pipeline mid-stream, several times, while a
//! client keeps sending and re-sends whatever was not acknowledged. Then
//! every acknowledged reading must have been scored exactly once, and every
//! anomaly must be in the `anomalies` topic exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_tests::process::{Gridwatch, consume};

const METERS: usize = 12;
const READINGS_PER_METER: usize = 700;
const BATCH: usize = 120;
const START_MS: i64 = 1_767_225_600_000;

/// A deterministic stream: noise around 230 V with a surge every 97 s.
fn readings() -> Vec<SensorReading> {
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 2000) as f64 / 1000.0 - 1.0
    };
    for i in 0..READINGS_PER_METER {
        for m in 0..METERS {
            let surge = (i + m * 7) % 97 == 50;
            out.push(SensorReading {
                meter_id: format!("feeder-{}-meter-{m:03}", m % 3),
                timestamp: START_MS + i as i64 * 1000,
                voltage: 230.0 + noise() + if surge { 15.0 } else { 0.0 },
                current: 5.0,
                temperature: 21.0,
                status: MeterStatus::Ok,
            });
        }
    }
    out
}

fn ndjson(batch: &[SensorReading]) -> String {
    batch
        .iter()
        .map(|r| serde_json::to_string(r).expect("json"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let all = readings();
    let batches: Vec<&[SensorReading]> = all.chunks(BATCH).collect();
    // Crash after these batches; the client re-sends what was in flight.
    let kill_after: BTreeSet<usize> = [9, 23, 37, 51, 62].into();
    let args = ["--no-simulator"];
    let env = [("GRIDWATCH_RUNTIME__CHECKPOINT_EVENTS", "700")];
    let mut gw = Gridwatch::start(&data, &args, &env);
    let client = reqwest::blocking::Client::new();
    let mut rto = Vec::new();
    let mut acknowledged = 0usize;
    let mut resent_duplicates = 0u64;
    for (i, batch) in batches.iter().enumerate() {
        // The server is up here, so every batch must be acknowledged.
        let r = client
            .post(format!("{}/api/v1/readings", gw.url))
            .header("content-type", "application/x-ndjson")
            .body(ndjson(batch))
            .timeout(Duration::from_secs(30))
            .send()
            .expect("ingest answers");
        assert!(r.status().is_success(), "ingest failed: {}", r.status());
        let body: serde_json::Value = r.json().expect("json answer");
        resent_duplicates += body["duplicates"].as_u64().unwrap_or(0);
        acknowledged += batch.len();
        if kill_after.contains(&i) {
            // The crash lands after the ack of batch i; re-send batch i and
            // i-1 afterwards, as a client that timed out would.
            gw.kill9();
            let started = Instant::now();
            gw = Gridwatch::start(&data, &args, &env);
            rto.push(started.elapsed());
            for again in [i.saturating_sub(1), i] {
                let r = client
                    .post(format!("{}/api/v1/readings", gw.url))
                    .header("content-type", "application/x-ndjson")
                    .body(ndjson(batches[again]))
                    .send()
                    .expect("re-send");
                let body: serde_json::Value = r.json().expect("json answer");
                assert_eq!(body["accepted"], 0, "re-sent readings are duplicates");
                resent_duplicates += body["duplicates"].as_u64().unwrap_or(0);
            }
        }
    }
    assert_eq!(acknowledged, all.len());
    assert!(resent_duplicates >= (kill_after.len() * 2 * BATCH) as u64);

    // Wait for the processors to catch up, then stop cleanly.
    let deadline = Instant::now() + Duration::from_secs(120);
    while gw.status()["lag"].as_u64() != Some(0)
        || gw.status()["processed"].as_u64().unwrap_or(0) == 0
    {
        assert!(Instant::now() < deadline, "pipeline did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    gw.stop();

    // Every acknowledged reading scored exactly once.
    let scored = consume(&data, "scored");
    let mut seen = BTreeMap::new();
    for s in &scored {
        let key = (
            s["reading"]["meter_id"].as_str().unwrap_or("").to_string(),
            s["reading"]["timestamp"].as_i64().unwrap_or(0),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "scored twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len(), all.len(), "every acknowledged reading scored");

    // Every anomaly exactly once, and exactly the ones an uninterrupted
    // detector finds on the same stream.
    let anomalies = consume(&data, "anomalies");
    let ids: BTreeSet<_> = anomalies
        .iter()
        .map(|a| a["anomaly_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), anomalies.len(), "no anomaly id twice");
    let got: BTreeSet<_> = anomalies
        .iter()
        .map(|a| {
            (
                a["original_event"]["meter_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                a["original_event"]["timestamp"].as_i64().unwrap_or(0),
                a["anomaly_type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut detector = Detector::new(DetectorConfig::default());
    let want: BTreeSet<_> = all
        .iter()
        .enumerate()
        .flat_map(|(o, r)| detector.process(r, o as i64, 0).anomalies)
        .map(|a| {
            (
                a.original_event.meter_id,
                a.original_event.timestamp,
                a.anomaly_type.as_str().to_string(),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "anomalies after {} crashes", kill_after.len());
    println!(
        "recovery: {} readings, {} anomalies, {} crashes, RTO per restart (spawn to ready): {:?}",
        all.len(),
        got.len(),
        rto.len(),
        rto
    );
}
