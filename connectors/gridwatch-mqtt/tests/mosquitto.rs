//! End-to-end tests of the MQTT source against a real Mosquitto, with
//! `mosquitto_pub` publishing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Broker, Recorder, mosquitto_available, wait_for};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{IdWidth, write_header};
use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_mqtt::{MqttConfig, MqttError, MqttSource, MqttStats, Protocol, ReconnectConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Running {
    stats: Arc<MqttStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), MqttError>>,
}

impl Running {
    async fn stop(self) -> Result<(), MqttError> {
        let _ = self.stop.send(true);
        self.task.await.expect("source task")
    }
}

fn config(broker: &Broker, client_id: &str) -> MqttConfig {
    MqttConfig {
        url: broker.url(),
        topics: vec!["meters/+/readings".into()],
        client_id: client_id.into(),
        reconnect: ReconnectConfig {
            initial: std::time::Duration::from_millis(50),
            max: std::time::Duration::from_millis(500),
        },
        ..MqttConfig::default()
    }
}

async fn start(config: MqttConfig, target: Arc<Recorder>) -> Running {
    let source = MqttSource::new(config).expect("valid config");
    let stats = source.stats();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(source.run(target, rx));
    let s = Arc::clone(&stats);
    wait_for("the subscription", || MqttStats::get(&s.subscribed) >= 1).await;
    Running { stats, stop, task }
}

fn json_reading(meter: usize, i: usize) -> String {
    format!(
        r#"{{"meter_id":"m-{meter}","timestamp":{},"voltage":230.5,"current":4.25,"temperature":21.0}}"#,
        1_767_225_600_000_i64 + i as i64
    )
}

fn framed_avro(reading: &SensorReading) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out, 1, IdWidth::ContentId4);
    out.extend(reading.to_avro().expect("encodes"));
    out
}

/// Runs a blocking publisher off the async runtime.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f).await.expect("publisher")
}

