//! What the gridwatch-kafka tests share: a real Tansu broker on a free
//! loopback port with a temporary sqlite file, and the independent Python
//! client (confluent-kafka, fastavro) in tests/python/kafka_client.py.
//!
//! Tansu comes from `scripts/setup.d/20-tansu.sh` (`$HOME/.cache/gridwatch/tools/bin/tansu`),
//! or `$GRIDWATCH_TANSU`. Without it the tests print SKIPPED and why.
//! Python is `$GRIDWATCH_PYTHON`, else the venv `scripts/setup-test-env`
//! makes; missing packages fail the test with the command that installs them.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate is two levels below the workspace root")
        .to_owned()
}

fn tansu_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GRIDWATCH_TANSU") {
        return Ok(path.into());
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let cached = Path::new(&home).join(".cache/gridwatch/tools/bin/tansu");
    if cached.exists() {
        return Ok(cached);
    }
    Err(format!(
        "no tansu binary at {} (install it with scripts/setup.d/20-tansu.sh, ~11 minutes, or set GRIDWATCH_TANSU)",
        cached.display()
    ))
}

/// A Tansu broker with sqlite storage in its own temporary directory,
/// killed when dropped. [`Tansu::stop`] and [`Tansu::restart`] keep the data.
pub struct Tansu {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Tansu {
    /// Starts Tansu, or prints why the test is skipped and returns `None`.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        let binary = match tansu_binary() {
            Ok(binary) => binary,
            Err(why) => {
                println!("SKIPPED {test}: {why}");
                return None;
            }
        };
        let port = free_port();
        let mut tansu = Self {
            binary,
            dir: tempfile::tempdir().expect("a temporary directory"),
            port,
            child: None,
        };
        tansu.launch();
        Some(tansu)
    }

    fn launch(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("the tansu log file");
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the tansu log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status}: {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "tansu did not listen on {addr} within 60s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL: an outage, not a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("GRIDWATCH_PYTHON") {
        return python.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/gridwatch/venv/bin/python");
        if venv.exists() {
            return venv;
        }
    }
    "python3".into()
}

/// Runs tests/python/kafka_client.py with `args` (and `stdin`), returning
/// its stdout; fails the test with its stderr if it fails.
pub fn kafka_client(args: &[&str], stdin: Option<&str>) -> String {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import confluent_kafka, fastavro"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "The Kafka tests read and write with confluent-kafka and fastavro, which {} cannot import \
             ({other:?}).\nInstall them with `scripts/setup-test-env`, or \
             ~/.cache/gridwatch/venv/bin/pip install -r tests/python/requirements.txt, or set GRIDWATCH_PYTHON.",
            python.display()
        ),
    }
    let script = workspace_root().join("tests/python/kafka_client.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("piped stdin");
        if let Some(text) = stdin {
            input
                .write_all(text.as_bytes())
                .expect("python reads stdin");
        }
    }
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "kafka_client.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("JSON output")
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    kafka_client(
        &[
            "create-topic",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
        ],
        None,
    );
}

/// Every message of `topic`, as kafka_client.py's `read` prints them.
pub fn read_topic(bootstrap: &str, topic: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["read", "--bootstrap", bootstrap, "--topic", topic];
    args.extend_from_slice(extra);
    kafka_client(&args, None)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The source positions (`gridwatch-source` headers) in `topic` that came
/// from `source_topic`/`partition`, one entry per copy.
pub fn source_offsets(
    bootstrap: &str,
    topic: &str,
    source_topic: &str,
    partition: u32,
) -> Vec<u64> {
    let prefix = format!("{source_topic}/{partition}/");
    read_topic(bootstrap, topic, &[])
        .iter()
        .filter_map(|m| m["headers"]["gridwatch-source"].as_str())
        .filter_map(|h| h.strip_prefix(&prefix))
        .map(|o| o.parse().expect("a numeric offset"))
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
