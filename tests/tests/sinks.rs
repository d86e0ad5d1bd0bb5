//! FR-004, FR-006, FR-007, FR-008 end to end: the real `gridwatch run` with
//! its sinks pointed at real servers on loopback (Tansu, InfluxDB 1.x,
//! s3s-fs), fed the golden readings over HTTP, read back with independent
//! clients (confluent-kafka + fastavro with the schema from the registry,
//! InfluxQL, pyarrow over S3). Every expected anomaly must be in each sink
//! exactly once.
//!
//! The second test stops the real InfluxDB mid-run for longer than the
//! retry budget, checks the retries and dead letters in `/metrics`, brings
//! it back, and replays the DLQ with `gridwatch dlq list|show|replay`:
//! nothing is lost and nothing is doubled.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gridwatch_contracts::SensorReading;
use gridwatch_tests::golden;
use gridwatch_tests::process::{Gridwatch, binary};
use gridwatch_tests::servers::{
    Influxd, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, Tansu, lake_check, python_clients_missing,
};

const BUCKET: &str = "gridwatch-lake";
const DB: &str = "gridwatch";

/// Posts readings as NDJSON in batches; every one must be accepted.
fn ingest(url: &str, readings: &[SensorReading]) {
    let client = reqwest::blocking::Client::new();
    for batch in readings.chunks(2000) {
        let body = batch
            .iter()
            .map(|r| serde_json::to_string(r).expect("json"))
            .collect::<Vec<_>>()
            .join("\n");
        let r = client
            .post(format!("{url}/api/v1/readings"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .timeout(Duration::from_secs(120))
            .send()
            .expect("ingest answers");
        let status = r.status();
        let answer: serde_json::Value = r.json().unwrap_or_default();
        assert!(status.is_success(), "ingest: {status} {answer}");
        assert_eq!(answer["accepted"], batch.len(), "ingest: {answer}");
    }
}

/// The `/metrics` samples whose line starts with `family` and contains
/// every one of `labels`, summed.
fn metric(url: &str, family: &str, labels: &[&str]) -> f64 {
    let text = reqwest::blocking::get(format!("{url}/metrics"))
        .and_then(|r| r.text())
        .expect("/metrics answers");
    text.lines()
        .filter(|l| l.starts_with(family) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the pipeline has processed `n` readings and every sink's
/// queue (`gridwatch_queue_depth_records` of `stage` = `sink/topic/p`) is
/// empty.
fn wait_drained(gw: &Gridwatch, n: u64, sinks: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = gw.status();
        let done = status["processed"].as_u64() >= Some(n)
            && status["lag"].as_u64() == Some(0)
            && sinks.iter().all(|s| {
                metric(
                    &gw.url,
                    "gridwatch_queue_depth_records",
                    &[&format!("stage=\"{s}/")],
                ) == 0.0
            });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline and sinks did not drain: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn write_config(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let path = dir.join("gridwatch.yaml");
    std::fs::write(&path, yaml).expect("config written");
    path
}

/// (meter, event time, type) → (severity, zscore) of InfluxDB rows.
fn influx_anomalies(influx: &Influxd) -> (usize, golden::Expected) {
    let rows = influx.select(DB, "SELECT * FROM anomalies");
    let got = rows
        .iter()
        .map(|r| {
            (
                (
                    r["meter_id"].as_str().unwrap_or_default().to_owned(),
                    r["time"].as_i64().unwrap_or_default(),
                    r["anomaly_type"].as_str().unwrap_or_default().to_owned(),
                ),
                (
                    r["severity"].as_str().unwrap_or_default().to_owned(),
                    r["zscore"].as_f64(),
                ),
            )
        })
        .collect();
    (rows.len(), got)
}

fn skip(test: &str, why: &str) {
    println!("SKIPPED {test}: {why}");
}

#[test]
fn anomalies_reach_kafka_influxdb_and_the_lake_exactly_once() {
    const TEST: &str = "anomalies_reach_kafka_influxdb_and_the_lake_exactly_once";
    if let Some(why) = python_clients_missing() {
        return skip(TEST, &why);
    }
    let tansu = match Tansu::start() {
        Ok(t) => t,
        Err(why) => return skip(TEST, &why),
    };
    let influx = match Influxd::start() {
        Ok(i) => i,
        Err(why) => return skip(TEST, &why),
    };
    let s3 = match S3Server::start(BUCKET) {
        Ok(s) => s,
        Err(why) => return skip(TEST, &why),
    };
    tansu.create_topic("grid-anomalies", 3);
    influx.create_database(DB);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
sinks:
  checkpoint_interval: 1s
  kafka:
    brokers: ["{bootstrap}"]
    topic: grid-anomalies
  influxdb:
    url: "{influx}"
    api: v1
    database: {DB}
  lake:
    url: "s3://{BUCKET}/grid"
    endpoint: "{endpoint}"
    access_key_id: {S3_ACCESS_KEY}
    secret_access_key: {S3_SECRET_KEY}
    path_style: true
"#,
            bootstrap = tansu.bootstrap(),
            influx = influx.url(),
            endpoint = s3.endpoint,
        ),
    );
    let config = config.to_string_lossy().into_owned();
    let gw = Gridwatch::start(&data, &["--no-simulator", "--config", &config], &[]);
    let readings = golden::readings();
    let want = golden::expected();
    ingest(&gw.url, &readings);
    wait_drained(
        &gw,
        readings.len() as u64,
        &["kafka/anomalies", "influxdb/anomalies", "lake/"],
    );

    // Kafka, while the registry (embedded in gridwatch) is up: every value
    // is an Apicurio v3 frame whose content id the registry resolves to
    // the AnomalyEvent schema, and the datum decodes with it.
    let registry = format!("{}/apis/registry/v3", gw.url);
    let messages = tansu.read("grid-anomalies", Some(&registry));
    gw.stop();

    let mut kafka = golden::Expected::new();
    let mut ids = BTreeSet::new();
    for m in &messages {
        let d = &m["decoded"];
        assert_eq!(m["agree"], true, "registry and .avsc decode alike: {m}");
        let meter = d["original_event"]["meter_id"].as_str().expect("meter_id");
        assert_eq!(m["key"].as_str(), Some(meter), "the key is meter_id");
        ids.insert(d["anomaly_id"].as_str().expect("anomaly_id").to_owned());
        kafka.insert(
            (
                meter.to_owned(),
                d["original_event"]["timestamp"]
                    .as_i64()
                    .expect("timestamp"),
                d["anomaly_type"].as_str().expect("type").to_owned(),
            ),
            (
                d["severity"].as_str().expect("severity").to_owned(),
                d["zscore"].as_f64(),
            ),
        );
    }
    assert_eq!(messages.len(), want.len(), "each anomaly once in Kafka");
    assert_eq!(ids.len(), want.len(), "no anomaly id twice in Kafka");
    golden::compare(&kafka, &want).expect("Kafka holds the golden anomalies");

    // InfluxDB, with InfluxQL.
    let (rows, influx_got) = influx_anomalies(&influx);
    assert_eq!(rows, want.len(), "each anomaly once in InfluxDB");
    golden::compare(&influx_got, &want).expect("InfluxDB holds the golden anomalies");

    // The lake over S3, with pyarrow: every reading and every anomaly once,
    // in the right date/hour folders.
    let summary = lake_check("summary", &s3.reader_args(&format!("s3://{BUCKET}/grid")));
    for (dataset, n) in [("readings", readings.len()), ("anomalies", want.len())] {
        let s = &summary[dataset];
        assert_eq!(s["rows"], n, "{dataset} rows: {summary}");
        assert_eq!(s["duplicated"], 0, "{dataset}: {summary}");
        assert_eq!(s["bad_partition"], 0, "{dataset}: {summary}");
    }
    println!(
        "sinks e2e: {} readings, {} anomalies in Kafka, InfluxDB and the lake ({} + {} Parquet files)",
        readings.len(),
        want.len(),
        summary["readings"]["files"],
        summary["anomalies"]["files"]
    );
}

/// Runs the real `gridwatch` CLI and returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("gridwatch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn influxdb_outage_longer_than_the_retry_budget_loses_nothing_after_dlq_replay() {
    const TEST: &str =
        "influxdb_outage_longer_than_the_retry_budget_loses_nothing_after_dlq_replay";
    let mut influx = match Influxd::start() {
        Ok(i) => i,
        Err(why) => return skip(TEST, &why),
    };
    influx.create_database(DB);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A short retry budget: 3 retries at 50 ms doubling to 200 ms, 1 s per
    // request, so an outage of a few seconds outlasts it.
    let config = write_config(
        dir.path(),
        &format!(
            r#"
sinks:
  checkpoint_interval: 1s
  batch_max: 500
  lake: null
  influxdb:
    url: "{influx}"
    api: v1
    database: {DB}
    timeout: 1s
    retry:
      initial_backoff: 50ms
      max_backoff: 200ms
      max_retries: 3
"#,
            influx = influx.url(),
        ),
    );
    let config = config.to_string_lossy().into_owned();
    let gw = Gridwatch::start(&data, &["--no-simulator", "--config", &config], &[]);
    let readings = golden::readings();
    let want = golden::expected();
    let half = readings.len() / 2;

    // First half with InfluxDB up.
    ingest(&gw.url, &readings[..half]);
    wait_drained(&gw, half as u64, &["influxdb/anomalies"]);
    let (before, _) = influx_anomalies(&influx);
    assert!(before > 0, "some anomalies arrived before the outage");
    assert_eq!(
        metric(
            &gw.url,
            "gridwatch_dead_letters_total",
            &["stage=\"influxdb\""]
        ),
        0.0
    );

    // The outage: InfluxDB is killed, the second half goes in.
    influx.stop();
    ingest(&gw.url, &readings[half..]);
    wait_drained(&gw, readings.len() as u64, &["influxdb/anomalies"]);
    let dead = metric(
        &gw.url,
        "gridwatch_dead_letters_total",
        &["stage=\"influxdb\""],
    );
    let retries = metric(
        &gw.url,
        "gridwatch_stage_retries_total",
        &["stage=\"influxdb\""],
    );
    let errors = metric(
        &gw.url,
        "gridwatch_stage_errors_total",
        &["stage=\"influxdb\""],
    );
    assert_eq!(
        dead as usize,
        want.len() - before,
        "every anomaly of the outage is dead-lettered"
    );
    assert!(retries >= 3.0, "retries counted: {retries}");
    assert!(errors >= retries, "errors counted: {errors}");
    println!(
        "outage: {before} anomalies before, {dead} dead letters, {retries} retries, {errors} errors"
    );

    // InfluxDB is back; the outage's anomalies are only in the DLQ so far.
    influx.restart();
    let (during, _) = influx_anomalies(&influx);
    assert_eq!(
        during, before,
        "nothing arrives by itself: it is in the DLQ"
    );

    // `dlq list` shows the sink's dead letters.
    let target = ["--url", gw.url.as_str(), "--config", config.as_str()];
    let mut args = vec!["dlq", "list", "--stage", "influxdb", "-n", "100000"];
    args.extend(target);
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "dlq list: {stderr}");
    let listed: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter(|l| l.contains("influxdb"))
        .collect();
    assert_eq!(listed.len(), dead as usize, "dlq list: {stdout}{stderr}");
    assert!(
        listed.iter().all(|l| l.contains("RETRIES_EXHAUSTED")),
        "{stdout}"
    );

    // `dlq show` prints one in full, with its source position and bytes.
    let position = listed[0].split_whitespace().next().expect("a position");
    let mut args = vec!["dlq", "show", position];
    args.extend(target);
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "dlq show: {stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect("dlq show prints JSON");
    assert_eq!(shown["stage"], "influxdb");
    assert_eq!(shown["reason"], "RETRIES_EXHAUSTED");
    assert!(
        shown["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("anomalies/"),
        "{shown}"
    );
    assert!(!shown["original_base64"].as_str().unwrap_or("").is_empty());

    // `dlq replay` re-delivers them to InfluxDB; a second replay has
    // nothing left to do.
    let data_s = data.to_string_lossy().into_owned();
    let mut args = vec![
        "dlq",
        "replay",
        "--stage",
        "influxdb",
        "--data-dir",
        &data_s,
    ];
    args.extend(target);
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "dlq replay: {stdout}{stderr}");
    assert!(
        stdout.contains(&format!("influxdb: replayed {dead} of {dead}")),
        "{stdout}{stderr}"
    );
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "second dlq replay: {stdout}{stderr}");
    assert!(stderr.contains("0 not yet replayed"), "{stdout}{stderr}");

    // Everything is in InfluxDB once, as the golden set says.
    let (rows, got) = influx_anomalies(&influx);
    assert_eq!(rows, want.len(), "each anomaly once in InfluxDB");
    golden::compare(&got, &want).expect("InfluxDB holds the golden anomalies");
    gw.stop();
}
