//! The real servers the sink end-to-end tests run `gridwatch` against, each
//! on a free loopback port with its data in a temporary directory, killed
//! when dropped, plus the independent Python clients that read them back.
//!
//! - [`Tansu`]: a Kafka-compatible broker (`scripts/setup.d/20-tansu.sh`,
//!   `$HOME/.cache/gridwatch/tools/bin/tansu`, or `$GRIDWATCH_TANSU`);
//! - [`Influxd`]: InfluxDB 1.x (Debian `influxdb`, `scripts/setup.d/10-influxdb.sh`);
//! - [`S3Server`]: s3s-fs (`scripts/setup.d/15-s3.sh`, or `$GRIDWATCH_S3S_FS`);
//! - [`kafka_client`] and [`lake_check`]: `tests/python/kafka_client.py`
//!   (confluent-kafka + fastavro) and `tests/python/lake_check.py` (pyarrow),
//!   in the venv `scripts/setup-test-env` makes (or `$GRIDWATCH_PYTHON`).
//!
//! These are blocking twins of the helpers in the connector crates' tests,
//! because the binary-level tests drive `gridwatch` from plain threads.
//! When a server is not installed, `start` returns `Err` with why, and the
//! test prints SKIPPED with that reason.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::modules::workspace_root;

/// A free loopback port (racy in principle; good enough on a test box).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
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

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: impl Fn() -> String) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}: {}", log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr} within 60s: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Tansu broker with sqlite storage.
#[derive(Debug)]
pub struct Tansu {
    binary: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Result<Self, String> {
        let binary = tool("GRIDWATCH_TANSU", "tansu").ok_or(
            "no tansu binary (install it with scripts/setup.d/20-tansu.sh, ~11 minutes, or set GRIDWATCH_TANSU)",
        )?;
        let mut t = Self {
            binary,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            port: free_port(),
            child: None,
        };
        t.launch();
        Ok(t)
    }

    fn launch(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("log file");
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let dir = self.dir.path().to_owned();
        wait_for_port(
            self.port,
            self.child.as_mut().expect("spawned"),
            "tansu",
            || std::fs::read_to_string(dir.join("tansu.log")).unwrap_or_default(),
        );
    }

    /// `127.0.0.1:port`: Tansu listens on IPv4 only.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with the independent client (Tansu 0.6 does not
    /// create topics on demand).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        kafka_client(&[
            "create-topic",
            "--bootstrap",
            &self.bootstrap(),
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    /// Every message of `topic`; with `registry` (the Apicurio v3 root),
    /// each value's frame is checked and decoded with the schema the
    /// registry holds under its content id (`decoded`), and with the repo's
    /// `.avsc` files (`decoded_local`, `agree`).
    pub fn read(&self, topic: &str, registry: Option<&str>) -> Vec<Value> {
        let schemas = workspace_root().join("schemas/avro");
        let schemas = schemas.to_string_lossy();
        let bootstrap = self.bootstrap();
        let mut args = vec!["read", "--bootstrap", &bootstrap, "--topic", topic];
        if let Some(r) = registry {
            args.extend(["--registry", r, "--schema-dir", &schemas]);
        }
        kafka_client(&args)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An InfluxDB 1.x server (`influxd`).
#[derive(Debug)]
pub struct Influxd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    pub port: u16,
}

impl Influxd {
    pub fn start() -> Result<Self, String> {
        let installed = Command::new("influxd")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            return Err(
                "influxd (Debian package `influxdb`) is not installed; run scripts/setup-test-env"
                    .into(),
            );
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let config = write_influxd_config(dir.path(), port, free_port());
        let mut s = Self {
            child: None,
            dir,
            config,
            port,
        };
        s.launch();
        Ok(s)
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("influxd.log"))
            .expect("log file");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(&self.config)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("influxd starts");
        self.child = Some(child);
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("influxd exited with {status}: {}", self.log());
            }
            if client
                .get(format!("{}/ping", self.url()))
                .send()
                .is_ok_and(|r| r.status().as_u16() == 204)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: an outage, as a crash would cause.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs InfluxQL and returns the JSON answer; panics on an error.
    pub fn query(&self, db: Option<&str>, q: &str) -> Value {
        let mut params = vec![("epoch", "ms"), ("q", q)];
        if let Some(db) = db {
            params.push(("db", db));
        }
        let body = params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/query", self.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .expect("influxd answers a query");
        let status = r.status();
        let body: Value = r.json().expect("a JSON answer");
        assert!(status.is_success(), "{q}: {status} {body}");
        if let Some(e) = body["results"][0]["error"].as_str() {
            panic!("{q}: {e}");
        }
        body
    }

