//! `gridwatch replay --from-lake DATE..DATE --detector FILE.wasm` on the real
//! binary, against a lake a real `gridwatch run` wrote.
//!
//! Three days of readings go through a running pipeline into its local
//! lake: a slice of the golden readings moved to 2025-12-31, the golden
//! readings on 2026-01-01, and the golden readings moved to 2026-01-02.
//! Replaying 2026-01-01..2026-01-02 with the built detect module must give
//! exactly the golden anomalies on each of the two days (read back with
//! pyarrow), with the live anomaly ids, nothing from 2025-12-31, and must
//! leave the live `anomalies` topic as it was. The same replay into a topic
//! of the running instance is read back over HTTP and decoded with fastavro;
//! `--topic anomalies`, a file that is not a SmartModule, a module that is
//! not a detector and a reversed range are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gridwatch_tests::golden;
use gridwatch_tests::modules::{wasm_dir, workspace_root};
use gridwatch_tests::process::{Gridwatch, binary, consume};
use gridwatch_tests::servers::python;

const DAY_MS: i64 = 86_400_000;

/// Readings of the shifted copy of the golden day before, kept short.
const DAY_BEFORE: usize = 6000;

fn gridwatch(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("GRIDWATCH_RUNTIME__MODULES_DIR", wasm_dir())
        .env("GRIDWATCH_HTTP__LISTEN", "127.0.0.1:9")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("gridwatch runs")
}

/// Kills the instance if the test fails before stopping it, so no
/// `gridwatch run` outlives a failed test.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn python_missing() -> Option<String> {
    let ok = Command::new(python())
        .args(["-c", "import pyarrow, fastavro"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| {
        format!(
            "{} cannot import pyarrow and fastavro; run scripts/setup-test-env",
            python().display()
        )
    })
}

fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

/// pyarrow reads the replay's Parquet output: one row per anomaly.
const READ_PARQUET: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds
data = ds.dataset(sys.argv[1] + "/anomalies", format="parquet", partitioning="hive")
t = data.to_table()
ms = pc.cast(pc.cast(t["event_time"], pa.timestamp("ms")), pa.int64()).to_pylist()
out = []
for i, row in enumerate(t.select(["anomaly_id", "meter_id", "anomaly_type", "severity", "zscore"]).to_pylist()):
    row["timestamp"] = ms[i]
    out.append(row)
print(json.dumps(out))
"#;

/// Reads a topic of a running instance over its HTTP API (urllib) and
/// decodes every record with fastavro and the .avsc file.
const READ_TOPIC: &str = r#"
import base64, io, json, sys, urllib.request
import fastavro
url, topic, partitions, schema_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
schema = fastavro.parse_schema(json.load(open(schema_path)))
out = []
for p in range(partitions):
    offset = 0
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/topics/{topic}/partitions/{p}/records?offset={offset}&max=1000") as r:
            page = json.load(r)
        for rec in page["records"]:
            raw = base64.b64decode(rec["value"])
            assert raw[0] == 0, "magic byte"
            ev = fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema)
            oe = ev["original_event"]
            ts = oe["timestamp"]
            if not isinstance(ts, int):
                ts = int(ts.timestamp() * 1000)
            out.append({"anomaly_id": ev["anomaly_id"], "meter_id": oe["meter_id"], "anomaly_type": ev["anomaly_type"],
                        "severity": ev["severity"], "zscore": ev.get("zscore"), "timestamp": ts})
            offset = rec["offset"] + 1
        if offset >= page["high_watermark"] or not page["records"]:
            break
print(json.dumps(out))
"#;

/// Anomalies as the golden comparison wants them, for one day's shift.
fn as_expected(rows: &[serde_json::Value], shift: i64) -> golden::Expected {
    rows.iter()
        .filter(|r| {
            let t = r["timestamp"].as_i64().expect("timestamp");
            (golden_day() + shift..golden_day() + shift + DAY_MS).contains(&t)
        })
        .map(|r| {
            (
                (
                    r["meter_id"].as_str().expect("meter_id").to_owned(),
                    r["timestamp"].as_i64().expect("timestamp") - shift,
                    r["anomaly_type"].as_str().expect("type").to_owned(),
                ),
                (
                    r["severity"].as_str().expect("severity").to_owned(),
                    r["zscore"].as_f64(),
                ),
            )
        })
        .collect()
}

