//! Gridwatch's metrics against the real Prometheus (Debian's `prometheus`
//! package, installed by scripts/setup.d/30-observability.sh):
//!
//! - `promtool check metrics` accepts what `GET /metrics` serves;
//! - a Prometheus started here scrapes a running `gridwatch run` every 5 s
//!   and answers a query with the count the ingest API reported;
//! - every PromQL query of the Grafana dashboards parses (`promtool check
//!   rules`) and names only metrics the code exports, and the provided
//!   Prometheus config is valid and scrapes every 5 s (SC-003).

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_runtime::metrics;
use gridwatch_tests::modules::workspace_root;
use gridwatch_tests::process::Gridwatch;

/// The path of a tool on PATH, or `None` with the reason printed.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        println!(
            "SKIPPED: `{name}` is not installed (Debian package `prometheus`; scripts/setup-test-env installs it)"
        );
    }
    found
}

fn post_readings(url: &str, body: &str) -> serde_json::Value {
    reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/readings"))
        .header("content-type", "application/x-ndjson")
        .body(body.to_string())
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("ingest answers")
}

/// Ten normal readings and a surge for one meter, plus one malformed line:
/// enough for every stage's metrics to have samples.
fn some_traffic(url: &str) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut body = String::new();
    for k in 0..12 {
        let v = 230.0 + [0.0, 0.6, -0.6][k % 3];
        body.push_str(&format!(
            "{{\"meter_id\":\"prom-1\",\"timestamp\":{},\"voltage\":{v},\"current\":5.0,\"temperature\":20.0}}\n",
            now - 20_000 + k as i64 * 1000
        ));
    }
    body.push_str(&format!(
        "{{\"meter_id\":\"prom-1\",\"timestamp\":{},\"voltage\":300.0,\"current\":5.0,\"temperature\":20.0}}\n",
        now - 5_000
    ));
    body.push_str("{not json\n");
    let answer = post_readings(url, &body);
    assert_eq!(answer["accepted"], 13, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");
    13
}

fn scrape(url: &str) -> String {
    reqwest::blocking::get(format!("{url}/metrics"))
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .expect("GET /metrics")
}

/// Waits until `f` gives `Some`, for at most `limit` (a liveness bound, not
/// a performance assertion).
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn promtool_accepts_the_exposition_and_every_family_is_a_named_constant() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gridwatch::start(dir.path(), &["--no-simulator"], &[]);
    some_traffic(&gw.url);
    // Wait until detect has processed them, so its metrics are there too.
    let text = eventually(Duration::from_secs(30), || {
        let text = scrape(&gw.url);
        text.contains(metrics::INGEST_TO_DETECT_LATENCY)
            .then_some(text)
            .filter(|t| t.contains(metrics::ANOMALIES))
    })
    .expect("detect's metrics appear");

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics found problems:\n{report}\n--- exposition ---\n{text}"
    );

    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for family in &families {
        assert!(
            metrics::ALL.contains(family),
            "{family} is exported but is not a constant in gridwatch_runtime::metrics"
        );
    }
    println!(
        "promtool check metrics: clean; {} families exported: {}",
        families.len(),
        families.join(", ")
    );
    gw.stop();
}

