//! `gridwatch score FILE…` and `gridwatch ingest FILE…` on the real binary.
//!
//! - score: the golden readings, split over an NDJSON file and an Avro
//!   container, scored offline with the built modules, must give exactly the
//!   golden anomalies (keys, severities, z-scores).
//! - ingest: a CSV file (with one unreadable row) is sent to a running
//!   instance; then the Parquet files that instance's lake wrote are sent to
//!   a second instance, which must score the same readings with the same
//!   event times.

mod edge;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use edge::*;
use gridwatch_tests::golden;
use gridwatch_tests::process::{Gridwatch, binary, consume};

fn gridwatch(args: &[&str], files: &[&Path], env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .args(files)
        .env(
            "GRIDWATCH_RUNTIME__MODULES_DIR",
            gridwatch_tests::modules::wasm_dir(),
        )
        .env("GRIDWATCH_HTTP__LISTEN", "127.0.0.1:9");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("gridwatch runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gridwatch {args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn score_gives_the_golden_anomalies_from_ndjson_and_avro() {
    let dir = tempfile::tempdir().expect("tempdir");
    let readings = golden::readings();
    let (a, b) = readings.split_at(readings.len() / 2);
    let first = dir.path().join("first.ndjson");
    let second = dir.path().join("second.avro");
    std::fs::write(&first, ndjson(a)).expect("write");
    std::fs::write(&second, container(b)).expect("write");

    let (stdout, stderr) = gridwatch(&["score"], &[&first, &second], &[]);
    let mut got = golden::Expected::new();
    for line in stdout.lines() {
        let a: serde_json::Value = serde_json::from_str(line).expect("one anomaly per line");
        let key = (
            a["original_event"]["meter_id"]
                .as_str()
                .expect("meter")
                .to_owned(),
            a["original_event"]["timestamp"].as_i64().expect("ts"),
            a["anomaly_type"].as_str().expect("type").to_owned(),
        );
        let value = (
            a["severity"].as_str().expect("severity").to_owned(),
            a["zscore"].as_f64(),
        );
        assert!(
            got.insert(key, value).is_none(),
            "one anomaly per key: {line}"
        );
    }
    let want = golden::expected();
    golden::compare(&got, &want).unwrap_or_else(|e| panic!("{e}\nstderr: {stderr}"));
    assert!(
        stderr.contains(&format!("scored {} of {}", readings.len(), readings.len())),
        "{stderr}"
    );
}

#[test]
fn ingest_sends_csv_and_the_lakes_own_parquet_with_event_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let readings = readings("file", 4, 80);
    let csv_path = dir.path().join("readings.csv");
    let mut csv = String::from("meter_id,timestamp,voltage,current,temperature,status\n");
    for (i, r) in readings.iter().enumerate() {
        // Event time as RFC 3339 in half of the rows, epoch ms in the rest.
        let ts = if i % 2 == 0 {
            r.timestamp.to_string()
        } else {
            gridwatch_contracts::json::format_rfc3339_millis(r.timestamp)
        };
        csv.push_str(&format!(
            "{},{ts},{},{},{},OK\n",
            r.meter_id, r.voltage, r.current, r.temperature
        ));
    }
    csv.push_str("file-bad,not-a-time,230,5,21,OK\n");
    std::fs::write(&csv_path, csv).expect("write csv");

    // Instance A takes the CSV.
    let data_a = dir.path().join("a");
    let gw = Gridwatch::start(&data_a, &["--no-simulator"], &[]);
    let (stdout, stderr) = gridwatch(&["ingest", "-q", "--url", &gw.url], &[&csv_path], &[]);
    assert!(
        stdout.contains(&format!(
            "{} readings, {} accepted",
            readings.len(),
            readings.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 unreadable"), "{stdout}");
    assert!(
        stderr.contains("not-a-time"),
        "the bad row is described: {stderr}"
    );
    wait_status(&gw, "A scored the CSV", Duration::from_secs(120), |s| {
        count(s, "processed") >= readings.len() as u64
    });
    gw.stop();
    let scored_a = scored_readings(&consume(&data_a, "scored"));
    assert_eq!(scored_a.len(), readings.len());
    let dead_a = consume(&data_a, "dead-letter");
    assert_eq!(
        dead_a.len(),
        1,
        "the unreadable row is a dead letter: {dead_a:?}"
    );
    assert!(String::from_utf8_lossy(&original(&dead_a[0])).contains("not-a-time"));

    // Instance B takes what A's lake archived.
    let lake_files = parquet_files(&data_a.join("lake").join("readings"));
    assert!(!lake_files.is_empty(), "A's lake wrote Parquet files");
    let data_b = dir.path().join("b");
    let gw = Gridwatch::start(&data_b, &["--no-simulator"], &[]);
    let files: Vec<&Path> = lake_files.iter().map(PathBuf::as_path).collect();
    let (stdout, _) = gridwatch(&["ingest", "-q", "--url", &gw.url], &files, &[]);
    assert!(
        stdout.contains(&format!(
            "{} readings read, {} accepted",
            readings.len(),
            readings.len()
        )),
        "{stdout}"
    );
    wait_status(
        &gw,
        "B scored the lake's files",
        Duration::from_secs(120),
        |s| count(s, "processed") >= readings.len() as u64,
    );
    gw.stop();
    let scored_b = scored_readings(&consume(&data_b, "scored"));
    assert_eq!(scored_b, scored_a, "same readings, event times and values");
    let anomalies = consume(&data_b, "anomalies");
    for m in 0..4 {
        let meter = format!("file-{m:03}");
        assert!(
            anomalies
                .iter()
                .any(|a| a["original_event"]["meter_id"] == meter.as_str()
                    && a["original_event"]["timestamp"] == START_MS + 40_000),
            "the surge of {meter} is detected again from the lake's files"
        );
    }
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}
