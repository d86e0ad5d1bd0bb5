//! Shared by the lake's integration tests: a real S3 server (s3s-fs) on a
//! free loopback port, the independent Python reader, and record factories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use gridwatch_connector::SinkRecord;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{
    AnomalyEvent, AnomalyType, Disposition, FieldScore, MeterStatus, ScoredReading, SensorReading,
    Severity,
};
use gridwatch_lake::LakeConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ACCESS_KEY: &str = "gridwatch-test";
pub const SECRET_KEY: &str = "gridwatch-test-secret";
pub const BUCKET: &str = "lake-test";
pub const CONTENT_ID: u64 = 7;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate is two levels below the workspace root")
        .to_owned()
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

/// `$GRIDWATCH_S3S_FS`, else the one `scripts/setup.d/15-s3.sh` installs,
/// else `s3s-fs` on the PATH.
fn s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("GRIDWATCH_S3S_FS") {
        return p.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let tool = Path::new(&home).join(".cache/gridwatch/tools/bin/s3s-fs");
        if tool.exists() {
            return tool;
        }
    }
    "s3s-fs".into()
}

/// A running s3s-fs on 127.0.0.1, serving a temporary directory with the
/// test bucket in it; killed when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
}

impl S3Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // s3s-fs keeps a bucket as a folder of its root.
        std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket folder");
        Self::start_in(dir, 0).await
    }

    /// Starts on `port` (0: any free one) over an existing directory.
    pub async fn start_in(dir: tempfile::TempDir, port: u16) -> Self {
        let binary = s3s_fs();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the S3 server {}: {e}. Install it with `scripts/setup-test-env` \
                     (scripts/setup.d/15-s3.sh: cargo install s3s-fs --features binary), or set \
                     GRIDWATCH_S3S_FS.",
                    binary.display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("server is running at ") {
                    return line[at + "server is running at ".len()..].trim().to_owned();
                }
            }
            panic!("s3s-fs exited before listening")
        })
        .await
        .expect("s3s-fs listens within 30 s");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            endpoint,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("endpoint ends in a port")
    }

    /// Stops the server, keeping its data, for a restart on the same port.
    pub async fn stop(mut self) -> (tempfile::TempDir, u16) {
        let port = self.port();
        let _ = self.child.kill().await;
        (self.dir, port)
    }

    pub fn config(&self, prefix: &str) -> LakeConfig {
        LakeConfig {
            url: Some(format!("s3://{BUCKET}/{prefix}")),
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(gridwatch_lake::Secret::new(ACCESS_KEY)),
            secret_access_key: Some(gridwatch_lake::Secret::new(SECRET_KEY)),
            path_style: Some(true),
            ..LakeConfig::default()
        }
    }

    /// The S3 options of `lake_check.py`.
    pub fn reader_args(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("s3://{BUCKET}/{prefix}"),
            "--endpoint".into(),
            self.endpoint.clone(),
            "--access-key".into(),
            ACCESS_KEY.into(),
            "--secret-key".into(),
            SECRET_KEY.into(),
        ]
    }
}

/// Runs `tests/python/lake_check.py COMMAND ARGS…` and parses its JSON.
pub async fn lake_check(command: &str, args: &[String]) -> serde_json::Value {
    let python = python();
    let script = workspace_root().join("tests/python/lake_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(command)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("No module named 'pyarrow'") {
            "\npyarrow is missing: run `scripts/setup-test-env` (venv at \
             $HOME/.cache/gridwatch/venv) or point GRIDWATCH_PYTHON at an interpreter with \
             pyarrow."
        } else {
            ""
        };
        panic!("lake_check.py {command} failed:\n{stderr}{hint}");
    }
    serde_json::from_slice(&out.stdout).expect("lake_check.py prints JSON")
}

/// The source offsets the independent reader finds for one partition.
pub async fn offsets(root_args: &[String], dataset: &str, partition: u32) -> Vec<u64> {
    let mut args = vec![root_args[0].clone(), dataset.into(), partition.to_string()];
    args.extend_from_slice(&root_args[1..]);
    let value = lake_check("offsets", &args).await;
    serde_json::from_value(value).expect("a list of offsets")
}

/// 2026-03-01T20:00:00Z.
pub const BASE_MS: i64 = 1_772_395_200_000;

/// The scored reading at a position: event times 700 ms apart per offset
/// (500,000 offsets span four days), every 50th one two hours late, every
/// 20th anomalous with one anomaly, every 97th a late disposition.
pub fn sample_scored(partition: u32, offset: u64) -> ScoredReading {
    let mut timestamp = BASE_MS + offset as i64 * 700 + i64::from(partition) * 13;
    if offset % 50 == 49 {
        timestamp -= 2 * 3_600_000;
    }
    let reading = SensorReading {
        meter_id: format!("meter-{partition}-{:04}", offset % 1000),
        timestamp,
        voltage: 230.0 + (offset % 17) as f64 * 0.25,
        current: 5.0 + (offset % 5) as f64,
        temperature: 20.0 + (offset % 11) as f64,
        status: if offset.is_multiple_of(101) {
            MeterStatus::Degraded
        } else {
            MeterStatus::Ok
        },
    };
    let anomalous = offset % 20 == 7;
    let scores = ["voltage", "current", "temperature"]
        .iter()
        .enumerate()
        .map(|(i, field)| FieldScore {
            field: (*field).into(),
            value: reading.voltage,
            window_count: (offset % 300) as i32,
            window_mean: (offset % 300 >= 10).then_some(230.0 + i as f64),
            window_stddev: (offset % 300 >= 10).then_some(2.0),
            zscore: (offset % 300 >= 10).then_some(if anomalous && i == 0 { 4.2 } else { 0.3 }),
            anomalous: anomalous && i == 0,
        })
        .collect();
    let anomalies = if anomalous {
        vec![AnomalyEvent {
            anomaly_id: format!("a-{partition}-{offset}"),
            anomaly_type: AnomalyType::VoltageSurge,
            severity: Severity::Warning,
            detected_at: timestamp + 2,
            original_event: reading.clone(),
            field: Some("voltage".into()),
            zscore: Some(4.2),
            window_mean: Some(230.0),
            window_stddev: Some(2.0),
            window_count: Some(299),
            threshold: Some(3.0),
            window_ms: Some(300_000),
        }]
    } else {
        Vec::new()
    };
    ScoredReading {
        reading,
        source_offset: offset as i64 * 3 + i64::from(partition),
        disposition: if offset.is_multiple_of(97) {
            Disposition::Late
        } else {
            Disposition::Scored
        },
        scores,
        anomalies,
    }
}

fn framed<T: AvroRecord>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(256);
    framing::write_header(&mut out, CONTENT_ID, IdWidth::ContentId4);
    value.encode_into(&mut out).expect("sample encodes");
    Bytes::from(out)
}

/// The framed Avro `ScoredReading` record at a position of `topic`.
pub fn scored_record(topic: &str, partition: u32, offset: u64) -> SinkRecord {
    let scored = sample_scored(partition, offset);
    SinkRecord {
        topic: topic.to_owned(),
        partition,
        offset,
        timestamp_ms: scored.reading.timestamp + 5,
        key: Some(Bytes::from(scored.reading.meter_id.clone())),
        value: framed(&scored),
    }
}

/// The framed Avro `AnomalyEvent` record at a position of `topic`.
pub fn anomaly_record(topic: &str, partition: u32, offset: u64) -> SinkRecord {
    gridwatch_connector::testkit::anomaly_record(topic, partition, offset, CONTENT_ID)
}
