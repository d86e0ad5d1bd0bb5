//! Real servers for the tests and the throughput bench: an InfluxDB 1.x
//! (`influxd`) and a VictoriaMetrics, each started on free loopback ports
//! with its data in a temporary directory, and killed when dropped.
//!
//! Both come from `scripts/setup.d/10-influxdb.sh`. When a binary is
//! missing the helpers say so and return `None`, and the test skips.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use url::Url;

/// A free loopback port (racy in principle; the server start retries).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn installed(binary: &str) -> bool {
    Command::new(binary)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// How an `influxd` serves HTTP.
#[derive(Debug, Clone, Default)]
pub struct InfluxdOptions {
    /// Require credentials (`[http] auth-enabled`).
    pub auth: bool,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// An InfluxDB 1.x server of our own.
#[derive(Debug)]
pub struct Influxd {
    child: Option<Child>,
    dir: TempDir,
    config: PathBuf,
    pub port: u16,
    options: InfluxdOptions,
    http: reqwest::Client,
    /// Credentials for queries once auth is on.
    pub admin: Option<(String, String)>,
}

impl Influxd {
    /// Starts one, or says why not and returns `None`.
    pub async fn start(options: InfluxdOptions) -> Option<Self> {
        if !installed("influxd") {
            eprintln!(
                "SKIPPED: influxd (Debian package `influxdb`) is not installed; run scripts/setup-test-env"
            );
            return None;
        }
        let mut dir = tempfile::tempdir().expect("a temporary directory");
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .expect("an HTTP client");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = write_config(dir.path(), port, free_port(), &options);
            let mut server = Self {
                child: None,
                dir,
                config,
                port,
                options: options.clone(),
                http: http.clone(),
                admin: None,
            };
            match server.spawn().await {
                Ok(()) => return Some(server),
                Err(e) => {
                    last_error = e;
                    server.stop();
                    dir = server.into_dir();
                }
            }
        }
        panic!("influxd did not start: {last_error}");
    }

    fn into_dir(mut self) -> TempDir {
        self.stop();
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::mem::replace(&mut self.dir, dir)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("influxd.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("influxd")
            .arg("-config")
            .arg(&self.config)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn influxd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("influxd exited with {status}: {}", self.log()));
            }
            let ping = self.base().join("ping").expect("a ping URL");
            if let Ok(r) = self.http.get(ping).send().await
                && r.status().as_u16() == 204
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "influxd did not answer /ping in 30s: {}",
            self.log()
        ))
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    /// The base URL the sink is given.
    pub fn base(&self) -> Url {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
            .parse()
            .expect("a URL")
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn().await {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    self.stop();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        panic!("influxd did not restart: {last}");
    }

    /// Runs InfluxQL (`POST /query`), as an operator's client would.
    pub async fn query(&self, db: Option<&str>, q: &str) -> Value {
        let mut url = self.base().join("query").expect("a query URL");
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("epoch", "ms");
            if let Some(db) = db {
                pairs.append_pair("db", db);
            }
            pairs.append_pair("q", q);
        }
        let mut request = self.http.post(url);
        if let Some((u, p)) = &self.admin {
            request = request.basic_auth(u, Some(p));
        }
        let response = request.send().await.expect("influxd answers a query");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "{q}: {status} {body}");
        if let Some(e) = body["results"][0]["error"].as_str() {
            panic!("{q}: {e}");
        }
        body
    }

    pub async fn create_database(&self, db: &str) {
        self.query(None, &format!("CREATE DATABASE \"{db}\"")).await;
    }

    /// Rows of a SELECT as (columns, values).
    pub async fn select(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Value>> {
        let body = self.query(Some(db), q).await;
        let mut rows = Vec::new();
        for series in body["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let columns: Vec<String> = series["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect();
            for values in series["values"].as_array().expect("values") {
                let mut row = serde_json::Map::new();
                for (c, v) in columns.iter().zip(values.as_array().expect("a row")) {
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

fn write_config(dir: &Path, http_port: u16, rpc_port: u16, options: &InfluxdOptions) -> PathBuf {
    let d = dir.display();
    let (https, cert, key) = match &options.tls {
        Some((cert, key)) => (true, cert.display().to_string(), key.display().to_string()),
        None => (false, String::new(), String::new()),
    };
    let config = format!(
        r#"reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
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
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false
  https-enabled = {https}
  https-certificate = "{cert}"
  https-private-key = "{key}"
  unix-socket-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"#,
        auth = options.auth,
    );
    let path = dir.join("influxdb.conf");
    std::fs::write(&path, config).expect("influxd config written");
    path
}

/// A VictoriaMetrics single-node server: the v2 (`/api/v2/write`) target.
#[derive(Debug)]
pub struct VictoriaMetrics {
    child: Child,
    _dir: TempDir,
    pub port: u16,
    http: reqwest::Client,
}

impl VictoriaMetrics {
    pub async fn start() -> Option<Self> {
        if !installed("victoria-metrics") {
            eprintln!(
                "SKIPPED: victoria-metrics (Debian package `victoria-metrics`) is not installed; run scripts/setup-test-env"
            );
            return None;
        }
        let mut dir = tempfile::tempdir().expect("a temporary directory");
        let http = reqwest::Client::new();
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("vm.log")).expect("a log file");
            let child = Command::new("victoria-metrics")
                .arg(format!(
                    "-storageDataPath={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                // The test points are from 2026-03; the default retention
                // (1 month) would drop them.
                .arg("-retentionPeriod=100y")
                .arg("-loggerLevel=ERROR")
                .stdout(log.try_clone().expect("a log file"))
                .stderr(log)
                .spawn()
                .expect("victoria-metrics starts");
            let mut vm = Self {
                child,
                _dir: dir,
                port,
                http: http.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = vm.child.try_wait() {
                    break;
                }
                if let Ok(r) = http.get(vm.url("health")).send().await
                    && r.status().is_success()
                {
                    return Some(vm);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = vm.child.kill();
            let _ = vm.child.wait();
            dir = std::mem::replace(&mut vm._dir, tempfile::tempdir().expect("a directory"));
        }
        panic!("victoria-metrics did not start");
    }

    pub fn url(&self, path: &str) -> Url {
        format!("http://127.0.0.1:{}/{path}", self.port)
            .parse()
            .expect("a URL")
    }

    /// Every sample of the series matching `selector`, as VictoriaMetrics'
    /// export API returns them (one JSON object per series).
    pub async fn export(&self, selector: &str) -> Vec<Value> {
        // Make what was just written searchable.
        self.http
            .get(self.url("internal/force_flush"))
            .send()
            .await
            .expect("force_flush");
        let mut url = self.url("api/v1/export");
        url.query_pairs_mut()
            .append_pair("match[]", selector)
            .append_pair("start", "0");
        let text = self
            .http
            .get(url)
            .send()
            .await
            .expect("export answers")
            .text()
            .await
            .expect("export body");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
