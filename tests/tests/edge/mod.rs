//! What the edge tests (Avro over HTTP, the MQTT and Kafka sources, file
//! ingest and offline scoring) share: deterministic readings, Avro
//! encodings written with `apache-avro` (not Gridwatch's codec), and waits
//! on the real binary's status.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_tests::process::Gridwatch;

/// 2026-01-01T00:00:00Z: recent enough for validate's defaults.
pub const START_MS: i64 = 1_767_225_600_000;

/// `n` readings per meter, 1 s apart: noise around 230 V, with a surge of
/// +25 V at reading 40 of every meter (after the detector's warm-up), so
/// every meter yields exactly one obvious anomaly.
pub fn readings(prefix: &str, meters: usize, n: usize) -> Vec<SensorReading> {
    let mut out = Vec::with_capacity(meters * n);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 2000) as f64 / 1000.0 - 1.0
    };
    for i in 0..n {
        for m in 0..meters {
            out.push(SensorReading {
                meter_id: format!("{prefix}-{m:03}"),
                timestamp: START_MS + i as i64 * 1000,
                voltage: 230.0 + noise() + if i == 40 { 25.0 } else { 0.0 },
                current: 5.0 + noise() / 10.0,
                temperature: 21.0,
                status: MeterStatus::Ok,
            });
        }
    }
    out
}

pub fn ndjson(readings: &[SensorReading]) -> String {
    readings
        .iter()
        .map(|r| serde_json::to_string(r).expect("json") + "\n")
        .collect()
}

pub fn reading_schema() -> Schema {
    Schema::parse_str(gridwatch_contracts::schema::SENSOR_READING).expect("SensorReading parses")
}

/// A reading as an `apache-avro` record value of SensorReading.
pub fn avro_value(r: &SensorReading) -> Value {
    Value::Record(vec![
        ("meter_id".into(), Value::String(r.meter_id.clone())),
        ("timestamp".into(), Value::TimestampMillis(r.timestamp)),
        ("voltage".into(), Value::Double(r.voltage)),
        ("current".into(), Value::Double(r.current)),
        ("temperature".into(), Value::Double(r.temperature)),
        ("status".into(), status(r.status)),
    ])
}

pub fn status(s: MeterStatus) -> Value {
    match s {
        MeterStatus::Ok => Value::Enum(0, "OK".into()),
        MeterStatus::Degraded => Value::Enum(1, "DEGRADED".into()),
        MeterStatus::Failure => Value::Enum(2, "FAILURE".into()),
    }
}

/// An Avro object container file of SensorReading, written by `apache-avro`,
/// in blocks of 50 readings.
pub fn container(readings: &[SensorReading]) -> Vec<u8> {
    let schema = reading_schema();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    for (i, r) in readings.iter().enumerate() {
        writer.append(avro_value(r)).expect("append");
        // A block per 50 readings, so a truncated file still has whole blocks.
        if i % 50 == 49 {
            writer.flush().expect("flush a block");
        }
    }
    writer.into_inner().expect("container")
}

/// `0x00`, the 4-byte contentId, then `datum`.
pub fn framed(content_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&content_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Registers Avro schema text with the instance's embedded Apicurio v3
/// registry, as a producer would, and returns its contentId.
pub fn register_schema(gw: &Gridwatch, group: &str, artifact: &str, schema: &str) -> u32 {
    let body = serde_json::json!({
        "artifactId": artifact,
        "artifactType": "AVRO",
        "firstVersion": {"content": {"content": schema, "contentType": "application/json"}},
    });
    let r = reqwest::blocking::Client::new()
        .post(format!(
            "{}/apis/registry/v3/groups/{group}/artifacts",
            gw.url
        ))
        .json(&body)
        .send()
        .expect("registry answers");
    assert!(r.status().is_success(), "register failed: {}", r.status());
    let v: serde_json::Value = r.json().expect("json");
    v["version"]["contentId"]
        .as_u64()
        .expect("a contentId in the answer") as u32
}

/// POSTs a body to the ingest API; the status and the JSON answer.
pub fn post(gw: &Gridwatch, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/readings", gw.url))
        .header("content-type", content_type)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .expect("ingest answers");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::json!({ "text": text })),
    )
}

/// Waits until `/api/v1/status` satisfies `done` (e.g. every reading
/// processed), failing after `limit` with the last status.
pub fn wait_status(
    gw: &Gridwatch,
    what: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let s = gw.status();
        if done(&s) {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}; status: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn count(s: &serde_json::Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or(0)
}

/// The readings in `scored` (from `gridwatch topic consume` on a stopped
/// data directory), as (meter_id, timestamp) → voltage.
pub fn scored_readings(
    records: &[serde_json::Value],
) -> std::collections::BTreeMap<(String, i64), f64> {
    records
        .iter()
        .map(|r| {
            let reading = &r["reading"];
            (
                (
                    reading["meter_id"].as_str().expect("meter_id").to_owned(),
                    reading["timestamp"].as_i64().expect("timestamp"),
                ),
                reading["voltage"].as_f64().expect("voltage"),
            )
        })
        .collect()
}

/// The original bytes of a dead letter as `consume` prints them.
pub fn original(d: &serde_json::Value) -> Vec<u8> {
    match &d["original"] {
        serde_json::Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect(),
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

pub mod servers;
