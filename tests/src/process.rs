//! Running the real `gridwatch` binary in tests: build it, start it on a
//! free loopback port, wait for readiness, kill it hard.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::modules::workspace_root;

/// The `gridwatch` binary, built (debug profile) on first use.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("GRIDWATCH_BIN") {
            return PathBuf::from(bin);
        }
        crate::modules::wasm_dir();
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "gridwatch", "--bin", "gridwatch"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building gridwatch failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug/gridwatch")
    })
}

/// A running `gridwatch run`.
#[derive(Debug)]
pub struct Gridwatch {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    /// From spawn to `/readyz` answering 200.
    pub ready_after: Duration,
}

impl Gridwatch {
    /// Starts `gridwatch run` on `data_dir` with extra args, and waits until ready.
    pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        // Build first: the readiness clock starts at spawn, not before cargo.
        let binary = binary();
        let started = Instant::now();
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("GRIDWATCH_RUNTIME__MODULES_DIR", crate::modules::wasm_dir())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("gridwatch starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(url);
                    sent = true;
                }
                if std::env::var_os("GRIDWATCH_TEST_ECHO").is_some() {
                    println!("gridwatch: {line}");
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("gridwatch printed its HTTP address");
        let client = reqwest::blocking::Client::new();
        loop {
            if client
                .get(format!("{url}/readyz"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "gridwatch never became ready"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("gridwatch exited during start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            ready_after: started.elapsed(),
        }
    }

    /// SIGKILL: no flush, no checkpoint, as a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "gridwatch exited with {status}");
    }

    /// `/api/v1/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        reqwest::blocking::get(format!("{}/api/v1/status", self.url))
            .and_then(|r| r.json())
            .expect("status")
    }
}

/// Runs `gridwatch topic consume TOPIC -d -B` on a stopped data directory
/// and returns the JSON lines.
pub fn consume(data_dir: &Path, topic: &str) -> Vec<serde_json::Value> {
    let out = Command::new(binary())
        .args(["topic", "consume", topic, "-d", "-B", "--data-dir"])
        .arg(data_dir)
        .env("GRIDWATCH_HTTP__LISTEN", "127.0.0.1:9")
        .output()
        .expect("consume runs");
    assert!(
        out.status.success(),
        "consume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