/// 2026-01-01T00:00:00Z, the golden readings' day.
fn golden_day() -> i64 {
    1_767_225_600_000
}

fn ndjson(readings: &[gridwatch_contracts::SensorReading], shift: i64) -> String {
    let mut body = String::new();
    for r in readings {
        body.push_str(
            &serde_json::json!({
                "meter_id": r.meter_id,
                "timestamp": r.timestamp + shift,
                "voltage": r.voltage,
                "current": r.current,
                "temperature": r.temperature,
                "status": r.status.as_str(),
            })
            .to_string(),
        );
        body.push('\n');
    }
    body
}

fn post(gw: &Gridwatch, body: String) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/readings", gw.url))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .timeout(Duration::from_secs(120))
        .send()
        .expect("ingest answers");
    assert!(r.status().is_success(), "ingest: {}", r.status());
}

fn wait_processed(gw: &Gridwatch, n: u64) {
    let started = Instant::now();
    loop {
        let s = gw.status();
        if s["processed"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the pipeline never processed {n} readings: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// pyarrow counts the rows of the lake's `readings/` files.
const COUNT_LAKE: &str = r#"
import glob, json, sys
import pyarrow.parquet as pq
files = glob.glob(sys.argv[1] + "/readings/*/*/part-*.parquet")
print(json.dumps(sum(pq.ParquetFile(f).metadata.num_rows for f in files)))
"#;

/// Waits until the lake sink has archived `n` readings (it trails the
/// processors by up to a checkpoint interval).
fn wait_lake(lake: &std::path::Path, n: u64) {
    let started = Instant::now();
    loop {
        let rows = run_python(COUNT_LAKE, &[lake.to_str().expect("utf-8")])
            .as_u64()
            .unwrap_or(0);
        if rows >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the lake holds {rows} of {n} readings"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ids(rows: &[serde_json::Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["anomaly_id"].as_str().expect("anomaly_id").to_owned())
        .collect()
}

#[test]
fn replay_rescores_two_dates_of_the_lake_into_a_separate_output() {
    if let Some(why) = python_missing() {
        println!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let detector = wasm_dir().join("gridwatch_detect.wasm");
    let detector_arg = detector.to_str().expect("utf-8 path");
    let readings = golden::readings();
    let expected = golden::expected();

    // The live run: three days into the lake, in event-time order.
    let gw = Gridwatch::start(&data, &["--no-simulator"], &[]);
    let mut guard = KillOnDrop(Some(gw.child.id()));
    let mut sent = 0u64;
    for (slice, shift) in [
        (&readings[..DAY_BEFORE], -DAY_MS),
        (&readings[..], 0),
        (&readings[..], DAY_MS),
    ] {
        for chunk in slice.chunks(5000) {
            post(&gw, ndjson(chunk, shift));
            sent += chunk.len() as u64;
        }
    }
    wait_processed(&gw, sent);
    wait_lake(&data.join("lake"), sent);
    guard.0 = None;
    gw.stop();
    let live_before = consume(&data, "anomalies");
    assert!(!live_before.is_empty(), "the live run raised anomalies");

    // Refusals, before any output exists.
    let out = gridwatch(&[
        "replay",
        "--from-lake",
        "2026-01-02..2026-01-01",
        "--detector",
        detector_arg,
        "--data-dir",
        data_arg,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ends before it starts") && stderr(&out).contains("YYYY-MM-DD"),
        "{}",
        stderr(&out)
    );
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not WebAssembly").expect("write");
    let out = gridwatch(&[
        "replay",
        "--from-lake",
        "2026-01-01",
        "--detector",
        junk.to_str().expect("utf-8"),
        "--data-dir",
        data_arg,
        "--out",
        dir.path().join("junk-out").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a valid SmartModule"),
        "{}",
        stderr(&out)
    );
    let validate = wasm_dir().join("gridwatch_validate.wasm");
    let out = gridwatch(&[
        "replay",
        "--from-lake",
        "2026-01-01",
        "--detector",
        validate.to_str().expect("utf-8"),
        "--data-dir",
        data_arg,
        "--out",
        dir.path().join("validate-out").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success(), "validate is no detector");
    assert!(
        stderr(&out).contains("not a detect module")
            || stderr(&out).contains("not a valid SmartModule"),
        "{}",
        stderr(&out)
    );
    let out = gridwatch(&[
        "replay",
        "--from-lake",
        "2026-01-01",
        "--detector",
        detector_arg,
        "--data-dir",
        data_arg,
        "--topic",
        "anomalies",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("live anomalies topic"),
        "{}",
        stderr(&out)
    );

    // Replay two dates into a directory.
    let out_dir = dir.path().join("replay-out");
    let out = gridwatch(&[
        "replay",
        "--from-lake",
        "2026-01-01..2026-01-02",
        "--detector",
        detector_arg,
        "--data-dir",
        data_arg,
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    let log = stderr(&out);
    println!("{log}");
    assert!(out.status.success(), "replay failed: {log}");
    let total = 2 * readings.len();
    assert!(
        log.contains(&format!("{total} readings from")) && log.contains("0 dead letters"),
        "the summary counts both days' readings: {log}"
    );
    let rows = run_python(READ_PARQUET, &[out_dir.to_str().expect("utf-8")]);
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 2 * expected.len(), "golden anomalies twice");
    for shift in [0, DAY_MS] {
        golden::compare(&as_expected(rows, shift), &expected)
            .unwrap_or_else(|e| panic!("day +{}: {e}", shift / DAY_MS));
    }
    // Same detector, same offsets: the live ids of those two days.
    let live_ids: BTreeSet<String> = live_before
        .iter()
        .filter(|a| a["original_event"]["timestamp"].as_i64().unwrap_or(0) >= golden_day())
        .map(|a| a["anomaly_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids(rows), live_ids, "replayed ids are the live ids");
    assert!(out_dir.join("_replay.json").is_file());
    // The directory is never overwritten.
    let again = gridwatch(&[
        "replay",
        "--from-lake",
        "2026-01-01",
        "--detector",
        detector_arg,
        "--data-dir",
        data_arg,
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    // Into a topic of the running pipeline.
    let gw = Gridwatch::start(&data, &["--no-simulator"], &[]);
    let mut guard = KillOnDrop(Some(gw.child.id()));
    let out = Command::new(binary())
        .args([
            "replay",
            "--from-lake",
            "2026-01-02",
            "--detector",
            detector_arg,
        ])
        .args([
            "--data-dir",
            data_arg,
            "--topic",
            "anomalies-replay",
            "--url",
            &gw.url,
        ])
        .env("GRIDWATCH_RUNTIME__MODULES_DIR", wasm_dir())
        .output()
        .expect("replay runs");
    assert!(
        out.status.success(),
        "replay --topic failed: {}",
        stderr(&out)
    );
    let schema = workspace_root().join("schemas/avro/AnomalyEvent.avsc");
    let topic_rows = run_python(
        READ_TOPIC,
        &[
            &gw.url,
            "anomalies-replay",
            "1",
            schema.to_str().expect("utf-8"),
        ],
    );
    let topic_rows = topic_rows.as_array().expect("a list");
    assert_eq!(topic_rows.len(), expected.len());
    golden::compare(&as_expected(topic_rows, DAY_MS), &expected)
        .unwrap_or_else(|e| panic!("topic: {e}"));
    guard.0 = None;
    gw.stop();

    // The live anomalies are as they were.
    let live_after = consume(&data, "anomalies");
    assert_eq!(
        live_after, live_before,
        "the live anomalies topic is unchanged"
    );
    let per_day: BTreeMap<i64, usize> = live_after.iter().fold(BTreeMap::new(), |mut m, a| {
        let t = a["original_event"]["timestamp"].as_i64().unwrap_or(0);
        *m.entry(t.div_euclid(DAY_MS)).or_default() += 1;
        m
    });
    println!(
        "live anomalies per day: {per_day:?}; replayed {} + {} into a topic",
        rows.len(),
        topic_rows.len()
    );
}
