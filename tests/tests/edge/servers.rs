//! The real peers of the source tests, each on a free loopback port with
//! its data in a temporary directory and killed on drop: Mosquitto (Debian
//! `mosquitto`, with `mosquitto_pub` as the independent publisher) and Tansu
//! (`scripts/setup.d/20-tansu.sh`, or `$GRIDWATCH_TANSU`), written to with
//! confluent-kafka through `tests/python/kafka_client.py`. When one is not
//! installed, `start` says why and the test prints SKIPPED.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_tests::modules::workspace_root;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_listening(port: u16, child: &mut Child, what: &str, log: impl Fn() -> String) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}: {}", log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port} within 60s: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto broker with persistence, so sessions survive.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start() -> Result<Self, String> {
        if !Path::new(MOSQUITTO).exists() {
            return Err(format!(
                "{MOSQUITTO} is not installed (scripts/setup.d/25-mosquitto.sh installs Debian's mosquitto)"
            ));
        }
        if Command::new("mosquitto_pub")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err("mosquitto_pub is not installed (Debian mosquitto-clients)".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "per_listener_settings false\nallow_anonymous true\npersistence true\n\
             persistence_location {d}/\nuser root\nmax_queued_messages 0\nmax_inflight_messages 0\n\
             log_dest file {d}/mosquitto.log\nlog_type all\nlistener {port} 127.0.0.1\n"
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).map_err(|e| e.to_string())?;
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mosquitto: {e}"))?;
        let log_path = dir.path().join("mosquitto.log");
        wait_listening(port, &mut child, "mosquitto", || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        });
        Ok(Self {
            port,
            dir,
            child: Some(child),
        })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits until the broker logs a subscription to `filter` (it logs
    /// every SUBSCRIBE with `log_type all`), so nothing published after it
    /// can miss the subscriber.
    pub fn wait_subscribed(&self, filter: &str) {
        let started = Instant::now();
        while !self
            .log()
            .lines()
            .any(|l| l.ends_with(&format!(" {filter}")))
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no subscription to {filter} within 60s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `mosquitto_pub -q 1 -l`: one message per line of `lines`.
    pub fn publish_lines(&self, topic: &str, lines: &str) {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-l"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(lines.as_bytes())
            .expect("mosquitto_pub reads");
        let status = child.wait().expect("mosquitto_pub");
        assert!(status.success(), "mosquitto_pub -l failed: {status}");
    }

    /// `mosquitto_pub -q 1 -f FILE`: the bytes as one message.
    pub fn publish_bytes(&self, topic: &str, bytes: &[u8]) {
        let file = self.dir.path().join("payload.bin");
        std::fs::write(&file, bytes).expect("payload file");
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-f"])
            .arg(&file)
            .status()
            .expect("mosquitto_pub runs");
        assert!(status.success(), "mosquitto_pub -f failed: {status}");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Tansu broker with sqlite storage.
#[derive(Debug)]
pub struct Tansu {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Result<Self, String> {
        let binary = match std::env::var_os("GRIDWATCH_TANSU") {
            Some(p) => PathBuf::from(p),
            None => {
                let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
                Path::new(&home).join(".cache/gridwatch/tools/bin/tansu")
            }
        };
        if !binary.exists() {
            return Err(format!(
                "no tansu at {} (scripts/setup.d/20-tansu.sh builds it, or set GRIDWATCH_TANSU)",
                binary.display()
            ));
        }
        python_has_kafka()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(&binary)
            .current_dir(dir.path())
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let log_path = dir.path().join("tansu.log");
        wait_listening(port, &mut child, "tansu", || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        });
        Ok(Self {
            port,
            dir,
            child: Some(child),
        })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        kafka_client(
            &[
                "create-topic",
                "--bootstrap",
                &self.bootstrap(),
                "--topic",
                topic,
                "--partitions",
                &partitions.to_string(),
            ],
            None,
        );
    }

    /// Produces `(key, value)` messages with confluent-kafka.
    pub fn produce(&self, topic: &str, messages: &[(String, Vec<u8>)]) {
        let lines: String = messages
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value_hex": hex(v)}).to_string() + "\n")
            .collect();
        kafka_client(
            &[
                "produce",
                "--bootstrap",
                &self.bootstrap(),
                "--topic",
                topic,
            ],
            Some(&lines),
        );
    }

    /// The group's committed offset per partition.
    pub fn committed(&self, topic: &str, group: &str) -> serde_json::Value {
        let out = kafka_client(
            &[
                "committed",
                "--bootstrap",
                &self.bootstrap(),
                "--topic",
                topic,
                "--group",
                group,
            ],
            None,
        );
        serde_json::from_str(out.trim()).expect("committed prints JSON")
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

fn python_has_kafka() -> Result<(), String> {
    let ok = Command::new(python())
        .args(["-c", "import confluent_kafka, fastavro"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} cannot import confluent_kafka and fastavro (scripts/setup-test-env installs them)",
            python().display()
        ))
    }
}

pub fn kafka_client(args: &[&str], stdin: Option<&str>) -> String {
    let script = workspace_root().join("tests/python/kafka_client.py");
    let mut child = Command::new(python())
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("python reads");
        }
    }
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "kafka_client.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
