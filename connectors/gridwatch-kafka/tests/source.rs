//! The Kafka source against a real Tansu on loopback, fed by confluent-kafka
//! (tests/python/kafka_client.py): what arrives at ingest, and offsets
//! committed only after ingest returned.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Tansu, create_topic, hex, kafka_client};
use gridwatch_connector::source::IngestOutcome;
use gridwatch_connector::{IngestTarget, Payload, SourceError};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_kafka::{KafkaSource, KafkaSourceConfig};
use tokio::sync::{Notify, oneshot};

/// An ingest target that records what it is handed. It can refuse the
/// first calls with backpressure, or hang (an ingest that never returns).
#[derive(Default)]
struct Recorder {
    payloads: Mutex<Vec<Payload>>,
    calls: Mutex<u32>,
    refuse_first: u32,
    hang: bool,
    arrived: Notify,
}

impl IngestTarget for Recorder {
    async fn ingest(&self, payloads: Vec<Payload>) -> Result<IngestOutcome, SourceError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if call <= self.refuse_first {
            return Err(SourceError::Backpressure(format!(
                "call {call}: pipeline behind"
            )));
        }
        if self.hang {
            self.payloads.lock().unwrap().extend(payloads);
            self.arrived.notify_one();
            return std::future::pending().await;
        }
        let n = payloads.len() as u64;
        self.payloads.lock().unwrap().extend(payloads);
        self.arrived.notify_one();
        Ok(IngestOutcome {
            accepted: n,
            ..IngestOutcome::default()
        })
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.payloads.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(90), async {
            while self.count() < n {
                tokio::select! {
                    () = self.arrived.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "only {} of {n} payloads arrived in 90s",
            self.count()
        );
    }
}

fn reading(i: u32) -> SensorReading {
    SensorReading {
        meter_id: format!("meter-{i:03}"),
        timestamp: 1_772_406_000_000 + i64::from(i) * 1000,
        voltage: 230.0 + f64::from(i) / 8.0,
        current: 5.5,
        temperature: 21.25,
        status: MeterStatus::Ok,
    }
}

/// Half JSON, half Apicurio-framed Avro, as confluent-kafka produce lines.
fn messages(n: u32) -> (Vec<Vec<u8>>, String) {
    let mut values = Vec::new();
    let mut lines = String::new();
    for i in 0..n {
        let r = reading(i);
        let value = if i % 2 == 0 {
            serde_json::to_vec(&serde_json::json!({
                "meter_id": r.meter_id, "timestamp": r.timestamp, "voltage": r.voltage,
                "current": r.current, "temperature": r.temperature, "status": "OK",
            }))
            .unwrap()
        } else {
            let mut framed = Vec::new();
            framing::write_header(&mut framed, 3, IdWidth::ContentId4);
            r.encode_into(&mut framed).unwrap();
            framed
        };
        lines.push_str(
            &serde_json::json!({"key": r.meter_id, "value_hex": hex(&value)}).to_string(),
        );
        lines.push('\n');
        values.push(value);
    }
    (values, lines)
}

fn produce(bootstrap: &str, topic: &str, lines: &str) {
    kafka_client(
        &["produce", "--bootstrap", bootstrap, "--topic", topic],
        Some(lines),
    );
}

fn committed(bootstrap: &str, topic: &str, group: &str) -> serde_json::Value {
    serde_json::from_str(&kafka_client(
        &[
            "committed",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
        ],
        None,
    ))
    .unwrap()
}

fn config(bootstrap: &str, group: &str) -> KafkaSourceConfig {
    let mut config = KafkaSourceConfig::new([bootstrap], ["readings"]);
    config.group_id = group.into();
    config.batch_size = 16;
    config.retry.initial_backoff = Duration::from_millis(50);
    config.retry.max_backoff = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_framed_avro_arrive_at_ingest_and_are_committed_after_it() {
    let Some(tansu) = Tansu::start_or_skip("json_and_framed_avro_arrive_at_ingest") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    create_topic(&bootstrap, "readings", 2);
    let (values, lines) = messages(40);
    produce(&bootstrap, "readings", &lines);

    // The first two ingest calls report backpressure: the source backs off
    // and hands the same batch again.
    let target = Arc::new(Recorder {
        refuse_first: 2,
        ..Recorder::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let t = Arc::clone(&target);
    let source = KafkaSource::new(config(&bootstrap, "ingest-test"));
    let run = tokio::spawn(async move {
        source
            .run(&*t, async {
                let _ = stopped.await;
            })
            .await
    });
    target.wait_for(40).await;
    stop.send(()).unwrap();
    let stats = run
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", tansu.log()));
    println!("source stats: {stats:?}");
    assert_eq!(stats.messages, 40);
    assert_eq!(stats.accepted, 40);
    assert_eq!(stats.ingest_retries, 2);

    let got = target.payloads.lock().unwrap().clone();
    assert_eq!(got.len(), 40, "each message once");
    let got_bytes: BTreeSet<Vec<u8>> = got.iter().map(|p| p.bytes.to_vec()).collect();
    let want: BTreeSet<Vec<u8>> = values.iter().cloned().collect();
    assert_eq!(
        got_bytes, want,
        "the bytes as produced, JSON and framed Avro alike"
    );
    let framed = got.iter().find(|p| p.bytes[0] == 0).unwrap();
    let frame = framing::parse(&framed.bytes, IdWidth::ContentId4).unwrap();
    assert_eq!(frame.schema_id, 3);
    SensorReading::from_avro(frame.datum).unwrap();
    assert!(
        got.iter().all(|p| p.origin.starts_with("kafka:readings/")),
        "{:?}",
        got[0].origin
    );

    // Committed: the group's offsets cover all 40 messages.
    let bs = bootstrap.clone();
    let offsets = tokio::task::spawn_blocking(move || committed(&bs, "readings", "ingest-test"))
        .await
        .unwrap();
    let total: i64 = offsets
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, 40, "committed offsets {offsets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_killed_before_ingest_returns_gets_the_messages_again() {
    let Some(tansu) = Tansu::start_or_skip("a_source_killed_before_ingest_returns") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    create_topic(&bootstrap, "readings", 1);
    let (values, lines) = messages(10);
    produce(&bootstrap, "readings", &lines);

    // First run: ingest takes the batch but never returns; the source is
    // killed (its task aborted) while waiting.
    let hanging = Arc::new(Recorder {
        hang: true,
        ..Recorder::default()
    });
    let h = Arc::clone(&hanging);
    let source = KafkaSource::new(config(&bootstrap, "kill-test"));
    let run = tokio::spawn(async move { source.run(&*h, std::future::pending()).await });
    hanging.wait_for(1).await;
    run.abort();
    let _ = run.await;
    let first_run = hanging.count();
    assert!(first_run >= 1);
    let bs = bootstrap.clone();
    let offsets = tokio::task::spawn_blocking(move || committed(&bs, "readings", "kill-test"))
        .await
        .unwrap();
    assert!(
        offsets["0"].as_i64().unwrap() < 0,
        "nothing may be committed before ingest returned: {offsets}"
    );

    // Second run, same group: every message is delivered again.
    let target = Arc::new(Recorder::default());
    let t = Arc::clone(&target);
    let (stop, stopped) = oneshot::channel::<()>();
    let source = KafkaSource::new(config(&bootstrap, "kill-test"));
    let run = tokio::spawn(async move {
        source
            .run(&*t, async {
                let _ = stopped.await;
            })
            .await
    });
    target.wait_for(10).await;
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
    let got: Vec<Vec<u8>> = target
        .payloads
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.bytes.to_vec())
        .collect();
    assert_eq!(got, values, "all ten again, in order (one partition)");
    let bs = bootstrap.clone();
    let offsets = tokio::task::spawn_blocking(move || committed(&bs, "readings", "kill-test"))
        .await
        .unwrap();
    assert_eq!(offsets["0"], 10, "{offsets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_fails_the_source_with_the_reason() {
    let Some(tansu) = Tansu::start_or_skip("a_missing_topic_fails_the_source") else {
        return;
    };
    let target = Recorder::default();
    let err = KafkaSource::new(config(&tansu.bootstrap(), "missing"))
        .run(&target, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"readings\" does not exist"),
        "{err}"
    );
}
