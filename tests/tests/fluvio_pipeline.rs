//! `gridwatch run` on a real Fluvio cluster: the golden readings through
//! server-side mode (validate → detect in the SPU), client-side mode, and
//! two instances splitting a two-partition topic. Each must give exactly
//! the golden anomalies, each once.
//!
//! Needs a cluster: `GRIDWATCH_TEST_FLUVIO_ENDPOINT=127.0.0.1:9003` (what
//! `fluvio cluster start --local` listens on). Without it the tests print
//! why they skip and pass. They delete and recreate Gridwatch's topics
//! (`readings`, `scored`, `anomalies`, `dead-letter`) on that cluster.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use gridwatch_backend_fluvio::{FluvioBackend, FluvioConfig};
use gridwatch_runtime::topics::Topics;
use gridwatch_tests::golden;
use gridwatch_tests::process::{Gridwatch, binary};

/// The tests share the cluster's topics, so they take turns.
static CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn endpoint() -> Option<String> {
    let endpoint = std::env::var("GRIDWATCH_TEST_FLUVIO_ENDPOINT").ok();
    if endpoint.is_none() {
        println!(
            "SKIPPED: no Fluvio cluster named; set GRIDWATCH_TEST_FLUVIO_ENDPOINT=host:port (e.g. 127.0.0.1:9003 after `fluvio cluster start --local`)"
        );
    }
    endpoint
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Deletes Gridwatch's topics so each test starts from empty partitions.
fn reset_topics(endpoint: &str) {
    runtime().block_on(async {
        let fluvio = FluvioBackend::connect(&FluvioConfig::with_endpoint(endpoint))
            .await
            .expect("connect to the cluster");
        for topic in Topics::default().all() {
            let _ = fluvio.delete_topic(topic).await;
        }
        // Deletion is asynchronous in the SC.
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
}

fn env(endpoint: &str, mode: &str, version: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GRIDWATCH_BACKEND", "fluvio".into()),
        ("GRIDWATCH_FLUVIO__ENDPOINT", endpoint.into()),
        ("GRIDWATCH_FLUVIO__PARTITIONS", "2".into()),
        (
            "GRIDWATCH_FLUVIO__CHAIN__MODE",
            mode.trim_end_matches("-side").into(),
        ),
        (
            "GRIDWATCH_FLUVIO__CHAIN__VALIDATE",
            format!("gridwatch/gridwatch-validate@{version}"),
        ),
        (
            "GRIDWATCH_FLUVIO__CHAIN__DETECT",
            format!("gridwatch/gridwatch-detect@{version}"),
        ),
    ]
}

/// Publishes the modules under a version of their own and returns it: the
/// chain then names exactly these (replacing a registered module in place
/// leaves the SPU without it for a while).
fn publish_modules(endpoint: &str) -> String {
    let version = format!(
        "0.1.{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let out = Command::new(binary())
        .args(["modules", "publish", "--version", &version])
        .env("GRIDWATCH_BACKEND", "fluvio")
        .env("GRIDWATCH_FLUVIO__ENDPOINT", endpoint)
        .env(
            "GRIDWATCH_RUNTIME__MODULES_DIR",
            gridwatch_tests::modules::wasm_dir(),
        )
        .output()
        .expect("publish runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "modules publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    version
}

fn ingest(url: &str) -> u64 {
    ingest_part(url, &golden::readings())
}

fn ingest_part(url: &str, readings: &[gridwatch_contracts::SensorReading]) -> u64 {
    let mut body = Vec::new();
    for r in readings {
        writeln!(
            body,
            "{}",
            serde_json::json!({
                "meter_id": r.meter_id, "timestamp": r.timestamp, "voltage": r.voltage,
                "current": r.current, "temperature": r.temperature, "status": r.status.as_str(),
            })
        )
        .expect("write");
    }
    let response = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/readings"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .timeout(Duration::from_secs(300))
        .send()
        .expect("ingest");
    assert!(response.status().is_success(), "{}", response.status());
    readings.len() as u64
}

/// Waits until the instances together have processed `want` readings.
fn wait_processed(instances: &[&Gridwatch], want: u64) {
    let started = Instant::now();
    loop {
        let processed: u64 = instances
            .iter()
            .map(|g| g.status()["processed"].as_u64().unwrap_or(0))
            .sum();
        if processed >= want {
            assert_eq!(processed, want, "no reading processed twice");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {processed} of {want} readings processed"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The anomalies topic, read through a running instance.
fn anomalies(url: &str) -> (usize, golden::Expected) {
    let out = Command::new(binary())
        .args(["topic", "consume", "anomalies", "-d", "-B", "--url", url])
        .output()
        .expect("consume runs");
    assert!(
        out.status.success(),
        "consume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = golden::Expected::new();
    let mut ids = BTreeSet::new();
    let mut count = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let a: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        count += 1;
        ids.insert(a["anomaly_id"].as_str().expect("id").to_owned());
        got.insert(
            (
                a["original_event"]["meter_id"]
                    .as_str()
                    .expect("meter")
                    .to_owned(),
                a["original_event"]["timestamp"].as_i64().expect("ts"),
                a["anomaly_type"].as_str().expect("type").to_owned(),
            ),
            (
                a["severity"].as_str().expect("severity").to_owned(),
                a["zscore"].as_f64(),
            ),
        );
    }
    assert_eq!(ids.len(), count, "no anomaly id twice");
    (count, got)
}

fn golden_run(endpoint: &str, mode: &str) {
    reset_topics(endpoint);
    let version = publish_modules(endpoint);
    let data = tempfile::tempdir().expect("tempdir");
    let env = if mode == "embedded" {
        Vec::new()
    } else {
        env(endpoint, mode, &version)
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gridwatch::start(data.path(), &["--no-simulator"], &env);
    let started = Instant::now();
    let sent = ingest(&gw.url);
    wait_processed(&[&gw], sent);
    let took = started.elapsed();
    let (count, got) = anomalies(&gw.url);
    println!(
        "{mode}: {sent} golden readings in {:.2} s ({:.0} readings/s end to end, debug build), {count} anomalies",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64()
    );
    let want = golden::expected();
    assert_eq!(count, want.len(), "each golden anomaly once");
    golden::compare(&got, &want).expect("the golden anomalies");
    gw.stop();
}

#[test]
fn server_side_chain_gives_the_golden_anomalies() {
    let Some(endpoint) = endpoint() else { return };
    let _turn = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    golden_run(&endpoint, "server-side");
}

#[test]
fn client_side_chain_gives_the_golden_anomalies() {
    let Some(endpoint) = endpoint() else { return };
    let _turn = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    golden_run(&endpoint, "client-side");
}

/// The same run on the embedded log, so the note can compare the backends
/// measured side by side on one machine.
#[test]
fn embedded_reference_run() {
    let Some(endpoint) = endpoint() else { return };
    let _turn = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    golden_run(&endpoint, "embedded");
}

#[test]
fn two_instances_split_two_partitions() {
    let Some(endpoint) = endpoint() else { return };
    let _turn = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    reset_topics(&endpoint);
    let version = publish_modules(&endpoint);
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let start = |dir: &std::path::Path, i: &str| {
        let mut env = env(&endpoint, "server", &version);
        env.push(("GRIDWATCH_FLUVIO__INSTANCES", "2".into()));
        env.push(("GRIDWATCH_FLUVIO__INSTANCE", i.into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Gridwatch::start(dir, &["--no-simulator"], &env)
    };
    let first = start(a.path(), "0");
    let second = start(b.path(), "1");
    let sent = ingest(&first.url);
    wait_processed(&[&first, &second], sent);
    for g in [&first, &second] {
        assert!(
            g.status()["processed"].as_u64().unwrap_or(0) > 0,
            "both instances took a share"
        );
    }
    let (count, got) = anomalies(&first.url);
    let want = golden::expected();
    assert_eq!(
        count,
        want.len(),
        "each golden anomaly once across both instances"
    );
    golden::compare(&got, &want).expect("the golden anomalies");
    first.stop();
    second.stop();
}

/// Hot-swap in server-side mode, mid-stream: the module is registered under
/// a new version and the SPU chains reopen with it at the next offset,
/// warming through look_back. No reading may be lost or scored twice, so the
/// anomalies stay exactly the golden ones.
#[test]
fn server_side_hot_swap_loses_and_repeats_nothing() {
    let Some(endpoint) = endpoint() else { return };
    let _turn = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    reset_topics(&endpoint);
    let version = publish_modules(&endpoint);
    let data = tempfile::tempdir().expect("tempdir");
    let env = env(&endpoint, "server", &version);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gridwatch::start(data.path(), &["--no-simulator"], &env);
    let readings = golden::readings();
    let half = readings.len() / 2;
    let first = ingest_part(&gw.url, &readings[..half]);
    wait_processed(&[&gw], first);

    let detect = gridwatch_tests::modules::module("gridwatch_detect");
    let client = reqwest::blocking::Client::new();
    let r = client
        .put(format!("{}/api/v1/modules/detect", gw.url))
        .body(detect)
        .timeout(Duration::from_secs(120))
        .send()
        .expect("swap answers");
    assert_eq!(r.status(), 200, "swap: {}", r.text().unwrap_or_default());
    let report: serde_json::Value = r.json().expect("report");
    println!("server-side swap: {report}");
    assert_eq!(report["module"]["kind"], "fluvio");
    assert_eq!(report["module"]["version"], 2);

    let second = ingest_part(&gw.url, &readings[half..]);
    wait_processed(&[&gw], first + second);
    let (count, got) = anomalies(&gw.url);
    let want = golden::expected();
    // Which anomaly differs says more than the count does.
    golden::compare(&got, &want).expect("the golden anomalies");
    assert_eq!(
        count,
        want.len(),
        "each golden anomaly once across the swap"
    );
    gw.stop();
}
