//! Avro over HTTP against the real binary: `POST /api/v1/readings` with one
//! Apicurio-framed datum (our own schema, and a producer's evolved schema
//! registered in the embedded registry), and with Avro object container
//! files, all written by `apache-avro` rather than Gridwatch's codec.
//! Malformed Avro of every kind is answered 200 with `rejected`, and lands
//! in `dead-letter` with stage `ingest` and its reason, never a 500.

mod edge;

use std::time::Duration;

use apache_avro::types::Value;
use edge::*;
use gridwatch_tests::process::{Gridwatch, consume};

const FRAMED: &str = "application/vnd.apache.avro+binary";
const FILE: &str = "application/vnd.apache.avro.file";

/// A producer's v2 of the reading: fields reordered, one added.
const PRODUCER_V2: &str = r#"{
  "type": "record", "name": "SensorReading", "namespace": "com.example.headend",
  "fields": [
    {"name": "firmware", "type": "string", "default": ""},
    {"name": "voltage", "type": "double"},
    {"name": "meter_id", "type": "string"},
    {"name": "current", "type": "double"},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "temperature", "type": "double"},
    {"name": "status", "type": {"type": "enum", "name": "MeterStatus", "symbols": ["OK", "DEGRADED", "FAILURE"]}, "default": "OK"}
  ]
}"#;

#[test]
fn framed_datums_and_container_files_are_ingested_and_bad_avro_is_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let gw = Gridwatch::start(&data, &["--no-simulator"], &[]);

    // 1. One framed datum per request, under the contentId a producer gets
    // for SensorReading as Gridwatch publishes it.
    let own_id = register_schema(
        &gw,
        "producers",
        "meter-reading",
        gridwatch_contracts::schema::SENSOR_READING,
    );
    let schema = reading_schema();
    let framed_set = readings("framed", 2, 60);
    for r in &framed_set {
        let datum = apache_avro::to_avro_datum(&schema, avro_value(r)).expect("datum");
        let (status, answer) = post(&gw, FRAMED, framed(own_id, &datum));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 1, "{answer}");
    }

    // 2. A producer's evolved writer schema, resolved through the registry.
    let v2_id = register_schema(&gw, "producers", "meter-reading-v2", PRODUCER_V2);
    assert_ne!(v2_id, own_id);
    let v2 = apache_avro::Schema::parse_str(PRODUCER_V2).expect("v2 parses");
    let evolved_set = readings("evolved", 1, 60);
    for r in &evolved_set {
        let value = Value::Record(vec![
            ("firmware".into(), Value::String("4.2.1".into())),
            ("voltage".into(), Value::Double(r.voltage)),
            ("meter_id".into(), Value::String(r.meter_id.clone())),
            ("current".into(), Value::Double(r.current)),
            ("timestamp".into(), Value::TimestampMillis(r.timestamp)),
            ("temperature".into(), Value::Double(r.temperature)),
            ("status".into(), status(r.status)),
        ]);
        let datum = apache_avro::to_avro_datum(&v2, value).expect("v2 datum");
        // `avro/binary` is the other accepted name for a framed datum.
        let (status, answer) = post(&gw, "avro/binary", framed(v2_id, &datum));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 1, "{answer}");
    }

    // 3. A container file in one request, event time as written.
    let file_set = readings("container", 5, 60);
    let file = container(&file_set);
    assert!(file.starts_with(b"Obj\x01"));
    let (status, answer) = post(&gw, FILE, file.clone());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], file_set.len() as u64, "{answer}");
    assert_eq!(answer["rejected"], 0, "{answer}");
    // Sent again: every reading is recognised as a duplicate.
    let (_, again) = post(&gw, "application/octet-stream", file.clone());
    assert_eq!(again["duplicates"], file_set.len() as u64, "{again}");

    // 4. Malformed Avro, each answered 200 with one rejection, not a 500.
    let truncated_datum = {
        let datum = apache_avro::to_avro_datum(&schema, avro_value(&framed_set[0])).unwrap();
        framed(own_id, &datum[..datum.len() / 2])
    };
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (FRAMED, truncated_datum, "SCHEMA_MISMATCH"),
        (FRAMED, framed(987_654, b"\x02ab"), "UNKNOWN_SCHEMA"),
        (FRAMED, b"\x00\x01".to_vec(), "UNPARSEABLE"),
        (FRAMED, b"not avro at all".to_vec(), "UNPARSEABLE"),
        (
            FILE,
            b"Obj\x01 this is no container".to_vec(),
            "UNPARSEABLE",
        ),
        (FILE, file[..file.len() * 2 / 3].to_vec(), "UNPARSEABLE"),
        (FILE, Vec::new(), "UNPARSEABLE"),
    ];
    let mut kept_from_truncated_file = 0;
    for (content_type, body, _) in &bad {
        let (status, answer) = post(&gw, content_type, body.clone());
        assert_eq!(status, 200, "{content_type} {answer}");
        assert_eq!(answer["rejected"], 1, "{content_type} {answer}");
        // Readings before the break in a truncated file are kept (and
        // here are duplicates of the whole file sent before).
        kept_from_truncated_file += answer["duplicates"].as_u64().unwrap_or(0);
    }
    assert!(kept_from_truncated_file > 0);
    let (status, _) = post(&gw, "text/plain", b"x".to_vec());
    assert_eq!(status, 415);

    // 5. Everything valid is scored, then read back from the topics.
    let expected = framed_set.len() + evolved_set.len() + file_set.len();
    wait_status(&gw, "every reading scored", Duration::from_secs(120), |s| {
        count(s, "processed") >= expected as u64
    });
    gw.stop();

    let scored = scored_readings(&consume(&data, "scored"));
    assert_eq!(scored.len(), expected, "each reading scored once");
    for r in framed_set.iter().chain(&evolved_set).chain(&file_set) {
        let v = scored
            .get(&(r.meter_id.clone(), r.timestamp))
            .unwrap_or_else(|| panic!("{} @ {} not scored", r.meter_id, r.timestamp));
        assert_eq!(*v, r.voltage, "value exact through Avro");
    }
    let anomalies = consume(&data, "anomalies");
    for prefix in ["framed", "evolved", "container"] {
        assert!(
            anomalies.iter().any(|a| a["original_event"]["meter_id"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
                && a["original_event"]["timestamp"] == START_MS + 40_000),
            "the injected surge of the {prefix} readings was detected"
        );
    }
    let dead = consume(&data, "dead-letter");
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for ((_, body, reason), d) in bad.iter().zip(&dead) {
        assert_eq!(d["stage"], "ingest", "{d}");
        assert_eq!(d["reason"], *reason, "{d}");
        assert!(!d["message"].as_str().unwrap_or("").is_empty(), "{d}");
        assert_eq!(&original(d), body, "the original bytes are kept");
    }
}
