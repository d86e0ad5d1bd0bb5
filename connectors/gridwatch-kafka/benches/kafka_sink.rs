//! Throughput of the Kafka bridge into a real Tansu (sqlite storage) on
//! loopback, in events/s: batches of 1000 framed Avro anomalies through the
//! same `deliver` loop the runtime uses, each write awaiting every delivery
//! report. The baseline in the same run is the bridge with `acks=1`, no
//! idempotence and no compression, so the report shows what the
//! exactly-once settings cost as a ratio.
//!
//! Without a tansu binary (scripts/setup.d/20-tansu.sh) it prints SKIPPED.
//! Run: `cargo bench -p gridwatch-kafka --bench kafka_sink`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_connector::testkit::anomaly_record;
use gridwatch_connector::{RetryPolicy, SinkRecord, deliver};
use gridwatch_kafka::config::{Acks, Compression};
use gridwatch_kafka::{KafkaSink, KafkaSinkConfig};

const BATCH: u64 = 1000;

struct Broker {
    child: Child,
    _dir: tempfile::TempDir,
    bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GRIDWATCH_TANSU") {
        return Some(path.into());
    }
    let cached = PathBuf::from(std::env::var_os("HOME")?).join(".cache/gridwatch/tools/bin/tansu");
    cached.exists().then_some(cached)
}

fn start_broker(binary: &PathBuf) -> Broker {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listener = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(binary)
        .current_dir(dir.path())
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    let bootstrap = format!("127.0.0.1:{port}");
    let started = Instant::now();
    while TcpStream::connect(&bootstrap).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "tansu did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let python = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/gridwatch/venv/bin/python");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/kafka_client.py");
    let status = Command::new(python)
        .arg(script)
        .args([
            "create-topic",
            "--bootstrap",
            &bootstrap,
            "--topic",
            "anomalies",
            "--partitions",
            "3",
        ])
        .status()
        .expect("python runs");
    assert!(status.success(), "cannot create the topic");
    Broker {
        child,
        _dir: dir,
        bootstrap,
    }
}

fn bench(c: &mut Criterion) {
    let Some(binary) = tansu() else {
        println!(
            "SKIPPED kafka_sink bench: no tansu binary (scripts/setup.d/20-tansu.sh installs it)"
        );
        return;
    };
    let broker = start_broker(&binary);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let records: Vec<SinkRecord> = (0..BATCH)
        .map(|o| anomaly_record("anomalies", 0, o, 1))
        .collect();
    let policy = RetryPolicy::default();

    let mut group = c.benchmark_group("kafka_sink");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let variants: [(&str, Acks, Compression); 2] = [
        ("baseline_acks1_plain", Acks::Leader, Compression::None),
        ("exactly_once_default", Acks::All, Compression::Lz4),
    ];
    for (partition, (name, acks, compression)) in (0u32..).zip(variants) {
        let mut config = KafkaSinkConfig::new([broker.bootstrap.as_str()]);
        config.acks = acks;
        config.compression = compression;
        let mut sink = runtime
            .block_on(KafkaSink::connect(&config))
            .expect("the bridge connects");
        // Fresh positions every iteration, as a live stream has.
        let next = AtomicU64::new(0);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let base = next.fetch_add(BATCH, Ordering::Relaxed);
                    let batch: Vec<SinkRecord> = records
                        .iter()
                        .map(|r| SinkRecord {
                            offset: base + r.offset,
                            partition,
                            ..r.clone()
                        })
                        .collect();
                    let started = Instant::now();
                    let out = runtime.block_on(deliver(&mut sink, &batch, &policy));
                    spent += started.elapsed();
                    assert_eq!(out.written, batch.len());
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
