//! Hot-swap under load (issue #4): a new detect module replaces the running
//! one, through the admin API and through the watched directory, while a
//! client keeps sending. No reading may be lost or scored twice, the
//! anomalies must equal an uninterrupted detector's, and broken modules must
//! be rejected with the old one still running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_tests::modules::module;
use gridwatch_tests::process::{Gridwatch, consume};

const METERS: usize = 10;
const READINGS_PER_METER: usize = 600;
const START_MS: i64 = 1_767_225_600_000;

fn readings() -> Vec<SensorReading> {
    let mut out = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..READINGS_PER_METER {
        for m in 0..METERS {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 2000) as f64 / 1000.0 - 1.0;
            let surge = (i + m * 11) % 89 == 40;
            out.push(SensorReading {
                meter_id: format!("feeder-{}-meter-{m:03}", m % 2),
                timestamp: START_MS + i as i64 * 1000,
                voltage: 230.0 + noise + if surge { 16.0 } else { 0.0 },
                current: 5.0,
                temperature: 21.0,
                status: MeterStatus::Ok,
            });
        }
    }
    out
}

/// The same module with a custom section appended: valid, identical in
/// behaviour, but a different file with a different hash, as a rebuilt
/// detector would be.
fn variant(wasm: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"gridwatch-build";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend(body);
    out
}

fn modules(client: &reqwest::blocking::Client, url: &str) -> Vec<serde_json::Value> {
    client
        .get(format!("{url}/api/v1/modules"))
        .send()
        .and_then(|r| r.json())
        .expect("modules list")
}

fn detect_info(client: &reqwest::blocking::Client, url: &str) -> serde_json::Value {
    modules(client, url)
        .into_iter()
        .find(|m| m["name"] == "detect")
        .expect("detect listed")
}

#[test]
fn detect_is_swapped_under_load_without_loss_or_double_scoring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let gw = Gridwatch::start(&data, &["--no-simulator"], &[]);
    let client = reqwest::blocking::Client::new();
    let all = readings();
    let original = module("gridwatch_detect");
    assert_eq!(detect_info(&client, &gw.url)["version"], 1);

    // The client sends throughout, from its own thread.
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (url, batches) = (gw.url.clone(), all.clone());
        let sending = Arc::clone(&sending);
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for batch in batches.chunks(100) {
                let body = batch
                    .iter()
                    .map(|r| serde_json::to_string(r).expect("json"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let r = client
                    .post(format!("{url}/api/v1/readings"))
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .expect("ingest answers");
                assert!(r.status().is_success(), "ingest: {}", r.status());
                std::thread::sleep(Duration::from_millis(15));
            }
            sending.store(false, Ordering::Release);
        })
    };

    // 1. A swap through the admin API, mid-stream.
    std::thread::sleep(Duration::from_millis(400));
    let v2 = variant(&original, "v2");
    let r = client
        .put(format!("{}/api/v1/modules/detect", gw.url))
        .body(v2.clone())
        .send()
        .expect("swap answers");
    assert_eq!(r.status(), 200, "swap: {}", r.text().unwrap_or_default());
    let report: serde_json::Value = r.json().expect("report");
    assert_eq!(report["module"]["version"], 2);
    println!("swap via API: {report}");

    // 2. Broken modules are rejected; version 2 keeps running.
    for (what, bytes) in [
        ("garbage", b"not a wasm module at all".to_vec()),
        ("an empty module", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        let r = client
            .put(format!("{}/api/v1/modules/detect", gw.url))
            .body(bytes)
            .send()
            .expect("swap answers");
        assert_eq!(r.status(), 422, "{what} must be rejected");
        let body: serde_json::Value = r.json().expect("problem");
        println!("{what} rejected: {}", body["error"]);
        assert_eq!(detect_info(&client, &gw.url)["version"], 2, "after {what}");
    }
    let r = client
        .put(format!("{}/api/v1/modules/nonesuch", gw.url))
        .body(v2)
        .send()
        .expect("answers");
    assert_eq!(r.status(), 404);

    // 3. A swap by dropping a file into the watched directory.
    let incoming = data.join("modules").join("incoming");
    std::fs::create_dir_all(&incoming).expect("incoming");
    std::fs::write(incoming.join("detect.wasm"), variant(&original, "v3")).expect("drop");
    let deadline = Instant::now() + Duration::from_secs(60);
    while detect_info(&client, &gw.url)["version"] != 3 {
        assert!(Instant::now() < deadline, "dropped module never swapped in");
        std::thread::sleep(Duration::from_millis(100));
    }
    let applied = std::fs::read_dir(incoming.join("applied"))
        .expect("applied dir")
        .count();
    assert_eq!(applied, 1);
    // A badly named drop is rejected with a reason beside it.
    std::fs::write(incoming.join("mystery.wasm"), b"x").expect("drop");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !incoming.join("rejected").exists() {
        assert!(Instant::now() < deadline, "bad drop never rejected");
        std::thread::sleep(Duration::from_millis(100));
    }

    sender.join().expect("sender");
    assert!(!sending.load(Ordering::Acquire));
    let deadline = Instant::now() + Duration::from_secs(120);
    while gw.status()["lag"].as_u64() != Some(0)
        || gw.status()["processed"].as_u64() != Some(all.len() as u64)
    {
        assert!(
            Instant::now() < deadline,
            "pipeline did not catch up: {}",
            gw.status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = gw.url.clone();
    gw.stop();

    // Every reading scored exactly once across three modules.
    let scored = consume(&data, "scored");
    let mut seen = BTreeMap::new();
    for s in &scored {
        let key = (
            s["reading"]["meter_id"].as_str().unwrap_or("").to_string(),
            s["reading"]["timestamp"].as_i64().unwrap_or(0),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "a reading was scored twice");
    assert_eq!(seen.len(), all.len(), "every reading scored");

    // Re-warmed state: the anomalies equal an uninterrupted detector's.
    let anomalies = consume(&data, "anomalies");
    let got: BTreeSet<_> = anomalies
        .iter()
        .map(|a| {
            (
                a["original_event"]["meter_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                a["original_event"]["timestamp"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got.len(), anomalies.len(), "no anomaly twice");
    let mut detector = Detector::new(DetectorConfig::default());
    let want: BTreeSet<_> = all
        .iter()
        .enumerate()
        .flat_map(|(o, r)| detector.process(r, o as i64, 0).anomalies)
        .map(|a| (a.original_event.meter_id, a.original_event.timestamp))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // The swapped module survives a restart.
    let gw = Gridwatch::start(&data, &["--no-simulator"], &[]);
    let info = detect_info(&client, &gw.url);
    assert!(
        info["source"]
            .as_str()
            .unwrap_or("")
            .contains("hot-swapped"),
        "{info}"
    );
    assert_eq!(
        info["sha256"].as_str().map(str::len),
        Some(64),
        "sha256 listed"
    );
    println!(
        "hot-swap: {} readings, {} anomalies, swaps via API and directory, previous url {url}",
        all.len(),
        got.len()
    );
    gw.stop();
}