async fn every_message_arrives(protocol: Protocol) {
    if !mosquitto_available() {
        return;
    }
    let broker = Arc::new(Broker::start());
    let target = Arc::new(Recorder::default());
    let mut cfg = config(&broker, "gw-all");
    cfg.protocol = protocol;
    let running = start(cfg, Arc::clone(&target)).await;

    let mut want: Vec<(String, Vec<u8>)> = Vec::new();
    for meter in 0..4 {
        let lines: Vec<String> = (0..100).map(|i| json_reading(meter, i)).collect();
        let topic = format!("meters/m-{meter}/readings");
        for l in &lines {
            want.push((format!("mqtt:{topic}"), l.clone().into_bytes()));
        }
        let b = Arc::clone(&broker);
        blocking(move || b.publish_lines(&topic, 1, &lines, &[])).await;
    }
    for i in 0..10 {
        let reading = SensorReading {
            meter_id: format!("avro-{i}"),
            timestamp: 1_767_225_600_000 + i,
            voltage: 231.0,
            current: 3.5,
            temperature: 19.5,
            status: if i % 3 == 0 {
                MeterStatus::Degraded
            } else {
                MeterStatus::Ok
            },
        };
        let bytes = framed_avro(&reading);
        want.push(("mqtt:meters/avro/readings".into(), bytes.clone()));
        let b = Arc::clone(&broker);
        blocking(move || b.publish_file("meters/avro/readings", &bytes, &[])).await;
    }
    // Not subscribed: must not arrive.
    let b = Arc::clone(&broker);
    blocking(move || b.publish_lines("other/topic", 1, &["nope".into()], &[])).await;

    let t = Arc::clone(&target);
    let n = want.len();
    wait_for("every message", || t.count() >= n).await;
    running.stop().await.expect("clean stop");

    let mut got: Vec<(String, Vec<u8>)> = target
        .payloads
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.origin.clone(), p.bytes.to_vec()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "no duplicates without a reconnect");
    assert_eq!(got, want);
    // The Avro payloads are byte-for-byte what was published, and decode.
    let avro: Vec<SensorReading> = got
        .iter()
        .filter(|(o, _)| o.contains("avro"))
        .map(|(_, b)| SensorReading::from_avro(&b[5..]).expect("decodes"))
        .collect();
    assert_eq!(avro.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_and_avro_message_arrives_mqtt311() {
    every_message_arrives(Protocol::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_and_avro_message_arrives_mqtt5() {
    every_message_arrives(Protocol::V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_passed_through_and_never_stops_the_source() {
    if !mosquitto_available() {
        return;
    }
    let broker = Arc::new(Broker::start());
    let target = Arc::new(Recorder::default());
    let running = start(config(&broker, "gw-garbage"), Arc::clone(&target)).await;

    let reading = SensorReading {
        meter_id: "m-1".into(),
        timestamp: 1_767_225_600_000,
        voltage: 230.0,
        current: 1.0,
        temperature: 20.0,
        status: MeterStatus::Ok,
    };
    let framed = framed_avro(&reading);
    // Deterministic pseudo-random bytes (xorshift), including NULs and
    // bytes that are never valid UTF-8.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let garbage: Vec<Vec<u8>> = vec![
        random,
        vec![0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1],
        framed[..framed.len() - 3].to_vec(),
        vec![0x00],
        b"{\"meter_id\": \"m-1\", \"timestamp\":".to_vec(),
        vec![0u8; 200_000],
    ];
    for g in &garbage {
        let b = Arc::clone(&broker);
        let g = g.clone();
        blocking(move || b.publish_file("meters/bad/readings", &g, &[])).await;
    }
    // An empty (zero-length) message.
    let b = Arc::clone(&broker);
    blocking(move || {
        let out = std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &b.port.to_string()])
            .args(["-q", "1", "-t", "meters/empty/readings", "-n"])
            .output()
            .expect("mosquitto_pub");
        assert!(out.status.success());
    })
    .await;
    let b = Arc::clone(&broker);
    blocking(move || b.publish_lines("meters/m-1/readings", 1, &[json_reading(1, 1)], &[])).await;

    let t = Arc::clone(&target);
    let n = garbage.len() + 2;
    wait_for("the garbage and the good reading", || t.count() >= n).await;
    assert!(!running.task.is_finished(), "the source is still running");
    assert_eq!(MqttStats::get(&running.stats.disconnects), 0);
    running.stop().await.expect("clean stop");

    let bodies: BTreeSet<Vec<u8>> = target.bodies().into_iter().collect();
    for g in &garbage {
        assert!(
            bodies.contains(g),
            "garbage of {} bytes passed through",
            g.len()
        );
    }
    assert!(
        bodies.contains(&Vec::new()),
        "the empty message passed through"
    );
    assert!(bodies.contains(json_reading(1, 1).as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    if !mosquitto_available() {
        return;
    }
    let mut broker = Broker::start();
    let target = Arc::new(Recorder::default());
    let running = start(config(&broker, "gw-restart"), Arc::clone(&target)).await;

    // Hold ingest so that a batch is in flight (received, not acked) when
    // the broker goes down, and the rest waits in the broker's queue.
    target.held.store(true, Ordering::SeqCst);
    let first: Vec<String> = (0..300).map(|i| json_reading(1, i)).collect();
    let port = broker.port;
    let lines = first.clone();
    tokio::task::spawn_blocking(move || publish_to(port, &lines))
        .await
        .unwrap();
    let t = Arc::clone(&target);
    wait_for("a batch in flight", || {
        t.attempts.load(Ordering::SeqCst) >= 1
    })
    .await;

    broker.stop();
    let s = Arc::clone(&running.stats);
    wait_for("the source to notice", || {
        MqttStats::get(&s.disconnects) >= 1
    })
    .await;
    // Ingest of the in-flight batch now completes, on a dead connection.
    target.held.store(false, Ordering::SeqCst);
    broker.start_again();
    wait_for("a reconnect", || MqttStats::get(&s.connects) >= 2).await;

    let second: Vec<String> = (300..600).map(|i| json_reading(1, i)).collect();
    let lines = second.clone();
    tokio::task::spawn_blocking(move || publish_to(port, &lines))
        .await
        .unwrap();

    let want: BTreeSet<Vec<u8>> = first
        .iter()
        .chain(&second)
        .map(|l| l.clone().into_bytes())
        .collect();
    let t = Arc::clone(&target);
    wait_for("all 600 distinct messages", || {
        t.bodies().into_iter().collect::<BTreeSet<_>>() == want
    })
    .await;
    let stats = Arc::clone(&running.stats);
    running.stop().await.expect("clean stop");
    eprintln!(
        "restart: received {} (redelivered {}), acks skipped on the dead connection {}, \
         payloads ingested {}",
        MqttStats::get(&stats.received),
        MqttStats::get(&stats.redelivered),
        MqttStats::get(&stats.ack_skipped),
        target.count()
    );
    assert!(
        MqttStats::get(&stats.ack_skipped) >= 1,
        "the batch in flight at the restart was not acked on the new connection"
    );
}

fn publish_to(port: u16, lines: &[String]) {
    let broker_port = port.to_string();
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker_port])
        .args(["-q", "1", "-t", "meters/m-1/readings", "-l"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_is_retried_and_nothing_is_acked_before_ingest_succeeds() {
    if !mosquitto_available() {
        return;
    }
    let broker = Arc::new(Broker::start());

    // 1. Refused three times, then accepted: every message arrives once.
    let target = Arc::new(Recorder::default());
    target.refuse.store(3, Ordering::SeqCst);
    let running = start(config(&broker, "gw-bp"), Arc::clone(&target)).await;
    let lines: Vec<String> = (0..20).map(|i| json_reading(2, i)).collect();
    let (b, l) = (Arc::clone(&broker), lines.clone());
    blocking(move || b.publish_lines("meters/m-2/readings", 1, &l, &[])).await;
    let t = Arc::clone(&target);
    wait_for("the retried batch", || t.count() >= 20).await;
    assert!(target.attempts.load(Ordering::SeqCst) >= 4);
    assert!(MqttStats::get(&running.stats.ingest_retries) >= 3);
    running.stop().await.expect("clean stop");

    // 2. Always refused: the source holds the messages but acks none.
    let refusing = Arc::new(Recorder::default());
    refusing.refuse_always.store(true, Ordering::SeqCst);
    let running = start(config(&broker, "gw-bp"), Arc::clone(&refusing)).await;
    let pending: Vec<String> = (100..110).map(|i| json_reading(3, i)).collect();
    let (b, l) = (Arc::clone(&broker), pending.clone());
    blocking(move || b.publish_lines("meters/m-3/readings", 1, &l, &[])).await;
    let s = Arc::clone(&running.stats);
    wait_for("all ten received", || MqttStats::get(&s.received) >= 10).await;
    let r = Arc::clone(&refusing);
    wait_for("a refused attempt", || {
        r.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(MqttStats::get(&running.stats.acked), 0);
    running.stop().await.expect("clean stop");
    assert_eq!(refusing.count(), 0);

    // 3. The next run of the same session gets all ten again: none was acked.
    let accepting = Arc::new(Recorder::default());
    let running = start(config(&broker, "gw-bp"), Arc::clone(&accepting)).await;
    let a = Arc::clone(&accepting);
    wait_for("the redelivery", || a.count() >= 10).await;
    running.stop().await.expect("clean stop");
    let got: BTreeSet<Vec<u8>> = accepting.bodies().into_iter().collect();
    let want: BTreeSet<Vec<u8>> = pending.iter().map(|l| l.clone().into_bytes()).collect();
    assert_eq!(got, want);

    // 4. And the run after that gets nothing old: they were acked after
    // ingest. A sentinel shows the session is live.
    let after = Arc::new(Recorder::default());
    let running = start(config(&broker, "gw-bp"), Arc::clone(&after)).await;
    let sentinel = json_reading(9, 9);
    let (b, l) = (Arc::clone(&broker), vec![sentinel.clone()]);
    blocking(move || b.publish_lines("meters/m-9/readings", 1, &l, &[])).await;
    let a = Arc::clone(&after);
    wait_for("the sentinel", || a.count() >= 1).await;
    running.stop().await.expect("clean stop");
    assert_eq!(after.bodies(), vec![sentinel.into_bytes()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_the_source_is_down_are_delivered_later() {
    if !mosquitto_available() {
        return;
    }
    let broker = Arc::new(Broker::start());
    let first = Arc::new(Recorder::default());
    let running = start(config(&broker, "gw-offline"), Arc::clone(&first)).await;
    running.stop().await.expect("clean stop");

    let lines: Vec<String> = (0..50).map(|i| json_reading(4, i)).collect();
    let (b, l) = (Arc::clone(&broker), lines.clone());
    blocking(move || b.publish_lines("meters/m-4/readings", 1, &l, &[])).await;

    let second = Arc::new(Recorder::default());
    let running = start(config(&broker, "gw-offline"), Arc::clone(&second)).await;
    let s = Arc::clone(&second);
    wait_for("the queued messages", || s.count() >= 50).await;
    running.stop().await.expect("clean stop");
    let mut per_meter: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for b in second.bodies() {
        *per_meter.entry(b).or_default() += 1;
    }
    assert_eq!(per_meter.len(), 50);
}
