//! The sink against a real InfluxDB 1.x (`influxd` from Debian's
//! `influxdb`), read back with InfluxQL over HTTP.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{Influxd, InfluxdOptions};
use gridwatch_connector::testkit::{Compliance, anomaly_record, sample_anomaly};
use gridwatch_connector::{Delivered, RetryPolicy, Sink, SinkError, SinkRecord, deliver};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{AnomalyEvent, AnomalyType, MeterStatus, Severity};
use gridwatch_influxdb::{InfluxDbConfig, InfluxDbSink, Secret};
use serde_json::{Value, json};

const DB: &str = "grid";

fn record(partition: u32, offset: u64, event: &AnomalyEvent) -> SinkRecord {
    let mut value = Vec::new();
    framing::write_header(&mut value, 1, IdWidth::ContentId4);
    event.encode_into(&mut value).unwrap();
    SinkRecord {
        topic: "anomalies".into(),
        partition,
        offset,
        timestamp_ms: event.detected_at,
        key: None,
        value: Bytes::from(value),
    }
}

fn records(partition: u32, offsets: std::ops::Range<u64>) -> Vec<SinkRecord> {
    offsets
        .map(|o| anomaly_record("anomalies", partition, o, 1))
        .collect()
}

/// Short waits, so the retry tests do not take seconds per batch.
fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retries: 3,
        multiplier: 2.0,
    }
}

async fn v1_server() -> Option<(Influxd, InfluxDbConfig)> {
    let server = Influxd::start(InfluxdOptions::default()).await?;
    server.create_database(DB).await;
    let config = InfluxDbConfig::v1(server.base(), DB);
    Some((server, config))
}

/// The source offsets in the database, one per point.
async fn offsets(server: &Influxd, partition: u32) -> Vec<u64> {
    server
        .select(
            DB,
            &format!("SELECT source_offset FROM anomalies WHERE source_partition = {partition}"),
        )
        .await
        .iter()
        .map(|row| row["source_offset"].as_u64().expect("an integer offset"))
        .collect()
}

fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
        }
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_carry_tags_fields_and_event_time() {
    let Some((server, config)) = v1_server().await else {
        return;
    };
    let mut sink = InfluxDbSink::new(&config).unwrap();

    let scored = sample_anomaly(0, 7);
    let mut failure = sample_anomaly(0, 8);
    failure.anomaly_type = AnomalyType::EquipmentFailure;
    failure.severity = Severity::Critical;
    failure.original_event.status = MeterStatus::Failure;
    failure.original_event.meter_id = "feeder 7, bay=2".into();
    failure.field = None;
    failure.zscore = None;
    failure.window_mean = None;
    failure.window_stddev = None;
    failure.window_count = None;
    failure.threshold = None;
    let batch = vec![record(0, 7, &scored), record(0, 8, &failure)];
    let out = deliver(&mut sink, &batch, &RetryPolicy::default()).await;
    assert_eq!(
        out,
        Delivered {
            written: 2,
            ..Delivered::default()
        }
    );

    let rows = server
        .select(DB, "SELECT * FROM anomalies ORDER BY time")
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let want_scored = json!({
        "time": scored.original_event.timestamp,
        "anomaly_type": "VOLTAGE_SURGE",
        "meter_id": "meter-0-0007",
        "severity": "WARNING",
        "zscore": 3.0,
        "voltage": 257.0,
        "current": 5.0,
        "temperature": 20.0,
        "window_mean": 230.0,
        "window_stddev": 4.0,
        "threshold": 2.5,
        "window_count": 300,
        "anomaly_id": scored.anomaly_id,
        "source_offset": 7,
        "source_partition": 0,
    });
    // InfluxDB's JSON writes 257.0 as 257; compare numbers as numbers.
    assert_eq!(
        numbers_as_f64(Value::Object(rows[0].clone())),
        numbers_as_f64(want_scored)
    );
    let f = &rows[1];
    assert_eq!(f["time"], json!(failure.original_event.timestamp));
    assert_eq!(
        f["meter_id"],
        json!("feeder 7, bay=2"),
        "tag escaping round-trips"
    );
    assert_eq!(f["anomaly_type"], json!("EQUIPMENT_FAILURE"));
    assert_eq!(f["severity"], json!("CRITICAL"));
    assert_eq!(f["zscore"], Value::Null, "no evidence, no field");
    assert_eq!(f["window_count"], Value::Null);
    assert_eq!(f["anomaly_id"], json!(failure.anomaly_id));

    // Tags are tags (InfluxQL can group by them), fields are fields.
    let tags = server.query(Some(DB), "SHOW TAG KEYS FROM anomalies").await;
    let tags: Vec<&str> = tags["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["anomaly_type", "meter_id", "severity"]);
    let fields = server
        .query(Some(DB), "SHOW FIELD KEYS FROM anomalies")
        .await;
    let fields: BTreeMap<&str, &str> = fields["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v[0].as_str().unwrap(), v[1].as_str().unwrap()))
        .collect();
    assert_eq!(fields["source_offset"], "integer");
    assert_eq!(fields["anomaly_id"], "string");
    assert_eq!(fields["zscore"], "float");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_sink_compliance_harness() {
    let Some((server, config)) = v1_server().await else {
        return;
    };
    let server = std::sync::Arc::new(server);
    let report = Compliance::new("anomalies", 1)
        .run(
            || {
                let config = config.clone();
                async move { InfluxDbSink::new(&config).unwrap() }
            },
            |_topic, partition| {
                let server = std::sync::Arc::clone(&server);
                async move { offsets(&server, partition).await }
            },
        )
        .await
        .unwrap();
    assert_eq!(report.checked_positions, 175);
    assert_eq!(
        report.recovered_after_crash, None,
        "idempotent, not recovering"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_overwrites_and_small_requests_and_plain_bodies_work() {
    let Some((server, mut config)) = v1_server().await else {
        return;
    };
    config.batch_size = 7;
    config.gzip = false;
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let batch = records(0, 0..50);
    for _ in 0..3 {
        let out = deliver(&mut sink, &batch, &RetryPolicy::default()).await;
        assert_eq!(out.written, 50);
    }
    let mut got = offsets(&server, 0).await;
    got.sort_unstable();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_lines_and_undecodable_records_alone_are_dead_lettered() {
    let Some((server, config)) = v1_server().await else {
        return;
    };
    // A point from another writer made `source_offset` a float in the shard
    // of 2026-05-04's week: our integer field conflicts there, and only there.
    let week_b: i64 = 1_777_852_800_000; // 2026-05-04T00:00:00Z
    let mut url = server.base().join("write").unwrap();
    url.query_pairs_mut()
        .append_pair("db", DB)
        .append_pair("precision", "ms");
    let status = reqwest::Client::new()
        .post(url)
        .body(format!(
            "anomalies,anomaly_type=UNKNOWN,meter_id=other,severity=INFO source_offset=1.5 {week_b}\n"
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);

    let mut batch = records(0, 0..40);
    // 9 and 23: event time in the conflicting shard; 31: beyond the year
    // 2262, which InfluxDB cannot store; 17: not Avro at all.
    for (o, ts) in [
        (9, week_b + 60_000),
        (23, week_b + 120_000),
        (31, 9_000_000_000_000_000),
    ] {
        let mut e = sample_anomaly(0, o);
        e.original_event.timestamp = ts;
        batch[o as usize] = record(0, o, &e);
    }
    batch[17].value = Bytes::from_static(b"{\"not\":\"avro\"}");

    let mut sink = InfluxDbSink::new(&config).unwrap();
    let out = deliver(&mut sink, &batch, &RetryPolicy::default()).await;
    assert_eq!(out.retries, 0);
    assert_eq!(out.written, 36);
    let dead: BTreeMap<i64, &str> = out
        .dead_letters
        .iter()
        .map(|d| (d.source_offset.unwrap(), d.message.as_str()))
        .collect();
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), [9, 17, 23, 31]);
    assert!(dead[&9].contains("field type conflict"), "{}", dead[&9]);
    assert!(dead[&31].starts_with("HTTP 400"), "{}", dead[&31]);
    assert!(
        dead[&17].contains("not a framed Avro record"),
        "{}",
        dead[&17]
    );
    assert!(
        out.dead_letters
            .iter()
            .all(|d| d.reason == reason::PERMANENT_SINK_ERROR
                && d.attempts == 1
                && d.stage == "influxdb")
    );
    assert_eq!(out.dead_letters[1].original, batch[17].value.to_vec());

    let mut got = offsets(&server, 0).await;
    got.sort_unstable();
    let want: Vec<u64> = (0..40).filter(|o| ![9, 17, 23, 31].contains(o)).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_permanent_and_goes_to_the_dlq_at_once() {
    let Some((_server, mut config)) = v1_server().await else {
        return;
    };
    config.database = Some("no_such_db".into());
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let out = deliver(&mut sink, &records(0, 0..5), &RetryPolicy::default()).await;
    assert_eq!(out.written, 0);
    assert_eq!(out.retries, 0, "a 404 is not retried");
    assert_eq!(out.dead_letters.len(), 5);
    for d in &out.dead_letters {
        assert_eq!(d.reason, reason::PERMANENT_SINK_ERROR);
        assert_eq!(d.attempts, 1);
        assert!(d.message.starts_with("HTTP 404"), "{}", d.message);
        assert!(d.message.contains("database not found"), "{}", d.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_works_and_wrong_credentials_are_permanent() {
    let Some(mut server) = Influxd::start(InfluxdOptions {
        auth: true,
        ..InfluxdOptions::default()
    })
    .await
    else {
        return;
    };
    // With auth on and no user yet, 1.x lets the first admin be created.
    server
        .query(
            None,
            "CREATE USER admin WITH PASSWORD 'right' WITH ALL PRIVILEGES",
        )
        .await;
    server.admin = Some(("admin".into(), "right".into()));
    server.create_database(DB).await;

    let mut config = InfluxDbConfig::v1(server.base(), DB);
    config.username = Some("admin".into());
    config.password = Some(Secret::new("right"));
    let mut sink = InfluxDbSink::new(&config).unwrap();
    assert!(
        !format!("{sink:?}").contains("right"),
        "no password in Debug"
    );
    let out = deliver(&mut sink, &records(0, 0..10), &RetryPolicy::default()).await;
    assert_eq!(out.written, 10, "{:?}", out.dead_letters.first());
    assert_eq!(offsets(&server, 0).await.len(), 10);

    config.password = Some(Secret::new("wrong"));
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let out = deliver(&mut sink, &records(0, 10..13), &RetryPolicy::default()).await;
    assert_eq!(
        (out.written, out.retries, out.dead_letters.len()),
        (0, 0, 3)
    );
    assert!(
        out.dead_letters[0].message.starts_with("HTTP 401"),
        "{}",
        out.dead_letters[0].message
    );
    assert!(!out.dead_letters[0].message.contains("wrong"));

    config.username = None;
    config.password = None;
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let e = sink.write(&records(0, 13..14)).await.unwrap_err();
    assert!(
        matches!(&e, SinkError::Permanent(m) if m.starts_with("HTTP 401")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retried_then_dead_lettered_and_a_replay_loses_nothing() {
    let Some((mut server, config)) = v1_server().await else {
        return;
    };
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let policy = quick_retry();
    let batches: Vec<Vec<SinkRecord>> = (0..10).map(|b| records(0, b * 20..(b + 1) * 20)).collect();
    let mut dlq = Vec::new();
    let mut retries = 0;

    for (i, batch) in batches.iter().enumerate() {
        if i == 4 {
            server.stop(); // mid-run: the process is killed
        }
        if i == 7 {
            server.restart().await;
        }
        let out = deliver(&mut sink, batch, &policy).await;
        retries += out.retries;
        if (4..7).contains(&i) {
            assert_eq!(out.written, 0);
            assert_eq!(out.retries, 3, "batch {i}: every retry spent");
            assert_eq!(out.dead_letters.len(), 20);
            for d in &out.dead_letters {
                assert_eq!(d.reason, reason::RETRIES_EXHAUSTED);
                assert_eq!(d.attempts, 4);
                assert_eq!(d.stage, "influxdb");
                assert!(
                    d.message.starts_with("gave up after 4 attempts"),
                    "{}",
                    d.message
                );
            }
        } else {
            assert_eq!(out.written, 20, "batch {i}: {:?}", out.dead_letters.first());
        }
        dlq.extend(out.dead_letters);
    }
    assert_eq!((dlq.len(), retries), (60, 9));

    // Meanwhile the points of the outage are missing...
    assert_eq!(offsets(&server, 0).await.len(), 140);
    // ...until the dead letters are replayed to the sink, as `gridwatch dlq
    // replay` does: same position, same bytes.
    let replay: Vec<SinkRecord> = dlq
        .iter()
        .map(|d| SinkRecord {
            topic: d.source_topic.clone().unwrap(),
            partition: d.source_partition.unwrap() as u32,
            offset: d.source_offset.unwrap() as u64,
            timestamp_ms: d.first_failed_at,
            key: None,
            value: Bytes::from(d.original.clone()),
        })
        .collect();
    let out = deliver(&mut sink, &replay, &policy).await;
    assert_eq!(out.written, 60);
    let mut got = offsets(&server, 0).await;
    got.sort_unstable();
    assert_eq!(
        got,
        (0..200).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_back_within_the_retry_budget_loses_nothing() {
    let Some((server, config)) = v1_server().await else {
        return;
    };
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let server = std::sync::Arc::new(tokio::sync::Mutex::new(server));
    server.lock().await.stop();
    let restarter = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.lock().await.restart().await;
        })
    };
    // Up to 100+200+400+800+1600+3200 ms of waiting: plenty for a restart.
    let policy = RetryPolicy {
        max_retries: 6,
        ..RetryPolicy::default()
    };
    let out = deliver(&mut sink, &records(0, 0..30), &policy).await;
    restarter.await.unwrap();
    assert!(out.retries >= 1, "the first attempt found the server down");
    assert!(
        out.dead_letters.is_empty(),
        "{:?}",
        out.dead_letters.first()
    );
    assert_eq!(out.written, 30);
    assert_eq!(offsets(&*server.lock().await, 0).await.len(), 30);
}