/// A Prometheus server on a free loopback port with temporary storage.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nscrape_configs:\n  - job_name: gridwatch\n    scrape_interval: 5s\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write config");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let url = format!("http://127.0.0.1:{port}");
        let ready = eventually(Duration::from_secs(60), || {
            reqwest::blocking::get(format!("{url}/-/ready"))
                .ok()
                .filter(|r| r.status().is_success())
        });
        assert!(ready.is_some(), "prometheus never became ready");
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// The value of an instant query's first sample.
    fn query(&self, promql: &str) -> Option<f64> {
        let body: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!(
                "{}/api/v1/query?query={}",
                self.url,
                encode(promql)
            ))
            .send()
            .ok()?
            .json()
            .ok()?;
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[test]
fn a_real_prometheus_scrapes_gridwatch_and_answers_queries() {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gridwatch::start(dir.path(), &["--no-simulator"], &[]);
    let accepted = some_traffic(&gw.url);
    let target = gw.url.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&binary, &target);

    // Scrapes every 5 s; give it a few rounds.
    let up = eventually(Duration::from_secs(60), || {
        prom.query("up{job=\"gridwatch\"}").filter(|v| *v == 1.0)
    });
    assert_eq!(up, Some(1.0), "prometheus never scraped gridwatch");
    let ingested = eventually(Duration::from_secs(60), || {
        prom.query("sum(gridwatch_events_total{stage=\"ingest\",direction=\"out\"})")
            .filter(|v| *v == accepted as f64)
    });
    assert_eq!(
        ingested,
        Some(accepted as f64),
        "prometheus's count of ingested readings"
    );
    let anomalies = eventually(Duration::from_secs(60), || {
        prom.query("sum(gridwatch_anomalies_total{type=\"VOLTAGE_SURGE\"})")
    });
    assert_eq!(anomalies, Some(1.0), "the surge counted as one anomaly");
    let dead = eventually(Duration::from_secs(60), || {
        prom.query("sum(gridwatch_dead_letters_total{stage=\"ingest\"})")
    });
    assert_eq!(
        dead,
        Some(1.0),
        "the malformed line counted as a dead letter"
    );
    // Set at each checkpoint (every 10 s by default) from the detect module.
    let meters = eventually(Duration::from_secs(60), || {
        prom.query("sum(gridwatch_detector_meters)")
    });
    assert_eq!(meters, Some(1.0), "the detector holds the one meter prom-1");
    let state_bytes = eventually(Duration::from_secs(60), || {
        prom.query("sum(gridwatch_detector_state_bytes)")
            .filter(|b| *b > 0.0)
    });
    assert!(
        state_bytes.is_some(),
        "the detector's state size is exported"
    );
    let p99 = eventually(Duration::from_secs(60), || {
        prom.query(
            "histogram_quantile(0.99, sum by (le) (gridwatch_ingest_to_detect_latency_seconds_bucket))",
        )
    });
    println!(
        "prometheus at {} scraped gridwatch: up=1, ingested={accepted}, anomalies=1, dead letters=1, detector meters=1 in {:?} bytes, p99 ingest→detect bucket bound={:?} s",
        prom.url, state_bytes, p99
    );
    drop(prom);
    gw.stop();
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every PromQL expression in a Grafana dashboard, with its panel title.
fn promql_of(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["datasource"]["type"] != "prometheus" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_string()));
            }
        }
    }
    out
}

/// Names in a PromQL expression that look like Gridwatch metrics.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("gridwatch_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.push(expr[start..end].to_string());
        i = end;
    }
    names
}

#[test]
fn every_grafana_query_names_metrics_the_code_exports() {
    let root = workspace_root();
    let dir = root.join("dashboards");
    let exported = metrics::series_names();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut checked = 0;
    let mut influx_panels = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "the health and operator dashboards");
    let provisioning =
        std::fs::read_to_string(root.join("dashboards/provisioning/datasources/gridwatch.yaml"))
            .expect("datasource provisioning");
    for file in &files {
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).expect("read")).expect("valid JSON");
        let name = file.display().to_string();
        assert_eq!(d["refresh"], "5s", "{name}: SC-003 asks for 5 s refresh");
        for panel in d["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            let uid = panel["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(
                provisioning.contains(&format!("uid: {uid}")),
                "{name}: panel {:?} uses datasource {uid:?}, which is not provisioned",
                panel["title"]
            );
            assert!(
                !panel["targets"].as_array().is_none_or(|t| t.is_empty()),
                "{name}: panel {:?} has no query",
                panel["title"]
            );
            if panel["datasource"]["type"] == "influxdb" {
                influx_panels += 1;
                for t in panel["targets"].as_array().into_iter().flatten() {
                    let q = t["query"].as_str().unwrap_or_default();
                    assert!(
                        q.contains("r._measurement == \"anomalies\""),
                        "{name}: panel {:?} does not read the anomalies measurement",
                        panel["title"]
                    );
                }
            }
        }
        for (title, expr) in promql_of(&d) {
            let names = metric_names(&expr);
            assert!(
                !names.is_empty(),
                "{name}: panel {title:?} queries no Gridwatch metric: {expr}"
            );
            for n in names {
                assert!(
                    exported.contains(&n),
                    "{name}: panel {title:?} queries {n}, which Gridwatch does not export (see gridwatch_runtime::metrics)"
                );
            }
            checked += 1;
            let concrete = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h");
            rules.push_str(&format!(
                "      - record: gridwatch:dashboard:q{checked}\n        expr: {}\n",
                serde_json::to_string(&concrete).expect("string")
            ));
        }
    }
    assert!(
        influx_panels >= 4,
        "the operator dashboard reads InfluxDB anomalies"
    );
    println!(
        "{checked} PromQL queries name only exported metrics; {influx_panels} InfluxDB panels read `anomalies`"
    );

    let Some(promtool) = tool("promtool") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules_file = tmp.path().join("dashboards.rules.yml");
    std::fs::write(&rules_file, rules).expect("write rules");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = root.join("dashboards/prometheus.yml");
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "dashboards/prometheus.yml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(
        text.contains("scrape_interval: 5s"),
        "SC-003: scrape every 5 s"
    );
}
