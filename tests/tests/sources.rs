//! The MQTT and Kafka sources of `gridwatch run`, end to end against their
//! real peers: Mosquitto (published to with `mosquitto_pub`) and Tansu
//! (produced to with confluent-kafka). Readings must come out scored, with
//! the injected surges as anomalies; garbage must land in `dead-letter` with
//! its reason and origin; MQTT messages published while Gridwatch is down
//! must arrive after it restarts (persistent session, QoS 1); Kafka offsets
//! must be committed once the readings are in.

mod edge;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge::servers::{Mosquitto, Tansu};
use edge::*;
use gridwatch_contracts::SensorReading;
use gridwatch_tests::process::{Gridwatch, consume};

fn anomaly_times(anomalies: &[serde_json::Value], prefix: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for a in anomalies {
        let e = &a["original_event"];
        if let Some(m) = e["meter_id"].as_str().filter(|m| m.starts_with(prefix)) {
            out.entry(m.to_owned())
                .or_default()
                .push(e["timestamp"].as_i64().unwrap_or(0));
        }
    }
    out
}

fn check_scored_once(scored: &[serde_json::Value], want: &[SensorReading]) {
    let got = scored_readings(scored);
    let mut copies: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for r in scored {
        let r = &r["reading"];
        *copies
            .entry((
                r["meter_id"].as_str().unwrap_or("").to_owned(),
                r["timestamp"].as_i64().unwrap_or(0),
            ))
            .or_default() += 1;
    }
    for r in want {
        let key = (r.meter_id.clone(), r.timestamp);
        assert_eq!(
            got.get(&key),
            Some(&r.voltage),
            "{} @ {} scored with its value",
            r.meter_id,
            r.timestamp
        );
        assert_eq!(copies[&key], 1, "{key:?} scored once");
    }
}