    pub fn create_database(&self, db: &str) {
        self.query(None, &format!("CREATE DATABASE \"{db}\""));
    }

    /// Rows of a SELECT, one JSON object per row (tags and fields by name).
    pub fn select(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Value>> {
        let body = self.query(Some(db), q);
        let mut rows = Vec::new();
        for series in body["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let columns: Vec<String> = series["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect();
            for values in series["values"].as_array().into_iter().flatten() {
                let mut row = serde_json::Map::new();
                for (c, v) in columns.iter().zip(values.as_array().into_iter().flatten()) {
                    row.insert(c.clone(), v.clone());
                }
                rows.push(row);
            }
        }
        rows
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `application/x-www-form-urlencoded` escaping of one value.
fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn write_influxd_config(dir: &Path, http_port: u16, rpc_port: u16) -> PathBuf {
    let d = dir.display();
    let config = format!(
        r#"reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"#
    );
    let path = dir.join("influxdb.conf");
    std::fs::write(&path, config).expect("influxd config written");
    path
}

pub const S3_ACCESS_KEY: &str = "gridwatch-test";
pub const S3_SECRET_KEY: &str = "gridwatch-test-secret";

/// s3s-fs: a real S3 API (SigV4) over a directory, one bucket per folder.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts it with `bucket` created.
    pub fn start(bucket: &str) -> Result<Self, String> {
        let binary = tool("GRIDWATCH_S3S_FS", "s3s-fs").ok_or(
            "no s3s-fs binary (install it with scripts/setup.d/15-s3.sh, or set GRIDWATCH_S3S_FS)",
        )?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::create_dir(dir.path().join(bucket)).map_err(|e| e.to_string())?;
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(dir.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep draining its log so it never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(at) = line.find("server is running at ") {
                    let _ = tx.send(line[at + "server is running at ".len()..].trim().to_owned());
                    sent = true;
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "s3s-fs did not report its address within 30 s".to_string())?;
        Ok(Self {
            child,
            endpoint,
            _dir: dir,
        })
    }

    /// The options `lake_check.py` needs for `s3://bucket/prefix`.
    pub fn reader_args(&self, root: &str) -> Vec<String> {
        vec![
            root.to_owned(),
            "--endpoint".into(),
            self.endpoint.clone(),
            "--access-key".into(),
            S3_ACCESS_KEY.into(),
            "--secret-key".into(),
            S3_SECRET_KEY.into(),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$GRIDWATCH_PYTHON`, else the test venv, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GRIDWATCH_PYTHON") {
        return p.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/gridwatch/venv/bin/python");
        if venv.exists() {
            return venv;
        }
    }
    "python3".into()
}

fn run_python(script: &str, args: &[&str]) -> String {
    let python = python();
    let out = Command::new(&python)
        .arg(workspace_root().join("tests/python").join(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n(the Python clients come from `scripts/setup-test-env`, venv \
         $HOME/.cache/gridwatch/venv, or set GRIDWATCH_PYTHON)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `tests/python/kafka_client.py` (confluent-kafka, fastavro).
pub fn kafka_client(args: &[&str]) -> String {
    run_python("kafka_client.py", args)
}

/// Runs `tests/python/lake_check.py COMMAND ARGS…` (pyarrow) and parses its JSON.
pub fn lake_check(command: &str, args: &[String]) -> Value {
    let mut all = vec![command];
    all.extend(args.iter().map(String::as_str));
    serde_json::from_str(&run_python("lake_check.py", &all)).expect("lake_check.py prints JSON")
}

/// Why a test that needs these servers cannot run here, if it cannot.
pub fn python_clients_missing() -> Option<String> {
    let ok = Command::new(python())
        .args(["-c", "import confluent_kafka, fastavro, pyarrow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| {
        format!(
            "{} cannot import confluent_kafka, fastavro and pyarrow; run scripts/setup-test-env",
            python().display()
        )
    })
}
