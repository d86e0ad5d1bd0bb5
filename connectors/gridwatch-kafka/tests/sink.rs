//! The Kafka bridge against a real Tansu on loopback, checked with
//! confluent-kafka and fastavro (tests/python/kafka_client.py).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use common::{Tansu, create_topic, read_topic, source_offsets};
use gridwatch_connector::testkit::{Compliance, anomaly_record, sample_anomaly};
use gridwatch_connector::{RetryPolicy, Sink, SinkRecord, deliver};
use gridwatch_contracts::DeadLetter;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_kafka::{KafkaError, KafkaSink, KafkaSinkConfig};
use gridwatch_registry::{
    EmbeddedRegistry, RegistryClient, RegistryConfig, V3_BASE_PATH, register_contract_schemas,
    router,
};

fn sink_config(bootstrap: &str) -> KafkaSinkConfig {
    let mut config = KafkaSinkConfig::new([bootstrap]);
    config.delivery_timeout = Duration::from_secs(10);
    config
}

/// Blocking Python calls, off the test's runtime.
async fn offsets(bootstrap: &str, topic: &str, source_topic: String, partition: u32) -> Vec<u64> {
    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || source_offsets(&b, &t, &source_topic, partition))
        .await
        .expect("the reader thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_sink_compliance_harness() {
    let Some(tansu) = Tansu::start_or_skip("passes_the_sink_compliance_harness") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    create_topic(&bootstrap, "anomalies", 3);
    let config = sink_config(&bootstrap);
    let report = Compliance::new("anomalies", 7)
        .run(
            || {
                let config = config.clone();
                async move {
                    KafkaSink::connect(&config)
                        .await
                        .expect("the bridge connects")
                }
            },
            |topic, partition| {
                let bootstrap = bootstrap.clone();
                async move { offsets(&bootstrap, "anomalies", topic, partition).await }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\ntansu log:\n{}", tansu.log()));
    println!("compliance: {report:?}");
    assert_eq!(report.checked_positions, 175);
    // Offsets 100..120 were delivered (not checkpointed) before the crash:
    // the tail read-back finds them.
    assert_eq!(report.recovered_after_crash, Some(119));
}

/// Starts Gridwatch's embedded Apicurio-compatible registry and registers
/// the contracts; returns the v3 API root and the registered ids.
async fn registry() -> (String, gridwatch_registry::RegisteredIds, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
    let app = Router::new().nest(V3_BASE_PATH, router(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let root: url::Url = format!("http://{addr}").parse().unwrap();
    let client = RegistryClient::new(&RegistryConfig {
        url: Some(root),
        ..RegistryConfig::default()
    })
    .unwrap();
    let ids = register_contract_schemas(&client, "gridwatch")
        .await
        .unwrap();
    (format!("http://{addr}{V3_BASE_PATH}"), ids, dir)
}

fn dead_letter_record(offset: u64, content_id: u64) -> (SinkRecord, DeadLetter) {
    let letter = DeadLetter {
        reason: "schema_validation_failed".into(),
        message: format!("field voltage missing at {offset}"),
        stage: "validate".into(),
        source_topic: Some("readings".into()),
        source_partition: Some(0),
        source_offset: Some(offset as i64 + 1000),
        original: vec![b'{', offset as u8],
        first_failed_at: 1_772_406_000_000,
        attempts: 1,
    };
    let mut value = Vec::new();
    framing::write_header(&mut value, content_id, IdWidth::ContentId4);
    letter.encode_into(&mut value).unwrap();
    let record = SinkRecord {
        topic: "dead-letter".into(),
        partition: 0,
        offset,
        timestamp_ms: 1_772_406_000_000,
        key: Some(Bytes::from_static(b"meter-x")),
        value: Bytes::from(value),
    };
    (record, letter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_decode_with_the_registered_schema_keyed_by_meter_with_dead_letters_routed() {
    let Some(tansu) = Tansu::start_or_skip("bytes_decode_with_the_registered_schema") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    create_topic(&bootstrap, "anomalies", 2);
    create_topic(&bootstrap, "gridwatch-dlq", 1);
    let (registry_url, ids, _registry_dir) = registry().await;
    let anomaly_id = ids.content_id("io.gridwatch.AnomalyEvent").unwrap();
    let letter_id = ids.content_id("io.gridwatch.DeadLetter").unwrap();

    let mut config = sink_config(&bootstrap);
    config.dlq_topic = Some("gridwatch-dlq".into());
    let mut sink = KafkaSink::connect(&config).await.unwrap();
    assert!(sink.bridges("anomalies") && sink.bridges("dead-letter"));

    let anomalies: Vec<SinkRecord> = (0..40)
        .map(|o| anomaly_record("anomalies", 0, o, anomaly_id))
        .collect();
    let (letters, originals): (Vec<SinkRecord>, Vec<DeadLetter>) =
        (0..5).map(|o| dead_letter_record(o, letter_id)).unzip();
    let policy = RetryPolicy::default();
    for batch in [&anomalies[..25], &anomalies[25..], &letters[..]] {
        let out = deliver(&mut sink, batch, &policy).await;
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        assert_eq!(out.written, batch.len());
    }
    sink.flush().await.unwrap();

    let bs = bootstrap.clone();
    let url = registry_url.clone();
    let schema_dir = common::workspace_root().join("schemas/avro");
    let read = tokio::task::spawn_blocking(move || {
        let dir = schema_dir.display().to_string();
        let extra = ["--registry", url.as_str(), "--schema-dir", dir.as_str()];
        (
            read_topic(&bs, "anomalies", &extra),
            read_topic(&bs, "gridwatch-dlq", &extra[..2]),
        )
    });
    let (kafka_anomalies, kafka_letters) = read.await.unwrap();

    assert_eq!(
        kafka_anomalies.len(),
        40,
        "every anomaly once, no dead letter"
    );
    for m in &kafka_anomalies {
        let position = m["headers"]["gridwatch-source"].as_str().unwrap();
        let offset: u64 = position
            .strip_prefix("anomalies/0/")
            .unwrap()
            .parse()
            .unwrap();
        let expected = sample_anomaly(0, offset);
        assert_eq!(
            m["content_id"], anomaly_id,
            "the frame carries the registered content id"
        );
        assert_eq!(
            m["agree"], true,
            "registry schema and AnomalyEvent.avsc decode alike: {m}"
        );
        let decoded = &m["decoded"];
        assert_eq!(decoded["anomaly_id"], expected.anomaly_id.as_str());
        assert_eq!(decoded["detected_at"], expected.detected_at);
        assert_eq!(decoded["anomaly_type"], "VOLTAGE_SURGE");
        assert_eq!(
            decoded["original_event"]["meter_id"],
            expected.original_event.meter_id.as_str()
        );
        assert_eq!(
            decoded["original_event"]["voltage"],
            expected.original_event.voltage
        );
        assert_eq!(decoded["zscore"], expected.zscore.unwrap());
        // Key = meter_id, so a meter's anomalies share a partition.
        assert_eq!(m["key"], expected.original_event.meter_id.as_str());
        // The bytes are the pipeline's, unchanged.
        let sent = &anomalies[offset as usize].value;
        assert_eq!(common::unhex(m["value"].as_str().unwrap()), sent.to_vec());
    }
    let mut by_meter = std::collections::HashMap::new();
    for m in &kafka_anomalies {
        let partition = m["partition"].as_u64().unwrap();
        assert_eq!(
            *by_meter.entry(m["key"].to_string()).or_insert(partition),
            partition
        );
    }

    assert_eq!(kafka_letters.len(), 5);
    for m in &kafka_letters {
        let offset: u64 = m["headers"]["gridwatch-source"]
            .as_str()
            .unwrap()
            .strip_prefix("dead-letter/0/")
            .unwrap()
            .parse()
            .unwrap();
        let want = &originals[offset as usize];
        assert_eq!(m["content_id"], letter_id);
        assert_eq!(m["decoded"]["reason"], want.reason.as_str());
        assert_eq!(m["decoded"]["message"], want.message.as_str());
        assert_eq!(m["decoded"]["source_offset"], want.source_offset.unwrap());
        assert_eq!(m["decoded"]["original"], common::hex(&want.original));
    }

    // Without dlq_topic, dead letters are not bridged and the sink says so.
    let plain = KafkaSink::connect(&sink_config(&bootstrap)).await.unwrap();
    assert!(plain.bridges("anomalies"));
    assert!(!plain.bridges("dead-letter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_or_unreachable_broker_fails_connect_with_the_reason() {
    let Some(tansu) = Tansu::start_or_skip("a_missing_topic_fails_connect") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    let err = KafkaSink::connect(&sink_config(&bootstrap))
        .await
        .unwrap_err();
    assert!(matches!(err, KafkaError::UnknownTopic { .. }), "{err}");
    assert!(
        err.to_string().contains("\"anomalies\" does not exist"),
        "{err}"
    );
    assert!(!err.is_transient());

    let mut bad = sink_config(&bootstrap);
    bad.topic = "has space".into();
    let err = KafkaSink::connect(&bad).await.unwrap_err();
    assert!(err.to_string().contains("sinks.kafka.topic"), "{err}");

    drop(tansu);
    let mut config = sink_config(&bootstrap);
    config.delivery_timeout = Duration::from_secs(2);
    let err = KafkaSink::connect(&config).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_retries_then_dead_letters_and_loses_nothing_once_redelivered() {
    let Some(mut tansu) = Tansu::start_or_skip("broker_down_retries_then_dead_letters") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    create_topic(&bootstrap, "anomalies", 2);
    let mut config = sink_config(&bootstrap);
    config.delivery_timeout = Duration::from_secs(2);
    let policy = RetryPolicy {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        max_retries: 2,
        multiplier: 2.0,
    };
    let mut sink = KafkaSink::connect(&config).await.unwrap();
    let records: Vec<SinkRecord> = (0..90)
        .map(|o| anomaly_record("anomalies", 0, o, 1))
        .collect();

    // Up: the first batch goes through.
    let out = deliver(&mut sink, &records[..30], &policy).await;
    assert_eq!((out.written, out.retries), (30, 0));

    // Down: transient failures, retried, then every record dead-lettered
    // with its position and bytes.
    tansu.stop();
    let out = deliver(&mut sink, &records[30..60], &policy).await;
    assert_eq!(out.written, 0);
    assert_eq!(out.retries, 2, "retried under the policy before giving up");
    assert_eq!(out.dead_letters.len(), 30);
    for (letter, record) in out.dead_letters.iter().zip(&records[30..60]) {
        assert_eq!(
            letter.reason,
            gridwatch_contracts::model::reason::RETRIES_EXHAUSTED
        );
        assert_eq!(letter.stage, "kafka");
        assert_eq!(letter.source_offset, Some(record.offset as i64));
        assert_eq!(letter.original, record.value.to_vec());
        assert_eq!(letter.attempts, 3);
    }

    // Back up: the next batch goes through (the producer reconnects), and
    // the dead letters, replayed the way `gridwatch dlq replay` does, land
    // once each, even if some had reached the broker before it went down.
    // The driver keeps going after a restart; give the producer time to
    // reconnect (records that still exhausted their retries would be
    // dead-lettered and replayed the same way).
    tansu.restart();
    let policy = RetryPolicy {
        max_retries: 10,
        ..policy
    };
    let out = deliver(&mut sink, &records[60..90], &policy).await;
    assert!(
        out.dead_letters.is_empty(),
        "{:?}\ntansu log:\n{}",
        out.dead_letters.first().map(|d| &d.message),
        tansu.log()
    );
    let replay: Vec<SinkRecord> = out_of_dead_letters(&records[30..60]);
    let out = deliver(&mut sink, &replay, &policy).await;
    assert!(
        out.dead_letters.is_empty(),
        "{:?}\ntansu log:\n{}",
        out.dead_letters.first().map(|d| &d.message),
        tansu.log()
    );
    sink.flush().await.unwrap();

    let mut got = offsets(&bootstrap, "anomalies", "anomalies".into(), 0).await;
    got.sort_unstable();
    assert_eq!(
        got,
        (0..90).collect::<Vec<u64>>(),
        "every position exactly once"
    );
}

/// What `gridwatch dlq replay` hands back to the sink: the original bytes
/// at their original source positions.
fn out_of_dead_letters(records: &[SinkRecord]) -> Vec<SinkRecord> {
    records.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_mode_on_tansu_fails_cleanly() {
    let Some(tansu) = Tansu::start_or_skip("transactional_mode_on_tansu_fails_cleanly") else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    create_topic(&bootstrap, "anomalies", 1);
    let mut config = sink_config(&bootstrap);
    config.delivery_timeout = Duration::from_secs(5);
    config.transactional = true;
    // Tansu 0.6 cannot commit transactions: either initialising them fails
    // with an error that says what to do, or a write fails and nothing is
    // committed; never a silent success.
    match KafkaSink::connect(&config).await {
        Err(e) => {
            println!("transactional connect on Tansu: {e}");
            assert!(e.to_string().contains("transactional = false"), "{e}");
        }
        Ok(mut sink) => {
            let batch: Vec<SinkRecord> = (0..3)
                .map(|o| anomaly_record("anomalies", 0, o, 1))
                .collect();
            let result = sink.write(&batch).await;
            println!("transactional write on Tansu: {result:?}");
            assert!(result.is_err(), "Tansu 0.6 cannot commit a transaction");
            let committed = offsets(&bootstrap, "anomalies", "anomalies".into(), 0).await;
            assert!(committed.is_empty(), "nothing committed: {committed:?}");
        }
    }
}
