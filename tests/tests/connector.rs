//! `gridwatch connector run`: the InfluxDB sink as its own process, from a
//! Fluvio-format connector file, consuming `anomalies` from a running
//! `gridwatch run` (embedded backend) and writing to a real InfluxDB 1.x.
//! It is stopped between two halves of the golden readings and started
//! again: the second run resumes from its checkpoint (it is handed only the
//! anomalies it had not delivered), and InfluxDB ends with every golden
//! anomaly once. A file with an unknown transform is refused by name.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_contracts::SensorReading;
use gridwatch_tests::golden;
use gridwatch_tests::process::{Gridwatch, binary};
use gridwatch_tests::servers::Influxd;

const DB: &str = "gridwatch";

/// A running `gridwatch connector run`.
struct ConnectorProcess {
    child: Child,
    url: String,
}

impl ConnectorProcess {
    fn start(file: &Path, source: &str, data_dir: &Path) -> Self {
        let mut child = Command::new(binary())
            .args(["connector", "run", "--config"])
            .arg(file)
            .args(["--url", source, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the connector starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the connector printed its HTTP address");
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !client
            .get(format!("{url}/readyz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "the connector never became ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }

    /// A `gridwatch_events_total` sample of the influxdb stage.
    fn events(&self, direction: &str) -> f64 {
        let text = reqwest::blocking::get(format!("{}/metrics", self.url))
            .and_then(|r| r.text())
            .expect("/metrics answers");
        text.lines()
            .filter(|l| {
                l.starts_with("gridwatch_events_total")
                    && l.contains("stage=\"influxdb\"")
                    && l.contains(&format!("direction=\"{direction}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, and a clean exit (it flushes and commits).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the connector exited with {status}");
    }
}

impl Drop for ConnectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        assert!(r.status().is_success(), "ingest: {}", r.status());
    }
}

fn influx_rows(influx: &Influxd) -> golden::Expected {
    influx
        .select(DB, "SELECT * FROM anomalies")
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
        .collect()
}

fn wait_for_rows(influx: &Influxd, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = influx_rows(influx).len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "InfluxDB holds {got} of {n} anomalies"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_influxdb_connector_runs_as_its_own_process_and_resumes_without_duplicates() {
    let influx = match Influxd::start() {
        Ok(i) => i,
        Err(why) => {
            println!("SKIPPED the_influxdb_connector_runs_as_its_own_process: {why}");
            return;
        }
    };
    influx.create_database(DB);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let connector_dir = dir.path().join("connector");
    // The pipeline writes no sinks itself: the connector does.
    let pipeline_config = dir.path().join("gridwatch.yaml");
    std::fs::write(&pipeline_config, "sinks:\n  lake: null\n").expect("config");
    let pipeline_config = pipeline_config.to_string_lossy().into_owned();
    let file = dir.path().join("influxdb.yaml");
    std::fs::write(
        &file,
        format!(
            r#"apiVersion: 0.1.0
meta:
  version: 0.1.0
  name: test-influxdb
  type: gridwatch-influxdb-sink
  topic: anomalies
  consumer:
    id: test-influxdb
    offset: {{strategy: auto, start: beginning}}
influxdb:
  url: "{}"
  api: v1
  database: {DB}
"#,
            influx.url()
        ),
    )
    .expect("connector file");

    let gw = Gridwatch::start(
        &data,
        &["--no-simulator", "--config", &pipeline_config],
        &[],
    );
    let readings = golden::readings();
    let want = golden::expected();
    let half = readings.len() / 2;
    let first: BTreeSet<(String, i64)> = readings[..half]
        .iter()
        .map(|r| (r.meter_id.clone(), r.timestamp))
        .collect();
    let want_first = want
        .keys()
        .filter(|(m, t, _)| first.contains(&(m.clone(), *t)))
        .count();

    // First half, first run of the connector.
    let connector = ConnectorProcess::start(&file, &gw.url, &connector_dir);
    ingest(&gw.url, &readings[..half]);
    wait_for_rows(&influx, want_first);
    let first_run = connector.events("in");
    connector.stop();
    assert_eq!(
        first_run as usize, want_first,
        "first run delivered the first half's anomalies"
    );

    // Second half while it is down; the restarted connector resumes from
    // its checkpoint and is handed only what it had not delivered.
    ingest(&gw.url, &readings[half..]);
    let connector = ConnectorProcess::start(&file, &gw.url, &connector_dir);
    wait_for_rows(&influx, want.len());
    std::thread::sleep(Duration::from_millis(500));
    let second_run = connector.events("in");
    connector.stop();
    assert_eq!(
        second_run as usize,
        want.len() - want_first,
        "the second run resumed after the first run's commit"
    );
    let got = influx_rows(&influx);
    assert_eq!(got.len(), want.len(), "each anomaly once in InfluxDB");
    golden::compare(&got, &want).expect("InfluxDB holds the golden anomalies");
    println!(
        "connector: {first_run} anomalies in the first run, {second_run} after the restart, {} in InfluxDB",
        got.len()
    );

    // A file with a transform this binary does not know is refused by name.
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&file).expect("read back")
        + "transforms:\n  - uses: infinyon/jolt@0.4.1\n    with: {spec: []}\n";
    std::fs::write(&bad, text).expect("bad file");
    let out = Command::new(binary())
        .args(["connector", "run", "--config"])
        .arg(&bad)
        .args(["--url", &gw.url, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&connector_dir)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown transform is refused");
    assert!(
        stderr.contains("transforms[0].uses") && stderr.contains("infinyon/jolt@0.4.1"),
        "{stderr}"
    );
    gw.stop();
}
