//! A real Mosquitto per test, on a free loopback port, with persistence in
//! a temp dir; `mosquitto_pub` as the independent publisher; a recording
//! `IngestTarget`.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridwatch_connector::source::IngestOutcome;
use gridwatch_connector::{IngestTarget, Payload, SourceError};

/// Where Debian puts the broker.
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// `None` (with the reason printed) when Mosquitto is not installed.
pub fn mosquitto_available() -> bool {
    let ok = Path::new(MOSQUITTO).exists()
        && Command::new("mosquitto_pub")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !ok {
        eprintln!(
            "SKIP: mosquitto or mosquitto_pub is not installed; run scripts/setup-test-env \
             (scripts/setup.d/25-mosquitto.sh installs Debian's mosquitto and mosquitto-clients)"
        );
    }
    ok
}

/// A Mosquitto this test started; killed on drop.
pub struct Broker {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_with(|_| String::new())
    }

    /// `prepare` may write files (certificates, a password file) into the
    /// broker's dir, and returns config lines for the listener.
    pub fn start_with(prepare: impl FnOnce(&Path) -> String) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let extra = prepare(dir.path());
        let mut broker = Broker {
            port: free_port(),
            dir,
            child: None,
            extra,
        };
        broker.start_again();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts (again) on the same port and persistence dir.
    pub fn start_again(&mut self) {
        let d = self.dir.path().display();
        let anonymous = if self.extra.contains("password_file") {
            "false"
        } else {
            "true"
        };
        let conf = format!(
            "per_listener_settings false\n\
             allow_anonymous {anonymous}\n\
             persistence true\n\
             persistence_location {d}/\n\
             user root\n\
             max_queued_messages 0\n\
             log_dest file {d}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             listener {port} 127.0.0.1\n{extra}\n",
            port = self.port,
            extra = self.extra,
        );
        std::fs::write(self.path("mosquitto.conf"), conf).expect("write config");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.path("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mosquitto exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it gracefully (SIGTERM), so it writes its persistence file as
    /// a restarted production broker would have.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("mosquitto.log")).unwrap_or_default()
    }

    /// Publishes one message per line of `lines` with `mosquitto_pub -l`.
    pub fn publish_lines(&self, topic: &str, qos: u8, lines: &[String], extra: &[&str]) {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", &qos.to_string(), "-t", topic, "-l"])
            .args(extra)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            for line in lines {
                writeln!(stdin, "{line}").expect("write line");
            }
        }
        let out = child.wait_with_output().expect("mosquitto_pub exits");
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Publishes `bytes` as one message with `mosquitto_pub -f`.
    pub fn publish_file(&self, topic: &str, bytes: &[u8], extra: &[&str]) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write payload");
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-f"])
            .arg(file.path())
            .args(extra)
            .output()
            .expect("mosquitto_pub");
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An `IngestTarget` that records every payload it accepts. It can refuse
/// the first `refuse` attempts with backpressure, and can be held closed
/// (every ingest waits) to keep a batch in flight.
#[derive(Debug, Default)]
pub struct Recorder {
    pub payloads: Mutex<Vec<Payload>>,
    pub attempts: AtomicU64,
    pub refuse: AtomicU64,
    pub refuse_always: AtomicBool,
    pub held: AtomicBool,
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.payloads.lock().unwrap().len()
    }
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.payloads
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.bytes.to_vec())
            .collect()
    }
}

impl IngestTarget for Recorder {
    async fn ingest(&self, payloads: Vec<Payload>) -> Result<IngestOutcome, SourceError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        while self.held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.refuse_always.load(Ordering::SeqCst)
            || self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(SourceError::Backpressure("test target is full".into()));
        }
        let n = payloads.len() as u64;
        self.payloads.lock().unwrap().extend(payloads);
        Ok(IngestOutcome {
            accepted: n,
            ..IngestOutcome::default()
        })
    }
}

/// Waits for `cond`, polling; fails with `what` after a generous bound
/// (a liveness check, not a performance assertion).
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
