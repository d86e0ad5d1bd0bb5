//! MQTT source throughput (messages/s) against a real Mosquitto, with
//! `mosquitto_sub` draining the same queue as the baseline in the same run.
//!
//! Each iteration: `mosquitto_pub -l` (the load generator) queues N QoS 1
//! messages for offline persistent sessions, then the measured client
//! connects and drains its queue into a counting `IngestTarget` (acking each
//! batch after ingest) or, for the baseline, to /dev/null.
//!
//! `cargo bench -p gridwatch-mqtt --bench throughput`

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Broker;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_connector::source::IngestOutcome;
use gridwatch_connector::{IngestTarget, Payload, SourceError};
use gridwatch_mqtt::{MqttConfig, MqttSource, MqttStats, Protocol};
use tokio::sync::watch;

const N: u64 = 20_000;
const TOPIC: &str = "meters/bench/readings";

#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl IngestTarget for Counter {
    async fn ingest(&self, payloads: Vec<Payload>) -> Result<IngestOutcome, SourceError> {
        self.0.fetch_add(payloads.len() as u64, Ordering::Relaxed);
        Ok(IngestOutcome {
            accepted: payloads.len() as u64,
            ..IngestOutcome::default()
        })
    }
}

fn config(broker: &Broker, protocol: Protocol) -> MqttConfig {
    MqttConfig {
        url: broker.url(),
        topics: vec!["meters/+/readings".into()],
        client_id: format!("bench-{protocol:?}"),
        protocol,
        ..MqttConfig::default()
    }
}

/// Runs the source until it has ingested `n`; returns the elapsed time.
async fn drain(config: MqttConfig, n: u64) -> Duration {
    let target = Arc::new(Counter::default());
    let source = MqttSource::new(config).unwrap();
    let stats = source.stats();
    let (stop, rx) = watch::channel(false);
    let start = Instant::now();
    let task = tokio::spawn(source.run(Arc::clone(&target), rx));
    while target.0.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = start.elapsed();
    // Let the last acks go out before the next round.
    while MqttStats::get(&stats.acked) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    elapsed
}

fn publish(broker: &Broker, n: u64) -> Duration {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"meter_id":"m-{}","timestamp":{},"voltage":230.5,"current":4.25,"temperature":21.0}}"#,
                i % 1000,
                1_767_225_600_000 + i
            )
        })
        .collect();
    let start = Instant::now();
    broker.publish_lines(TOPIC, 1, &lines, &[]);
    start.elapsed()
}

fn mosquitto_sub(broker: &Broker, count: Option<u64>) -> Duration {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args([
            "-c",
            "-i",
            "bench-sub",
            "-q",
            "1",
            "-t",
            "meters/+/readings",
        ])
        .stdout(Stdio::null());
    match count {
        Some(n) => cmd.args(["-C", &n.to_string()]),
        // Only creates the session: exits after a second without messages.
        None => cmd.args(["-W", "1"]),
    };
    let start = Instant::now();
    let _ = cmd.status().expect("mosquitto_sub");
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    if !common::mosquitto_available() {
        return;
    }
    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Create the persistent sessions, so queued messages wait for them.
    for protocol in [Protocol::V311, Protocol::V5] {
        rt.block_on(drain(config(&broker, protocol), 0));
    }
    mosquitto_sub(&broker, None);

    let mut g = c.benchmark_group("mqtt_drain");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("load_generator_mosquitto_pub", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += publish(&broker, N);
                // Drain everything, untimed.
                mosquitto_sub(&broker, Some(N));
                rt.block_on(drain(config(&broker, Protocol::V311), N));
                rt.block_on(drain(config(&broker, Protocol::V5), N));
            }
            total
        })
    });
    g.bench_function("baseline_mosquitto_sub", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                publish(&broker, N);
                rt.block_on(drain(config(&broker, Protocol::V311), N));
                rt.block_on(drain(config(&broker, Protocol::V5), N));
                total += mosquitto_sub(&broker, Some(N));
            }
            total
        })
    });
    for (name, protocol) in [
        ("gridwatch_mqtt311", Protocol::V311),
        ("gridwatch_mqtt5", Protocol::V5),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    publish(&broker, N);
                    mosquitto_sub(&broker, Some(N));
                    let other = if protocol == Protocol::V311 {
                        Protocol::V5
                    } else {
                        Protocol::V311
                    };
                    rt.block_on(drain(config(&broker, other), N));
                    total += rt.block_on(drain(config(&broker, protocol), N));
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