#[test]
fn mqtt_readings_are_scored_garbage_is_dead_lettered_and_the_session_survives_a_restart() {
    let broker = match Mosquitto::start() {
        Ok(b) => b,
        Err(why) => {
            println!("SKIPPED mqtt source test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let url = broker.url();
    let client_id = format!("gridwatch-e2e-{}", broker.port);
    let env = [
        ("GRIDWATCH_SOURCES__MQTT__URL", url.as_str()),
        ("GRIDWATCH_SOURCES__MQTT__TOPICS", "[\"meters/+/readings\"]"),
        ("GRIDWATCH_SOURCES__MQTT__QOS", "1"),
        ("GRIDWATCH_SOURCES__MQTT__CLIENT_ID", client_id.as_str()),
    ];
    let gw = Gridwatch::start(&data, &["--no-simulator"], &env);
    broker.wait_subscribed("meters/+/readings");

    // Phase 1: three meters, JSON lines, one message each; one meter's
    // first reading as framed Avro; and a garbage payload.
    let all = readings("mqtt", 3, 90);
    let (first, second): (Vec<_>, Vec<_>) = all
        .iter()
        .cloned()
        .partition(|r| r.timestamp < START_MS + 60_000);
    let content_id = register_schema(
        &gw,
        "producers",
        "meter-reading",
        gridwatch_contracts::schema::SENSOR_READING,
    );
    let avro_one = &first[0];
    let datum = apache_avro::to_avro_datum(&reading_schema(), avro_value(avro_one)).expect("datum");
    broker.publish_bytes(
        &format!("meters/{}/readings", avro_one.meter_id),
        &framed(content_id, &datum),
    );
    for m in 0..3 {
        let meter = format!("mqtt-{m:03}");
        let mine: Vec<SensorReading> = first
            .iter()
            .filter(|r| r.meter_id == meter && r != &avro_one)
            .cloned()
            .collect();
        broker.publish_lines(&format!("meters/{meter}/readings"), &ndjson(&mine));
    }
    let garbage = b"this is not a reading \xff\xfe".to_vec();
    broker.publish_bytes("meters/broken-7/readings", &garbage);
    wait_status(&gw, "phase 1 scored", Duration::from_secs(120), |s| {
        count(s, "processed") >= first.len() as u64 && count(s, "dead_letters") >= 1
    });

    // Phase 2: Gridwatch is down while meters keep publishing; the broker
    // holds the messages for the persistent session.
    gw.stop();
    for m in 0..3 {
        let meter = format!("mqtt-{m:03}");
        let mine: Vec<SensorReading> = second
            .iter()
            .filter(|r| r.meter_id == meter)
            .cloned()
            .collect();
        broker.publish_lines(&format!("meters/{meter}/readings"), &ndjson(&mine));
    }
    let gw = Gridwatch::start(&data, &["--no-simulator"], &env);
    wait_status(
        &gw,
        "phase 2 scored after the restart",
        Duration::from_secs(120),
        |s| count(s, "processed") >= second.len() as u64,
    );
    gw.stop();

    check_scored_once(&consume(&data, "scored"), &all);
    let anomalies = anomaly_times(&consume(&data, "anomalies"), "mqtt-");
    for m in 0..3 {
        let times = &anomalies[&format!("mqtt-{m:03}")];
        assert!(
            times.contains(&(START_MS + 40_000)),
            "surge of mqtt-{m:03} detected: {times:?}"
        );
    }
    let dead = consume(&data, "dead-letter");
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["stage"], "ingest");
    assert_eq!(dead[0]["reason"], "UNPARSEABLE");
    assert_eq!(dead[0]["source_topic"], "mqtt:meters/broken-7/readings");
    assert_eq!(original(&dead[0]), garbage);
}

#[test]
fn kafka_readings_are_scored_garbage_is_dead_lettered_and_offsets_committed() {
    let tansu = match Tansu::start() {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED kafka source test: {why}");
            return;
        }
    };
    tansu.create_topic("meter-readings", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let brokers = format!("[\"{}\"]", tansu.bootstrap());
    let env = [
        ("GRIDWATCH_SOURCES__KAFKA__BROKERS", brokers.as_str()),
        ("GRIDWATCH_SOURCES__KAFKA__TOPICS", "[meter-readings]"),
        ("GRIDWATCH_SOURCES__KAFKA__GROUP_ID", "gridwatch-e2e"),
    ];
    let gw = Gridwatch::start(&data, &["--no-simulator"], &env);

    // Readings keyed by meter: every other one as framed Avro (written by
    // apache-avro under the contentId the registry gives a producer), the
    // rest JSON; then two malformed messages.
    let content_id = register_schema(
        &gw,
        "producers",
        "meter-reading",
        gridwatch_contracts::schema::SENSOR_READING,
    );
    let schema = reading_schema();
    let all = readings("kafka", 4, 60);
    let mut messages: Vec<(String, Vec<u8>)> = all
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let value = if i % 2 == 0 {
                framed(
                    content_id,
                    &apache_avro::to_avro_datum(&schema, avro_value(r)).expect("datum"),
                )
            } else {
                serde_json::to_vec(r).expect("json")
            };
            (r.meter_id.clone(), value)
        })
        .collect();
    let garbage = [
        b"\x00\x00\x00".to_vec(),
        b"{\"meter_id\": \"kafka-000\"}".to_vec(),
    ];
    for g in &garbage {
        messages.push(("kafka-bad".into(), g.clone()));
    }
    tansu.produce("meter-readings", &messages);
    wait_status(
        &gw,
        "every Kafka reading scored",
        Duration::from_secs(180),
        |s| count(s, "processed") >= all.len() as u64 && count(s, "dead_letters") >= 2,
    );

    // Offsets are committed after the batch is durable: eventually every
    // message is covered.
    let started = Instant::now();
    loop {
        let committed = tansu.committed("meter-readings", "gridwatch-e2e");
        let total: i64 = committed
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_i64())
                    .filter(|v| *v > 0)
                    .sum()
            })
            .unwrap_or(0);
        if total == messages.len() as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "committed {committed} never covered the {} messages",
            messages.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    gw.stop();

    check_scored_once(&consume(&data, "scored"), &all);
    let anomalies = anomaly_times(&consume(&data, "anomalies"), "kafka-");
    for m in 0..4 {
        let times = &anomalies[&format!("kafka-{m:03}")];
        assert!(
            times.contains(&(START_MS + 40_000)),
            "surge of kafka-{m:03} detected: {times:?}"
        );
    }
    let dead = consume(&data, "dead-letter");
    assert_eq!(dead.len(), 2, "{dead:#?}");
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or(""))
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["SCHEMA_MISMATCH", "UNPARSEABLE"]);
    for d in &dead {
        assert_eq!(d["stage"], "ingest", "{d}");
        assert!(
            d["source_topic"]
                .as_str()
                .unwrap_or("")
                .starts_with("kafka:meter-readings/"),
            "{d}"
        );
        assert!(garbage.contains(&original(d)), "{d}");
    }
}
