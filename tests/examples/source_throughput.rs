//! Load generator for the sources of `gridwatch run`: prints events/s per
//! source, measured end to end (from the first message offered to the last
//! reading scored by the pipeline, read from `/api/v1/status`).
//!
//! ```sh
//! cargo run -p gridwatch-tests --example source_throughput            # 50,000 readings per source
//! SOURCE_EVENTS=200000 GRIDWATCH_BIN=target/release/gridwatch cargo run -p gridwatch-tests --release --example source_throughput
//! ```
//!
//! For MQTT and Kafka the messages are queued in the broker before
//! Gridwatch (re)starts, so the figure is the source's drain rate, not the
//! load generator's. Figures, not assertions: the machine is shared.

#[path = "../tests/edge/mod.rs"]
mod edge;

use std::time::{Duration, Instant};

use edge::servers::{Mosquitto, Tansu};
use edge::*;
use gridwatch_contracts::SensorReading;
use gridwatch_tests::process::Gridwatch;

fn events() -> usize {
    std::env::var("SOURCE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

fn load(n: usize, prefix: &str) -> Vec<SensorReading> {
    let meters = 100;
    readings(prefix, meters, n.div_ceil(meters))
        .into_iter()
        .take(n)
        .collect()
}

/// Waits until `processed` reaches `n` and returns the seconds since `t0`.
fn drained(gw: &Gridwatch, n: usize, t0: Instant) -> f64 {
    wait_status(gw, "the load scored", Duration::from_secs(3600), |s| {
        count(s, "processed") >= n as u64
    });
    t0.elapsed().as_secs_f64()
}

/// For queued sources: counts from the moment the instance is ready (its
/// start-up, WASM compilation included, is not the source's cost), so the
/// readings already scored by then are left out of the figure.
fn drained_after_start(gw: &Gridwatch, n: usize) -> (usize, f64) {
    let t0 = Instant::now();
    let before = count(&gw.status(), "processed") as usize;
    let secs = drained(gw, n, t0);
    (n - before.min(n), secs)
}

fn report(source: &str, n: usize, secs: f64) {
    println!(
        "{source:<28} {n:>9} readings in {secs:>7.2} s = {:>9.0} events/s",
        n as f64 / secs
    );
}

fn http(kind: &str) {
    let n = events();
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gridwatch::start(&dir.path().join("d"), &["--no-simulator"], &[]);
    let all = load(n, "http");
    let t0 = Instant::now();
    for chunk in all.chunks(5000) {
        let (ct, body) = match kind {
            "ndjson" => ("application/x-ndjson", ndjson(chunk).into_bytes()),
            _ => ("application/vnd.apache.avro.file", container(chunk)),
        };
        let (status, answer) = post(&gw, ct, body);
        assert_eq!(status, 200, "{answer}");
    }
    let acked = t0.elapsed().as_secs_f64();
    let secs = drained(&gw, n, t0);
    report(&format!("http {kind} (acked)"), n, acked);
    report(&format!("http {kind} (scored)"), n, secs);
    gw.stop();
}

fn file_ingest() {
    let n = events();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("load.ndjson");
    std::fs::write(&file, ndjson(&load(n, "file"))).expect("write");
    let gw = Gridwatch::start(&dir.path().join("d"), &["--no-simulator"], &[]);
    let t0 = Instant::now();
    let status = std::process::Command::new(gridwatch_tests::process::binary())
        .args(["ingest", "-q", "--url", &gw.url])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("gridwatch ingest");
    assert!(status.success());
    let secs = drained(&gw, n, t0);
    report("gridwatch ingest (scored)", n, secs);
    gw.stop();
}

fn mqtt() {
    let broker = match Mosquitto::start() {
        Ok(b) => b,
        Err(why) => return println!("mqtt: SKIPPED: {why}"),
    };
    let n = events();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let url = broker.url();
    let env = [
        ("GRIDWATCH_SOURCES__MQTT__URL", url.as_str()),
        ("GRIDWATCH_SOURCES__MQTT__CLIENT_ID", "gridwatch-load"),
    ];
    // Once to create the persistent session, then the load is queued.
    let gw = Gridwatch::start(&data, &["--no-simulator"], &env);
    broker.wait_subscribed("meters/+/readings");
    gw.stop();
    let all = load(n, "mqtt");
    let t_pub = Instant::now();
    for m in 0..100 {
        let meter = format!("mqtt-{m:03}");
        let mine: Vec<SensorReading> = all
            .iter()
            .filter(|r| r.meter_id == meter)
            .cloned()
            .collect();
        broker.publish_lines(&format!("meters/{meter}/readings"), &ndjson(&mine));
    }
    report(
        "mqtt (mosquitto_pub, queued)",
        n,
        t_pub.elapsed().as_secs_f64(),
    );
    let gw = Gridwatch::start(&data, &["--no-simulator"], &env);
    let (done, secs) = drained_after_start(&gw, n);
    report("mqtt source (drained)", done, secs);
    gw.stop();
}

fn kafka() {
    let tansu = match Tansu::start() {
        Ok(t) => t,
        Err(why) => return println!("kafka: SKIPPED: {why}"),
    };
    let n = events();
    tansu.create_topic("load", 2);
    let all = load(n, "kafka");
    let messages: Vec<(String, Vec<u8>)> = all
        .iter()
        .map(|r| (r.meter_id.clone(), serde_json::to_vec(r).expect("json")))
        .collect();
    let t_prod = Instant::now();
    tansu.produce("load", &messages);
    report(
        "kafka (confluent-kafka, queued)",
        n,
        t_prod.elapsed().as_secs_f64(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = format!("[\"{}\"]", tansu.bootstrap());
    let env = [
        ("GRIDWATCH_SOURCES__KAFKA__BROKERS", brokers.as_str()),
        ("GRIDWATCH_SOURCES__KAFKA__TOPICS", "[load]"),
    ];
    let gw = Gridwatch::start(&dir.path().join("d"), &["--no-simulator"], &env);
    let (done, secs) = drained_after_start(&gw, n);
    report("kafka source (drained)", done, secs);
    gw.stop();
}

fn main() {
    println!(
        "{} readings per source, binary {}",
        events(),
        gridwatch_tests::process::binary().display()
    );
    http("ndjson");
    http("avro-container");
    file_ingest();
    mqtt();
    kafka();
}
