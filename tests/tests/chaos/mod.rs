//! What the crash and outage tests share: a deterministic reading stream
//! with anomalies in it and its expected anomalies (the native detector),
//! a load client that re-sends what was not acknowledged, readers of every
//! place the anomalies land, and restartable Tansu and s3s-fs (same port,
//! same data) for outages. Servers and Python clients otherwise come from
//! `gridwatch_tests::servers`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_tests::modules::workspace_root;
use gridwatch_tests::process::Gridwatch;
use gridwatch_tests::servers::{Influxd, free_port, kafka_client, python};
use serde_json::Value;

/// 2026-01-01T00:00:00Z.
pub const START_MS: i64 = 1_767_225_600_000;

/// (meter_id, event time ms, anomaly type): one anomaly, as every sink can name it.
pub type AnomalyKey = (String, i64, String);

/// `meters` meters reporting once a second for `per_meter` seconds: noise
/// around 230 V with a surge now and then, in send order (time-major).
pub fn readings(meters: usize, per_meter: usize) -> Vec<SensorReading> {
    let mut out = Vec::with_capacity(meters * per_meter);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 2000) as f64 / 1000.0 - 1.0
    };
    for i in 0..per_meter {
        for m in 0..meters {
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

/// The anomalies an uninterrupted native detector finds on `readings`.
pub fn expected(readings: &[SensorReading]) -> BTreeSet<AnomalyKey> {
    let mut detector = Detector::new(DetectorConfig::default());
    readings
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
        .collect()
}

pub fn ndjson(batch: &[SensorReading]) -> String {
    batch
        .iter()
        .map(|r| serde_json::to_string(r).expect("json"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the load client saw.
#[derive(Debug, Default)]
pub struct LoadCounts {
    /// Readings in acknowledged requests.
    pub acked: AtomicUsize,
    /// Requests that failed (connection refused or reset, timeouts, 5xx) and were re-sent.
    pub resends: AtomicU64,
    /// Readings ingest answered as duplicates (re-sent after a crash).
    pub duplicates: AtomicU64,
    pub done: AtomicBool,
}

/// A client on its own thread that sends `readings` in `batch`es to
/// whatever URL `url` holds, re-sending a batch until it is acknowledged,
/// as a producer that timed out would. Every answer must account for the
/// whole batch (accepted + duplicates).
pub fn start_client(
    url: Arc<Mutex<String>>,
    readings: Arc<Vec<SensorReading>>,
    batch: usize,
    pause: Duration,
) -> (Arc<LoadCounts>, std::thread::JoinHandle<()>) {
    let counts = Arc::new(LoadCounts::default());
    let c = counts.clone();
    let handle = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        for chunk in readings.chunks(batch) {
            let body = ndjson(chunk);
            loop {
                let target = url.lock().map(|u| u.clone()).unwrap_or_default();
                let answer = client
                    .post(format!("{target}/api/v1/readings"))
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.json::<Value>().ok());
                match answer {
                    Some(a) => {
                        let accepted = a["accepted"].as_u64().unwrap_or(0);
                        let dups = a["duplicates"].as_u64().unwrap_or(0);
                        assert_eq!(
                            (accepted + dups) as usize,
                            chunk.len(),
                            "an answer accounts for every reading: {a}"
                        );
                        c.duplicates.fetch_add(dups, Ordering::Relaxed);
                        c.acked.fetch_add(chunk.len(), Ordering::Release);
                        break;
                    }
                    None => {
                        c.resends.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            std::thread::sleep(pause);
        }
        c.done.store(true, Ordering::Release);
    });
    (counts, handle)
}

/// The `/metrics` samples whose line starts with `family` and contains
/// every one of `labels`: (lines found, their sum).
pub fn metric(url: &str, family: &str, labels: &[&str]) -> (usize, f64) {
    let text = reqwest::blocking::get(format!("{url}/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(family) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    // `+ 0.0`: an empty f64 sum is -0.0, which prints as "-0".
    (values.len(), values.iter().sum::<f64>() + 0.0)
}

/// Waits until the processors have no lag and each sink in `sinks`
/// (`kafka/anomalies`, `lake/scored`, …) reports a queue depth of zero on
/// every one of its `partitions`.
pub fn wait_drained(gw: &Gridwatch, sinks: &[&str], partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = gw.status();
        let done = status["lag"].as_u64() == Some(0)
            && sinks.iter().all(|s| {
                let (n, sum) = metric(
                    &gw.url,
                    "gridwatch_queue_depth_records",
                    &[&format!("stage=\"{s}/")],
                );
                n >= partitions && sum == 0.0
            });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline and sinks did not drain in 10 minutes: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The anomalies in a Kafka topic, decoded with the schema the registry
/// (`registry`, the Apicurio v3 root) holds: key → how many times.
pub fn kafka_anomalies(
    bootstrap: &str,
    topic: &str,
    registry: &str,
) -> BTreeMap<AnomalyKey, usize> {
    let schemas = workspace_root().join("schemas/avro");
    let out = kafka_client(&[
        "read",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--registry",
        registry,
        "--schema-dir",
        &schemas.to_string_lossy(),
    ]);
    let mut got = BTreeMap::new();
    for line in out.lines() {
        let m: Value = serde_json::from_str(line).expect("one JSON object per line");
        let d = &m["decoded"];
        let key = (
            d["original_event"]["meter_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            d["original_event"]["timestamp"].as_i64().unwrap_or(0),
            d["anomaly_type"].as_str().unwrap_or("").to_owned(),
        );
        *got.entry(key).or_insert(0) += 1;
    }
    got
}

/// The anomalies in InfluxDB (`SELECT * FROM anomalies`): key → rows.
pub fn influx_anomalies(influx: &Influxd, db: &str) -> BTreeMap<AnomalyKey, usize> {
    let mut got = BTreeMap::new();
    for r in influx.select(db, "SELECT * FROM anomalies") {
        let key = (
            r["meter_id"].as_str().unwrap_or_default().to_owned(),
            r["time"].as_i64().unwrap_or_default(),
            r["anomaly_type"].as_str().unwrap_or_default().to_owned(),
        );
        *got.entry(key).or_insert(0) += 1;
    }
    got
}

/// The anomalies in the `anomalies` topic of a stopped data directory.
pub fn topic_anomalies(data: &Path) -> BTreeMap<AnomalyKey, usize> {
    let mut got = BTreeMap::new();
    for a in gridwatch_tests::process::consume(data, "anomalies") {
        let key = (
            a["original_event"]["meter_id"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            a["original_event"]["timestamp"].as_i64().unwrap_or(0),
            a["anomaly_type"].as_str().unwrap_or("").to_string(),
        );
        *got.entry(key).or_insert(0) += 1;
    }
    got
}

/// What the lake holds, read with pyarrow (tests/python/lake_keys.py):
/// readings (meter, event time) → rows, anomalies → rows.
pub struct LakeKeys {
    pub readings: BTreeMap<(String, i64), usize>,
    pub anomalies: BTreeMap<AnomalyKey, usize>,
    pub files: u64,
}

/// Reads the lake at `root` (`s3://bucket/prefix` with `s3` = (endpoint,
/// access key, secret key), or a local directory).
pub fn lake_keys(root: &str, s3: Option<(&str, &str, &str)>) -> LakeKeys {
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/python/lake_keys.py"))
        .arg(root);
    if let Some((endpoint, key, secret)) = s3 {
        cmd.args([
            "--endpoint",
            endpoint,
            "--access-key",
            key,
            "--secret-key",
            secret,
        ]);
    }
    let out = cmd.output().expect("python runs");
    assert!(
        out.status.success(),
        "lake_keys.py failed:\n{}\n(pyarrow comes from scripts/setup-test-env)",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("lake_keys.py prints JSON");
    let mut readings = BTreeMap::new();
    for r in v["readings"].as_array().into_iter().flatten() {
        let key = (
            r[0].as_str().unwrap_or("").to_owned(),
            r[1].as_i64().unwrap_or(0),
        );
        *readings.entry(key).or_insert(0) += 1;
    }
    let mut anomalies = BTreeMap::new();
    for r in v["anomalies"].as_array().into_iter().flatten() {
        let key = (
            r[0].as_str().unwrap_or("").to_owned(),
            r[1].as_i64().unwrap_or(0),
            r[2].as_str().unwrap_or("").to_owned(),
        );
        *anomalies.entry(key).or_insert(0) += 1;
    }
    LakeKeys {
        readings,
        anomalies,
        files: v["files"].as_u64().unwrap_or(0),
    }
}

/// Compares what a sink holds with the expected set: an error naming the
/// missing, the unexpected and the doubled (a few of each).
pub fn exactly_once<K: Ord + Clone + std::fmt::Debug>(
    what: &str,
    got: &BTreeMap<K, usize>,
    want: &BTreeSet<K>,
) -> Result<(), String> {
    let missing: Vec<&K> = want.iter().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<&K> = got.keys().filter(|k| !want.contains(k)).collect();
    let doubled: Vec<(&K, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    if missing.is_empty() && extra.is_empty() && doubled.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{what}: {} expected, {} distinct held; {} missing {:?}; {} unexpected {:?}; {} more than once {:?}",
        want.len(),
        got.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
        doubled.len(),
        &doubled[..doubled.len().min(5)],
    ))
}

/// Resident set size of a process now (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME")?;
    let cached = Path::new(&home)
        .join(".cache/gridwatch/tools/bin")
        .join(name);
    cached.exists().then_some(cached)
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr} within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server that can be killed and started again on the same port with
/// the same data: Tansu (sqlite) or s3s-fs (a directory).
pub struct Restartable {
    kind: Kind,
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tansu,
    S3,
}

pub const S3_ACCESS_KEY: &str = "gridwatch-chaos";
pub const S3_SECRET_KEY: &str = "gridwatch-chaos-secret";

impl Restartable {
    /// Tansu with sqlite storage, or `Err` with why it cannot run here.
    pub fn tansu() -> Result<Self, String> {
        let binary = tool("GRIDWATCH_TANSU", "tansu").ok_or(
            "no tansu binary (install it with scripts/setup.d/20-tansu.sh, or set GRIDWATCH_TANSU)",
        )?;
        Self::launch_new(Kind::Tansu, binary, None)
    }

    /// s3s-fs with `bucket` created, or `Err` with why it cannot run here.
    pub fn s3(bucket: &str) -> Result<Self, String> {
        let binary = tool("GRIDWATCH_S3S_FS", "s3s-fs").ok_or(
            "no s3s-fs binary (install it with scripts/setup.d/15-s3.sh, or set GRIDWATCH_S3S_FS)",
        )?;
        Self::launch_new(Kind::S3, binary, Some(bucket))
    }

    fn launch_new(kind: Kind, binary: PathBuf, bucket: Option<&str>) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if let Some(b) = bucket {
            std::fs::create_dir_all(dir.path().join("root").join(b)).map_err(|e| e.to_string())?;
        }
        let mut s = Self {
            kind,
            binary,
            dir,
            port: free_port(),
            child: None,
        };
        s.start();
        Ok(s)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it (again) on its port with its data.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(&self.binary);
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        match self.kind {
            Kind::Tansu => {
                let listener = format!("tcp://127.0.0.1:{}", self.port);
                cmd.args(["broker", "--listener-url", &listener])
                    .args(["--advertised-listener-url", &listener])
                    .args(["--storage-engine", "sqlite://tansu.db"])
                    .env("RUST_LOG", "warn");
            }
            Kind::S3 => {
                cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                    .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                    .arg(self.dir.path().join("root"))
                    .env("RUST_LOG", "warn")
                    .env("NO_COLOR", "1");
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let what = self.binary.display().to_string();
        wait_for_port(self.port, self.child.as_mut().expect("spawned"), &what);
    }

    /// SIGKILL: an outage, not a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:port` (Kafka bootstrap).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:port` (S3 endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates a Kafka topic with the independent client.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    kafka_client(&[
        "create-topic",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
    ]);
}

/// A small seeded generator for kill points (xorshift64*), so a failing
/// run can be repeated with `GRIDWATCH_CRASH_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> (Self, u64) {
        let seed = std::env::var("GRIDWATCH_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        (Self(seed.max(1)), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}
