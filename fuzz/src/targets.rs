//! The body of every fuzz target, as plain functions over bytes, shared by
//! the cargo-fuzz targets (`fuzz_targets/*.rs`, nightly, libFuzzer: the long
//! form, `scripts/fuzz`) and the stable, bounded run in CI
//! (`tests/tests/fuzz.rs` includes this file with `#[path]`).
//!
//! It depends only on the Gridwatch crates, `serde_json` and `arbitrary`,
//! never on libFuzzer, so both can compile it. A body fails by panicking:
//! when the code under test panics, or when a property does not hold. Every
//! input a decoder rejects must come back as an error or dead letter that
//! says why (a known reason code and a non-empty message).

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{IdWidth, parse, write_header};
use gridwatch_contracts::json::{format_rfc3339_millis, parse_reading, parse_rfc3339_millis};
use gridwatch_contracts::model::reason;
use gridwatch_contracts::schema;
use gridwatch_contracts::{
    AnomalyEvent, ChainRecord, DeadLetter, MeterStatus, ScoredReading, SensorReading,
};
use gridwatch_detect::DetectState;
use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::ingest::Ingest;
use gridwatch_validator::{ValidateConfig, validate_record};

/// "Now" for validate when the input does not pick one: 2026-01-01T19:20:00Z.
pub const NOW: i64 = 1_767_300_000_000;

/// Schema ids validate is given by [`config`], each a different writer:
/// the contract itself, a compatible evolution, and writers whose types do
/// not match SensorReading, so decoding meets every kind of mismatch.
pub const SCHEMA_IDS: [u64; 5] = [41, 42, 43, 44, 45];

fn writer_schemas() -> String {
    let mut v2: serde_json::Value =
        serde_json::from_str(schema::SENSOR_READING).expect("the contract parses as JSON");
    if let Some(fields) = v2["fields"].as_array_mut() {
        fields.push(serde_json::json!({"name": "phase", "type": "string", "default": "L1"}));
    }
    let floats = serde_json::json!({
        "type": "record", "name": "SensorReading", "namespace": "io.gridwatch",
        "fields": [
            {"name": "meter_id", "type": "string"},
            {"name": "timestamp", "type": "int"},
            {"name": "voltage", "type": "float"},
            {"name": "current", "type": ["null", "float"]},
            {"name": "temperature", "type": "long"},
            {"name": "status", "type": {"type": "enum", "name": "MeterStatus",
                "symbols": ["OK", "DEGRADED", "FAILURE", "UNKNOWN"], "default": "UNKNOWN"}}
        ]
    });
    let strings = serde_json::json!({
        "type": "record", "name": "SensorReading", "namespace": "io.gridwatch",
        "fields": [
            {"name": "meter_id", "type": "bytes"},
            {"name": "timestamp", "type": "string"},
            {"name": "voltage", "type": "string"},
            {"name": "current", "type": {"type": "array", "items": "double"}},
            {"name": "temperature", "type": {"type": "map", "values": "double"}},
            {"name": "status", "type": "string"}
        ]
    });
    serde_json::json!({
        "41": schema::SENSOR_READING,
        "42": v2,
        "43": floats,
        "44": schema::CHAIN_RECORD,
        "45": strings,
    })
    .to_string()
}

/// validate's config with [`SCHEMA_IDS`] and the given id width.
pub fn config(global_id_8: bool) -> &'static ValidateConfig {
    static CONFIGS: OnceLock<[ValidateConfig; 2]> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        let schemas = writer_schemas();
        let build = |width: &'static str| {
            let schemas = schemas.as_str();
            ValidateConfig::from_params(|key| match key {
                "schemas" => Some(schemas),
                "id_width" => Some(width),
                _ => None,
            })
            .expect("the fuzz writer schemas are valid")
        };
        [build("content-id-4"), build("global-id-8")]
    });
    &configs[usize::from(global_id_8)]
}

/// A decoded value must encode again, and its encoding must decode to a
/// value with the same encoding (bytes compare NaNs too, `==` would not).
pub fn assert_round_trips<T: AvroRecord>(value: &T) {
    let bytes = value
        .to_avro()
        .unwrap_or_else(|e| panic!("a decoded {} does not encode: {e}", T::NAME));
    let again = T::from_avro(&bytes)
        .unwrap_or_else(|e| panic!("our own {} encoding does not decode: {e}", T::NAME));
    let bytes_again = again.to_avro().expect("encodes the second time");
    assert_eq!(bytes, bytes_again, "{} is not stable through Avro", T::NAME);
}

/// A target's body: bytes in, a panic on failure.
pub type Body = fn(&[u8]);

/// Every target: its name (as in `fuzz/fuzz_targets/`) and its body.
pub const TARGETS: [(&str, Body); 9] = [
    ("avro_chain_record", avro_chain_record),
    ("avro_sensor_reading", avro_sensor_reading),
    ("detect_map", detect_map_bytes),
    ("framing_header", framing_header),
    ("json_array_body", json_array_body),
    ("json_reading", json_reading),
    ("ndjson_body", ndjson_body),
    ("validate_record", validate_record_target),
    ("validate_writer_schema", validate_writer_schema),
];

/// Reason codes a dead letter for bad input may carry.
const REASONS: [&str; 7] = [
    reason::UNPARSEABLE,
    reason::UNKNOWN_SCHEMA,
    reason::SCHEMA_MISMATCH,
    reason::NOT_FINITE,
    reason::OUT_OF_RANGE,
    reason::TIMESTAMP_OUT_OF_RANGE,
    reason::INVALID_METER_ID,
];

/// A dead letter for rejected input says why: a known reason code and a
/// message.
fn assert_explained(d: &DeadLetter) {
    assert!(
        REASONS.contains(&d.reason.as_str()),
        "unknown reason {}",
        d.reason
    );
    assert!(
        !d.message.trim().is_empty(),
        "a {} dead letter without a message",
        d.reason
    );
}

/// The ChainRecord union decoder (what detect and the runtime read between
/// modules), and the DeadLetter, ScoredReading and AnomalyEvent records it
/// and the topics carry, on arbitrary datums.
pub fn avro_chain_record(data: &[u8]) {
    match ChainRecord::from_avro(data) {
        Ok(record) => assert_round_trips(&record),
        Err(e) => assert!(
            !e.to_string().is_empty(),
            "ChainRecord error without a reason"
        ),
    }
    if let Ok(d) = DeadLetter::from_avro(data) {
        assert_round_trips(&d);
    }
    if let Ok(s) = ScoredReading::from_avro(data) {
        assert_round_trips(&s);
    }
    if let Ok(a) = AnomalyEvent::from_avro(data) {
        assert_round_trips(&a);
    }
}

/// SensorReading's Avro decoder (serde_avro_fast) on arbitrary datums, with
/// the contract's own schema and with a compatible v2 writer schema.
pub fn avro_sensor_reading(data: &[u8]) {
    match SensorReading::from_avro(data) {
        Ok(reading) => assert_round_trips(&reading),
        Err(e) => assert!(
            !e.to_string().is_empty(),
            "SensorReading error without a reason"
        ),
    }
    if let Some(v2) = config(false).schemas.get(&42)
        && let Ok(reading) = SensorReading::from_avro_with(data, v2)
    {
        assert_round_trips(&reading);
    }
}

/// One step of [`DetectInput`].
#[derive(Debug, Arbitrary)]
pub enum DetectOp {
    /// Bytes as they arrive from the previous module.
    Raw(Vec<u8>),
    /// A reading that decodes, with any values.
    Reading {
        meter: u8,
        timestamp: i64,
        voltage: f64,
        current: f64,
        temperature: f64,
        status: u8,
        now: i64,
    },
    /// A raw topic record replayed by look-back.
    Warm(Vec<u8>, i64),
}

/// detect_map's structured input.
#[derive(Debug, Arbitrary)]
pub struct DetectInput {
    /// detect's init params, as strings, so their parsing is fuzzed too.
    pub window: Option<String>,
    pub threshold: Option<String>,
    pub min_samples: Option<String>,
    pub allowed_lateness: Option<String>,
    pub idle_timeout: Option<String>,
    pub ops: Vec<DetectOp>,
}

/// [`detect_map`] on raw bytes, read as a [`DetectInput`] the way
/// libFuzzer's `fuzz_target!(|input: DetectInput|)` does.
pub fn detect_map_bytes(data: &[u8]) {
    if let Ok(input) = DetectInput::arbitrary_take_rest(Unstructured::new(data)) {
        detect_map(input);
    }
}

/// detect's map (`DetectState::process`) and look-back warm-up over a
/// sequence of records on one state: arbitrary ChainRecord bytes, and
/// well-formed readings with arbitrary values, times and statuses, so the
/// windows, episodes and eviction see hostile streams as well as decoders.
pub fn detect_map(input: DetectInput) {
    let get = |key: &str| match key {
        "window" => input.window.as_deref(),
        "threshold" => input.threshold.as_deref(),
        "min_samples" => input.min_samples.as_deref(),
        "allowed_lateness" => input.allowed_lateness.as_deref(),
        "idle_timeout" => input.idle_timeout.as_deref(),
        _ => None,
    };
    let mut state = match DetectState::from_params(get) {
        Ok(state) => state,
        Err(e) => {
            assert!(
                !e.to_string().is_empty(),
                "a refused detect param without a reason"
            );
            return;
        }
    };
    for (offset, op) in input.ops.iter().enumerate() {
        let offset = offset as i64;
        let out = match op {
            DetectOp::Raw(bytes) => state.process(bytes, offset, NOW),
            DetectOp::Reading {
                meter,
                timestamp,
                voltage,
                current,
                temperature,
                status,
                now,
            } => {
                let reading = SensorReading {
                    meter_id: format!("m-{}", meter % 8),
                    timestamp: *timestamp,
                    voltage: *voltage,
                    current: *current,
                    temperature: *temperature,
                    status: match status % 3 {
                        0 => MeterStatus::Ok,
                        1 => MeterStatus::Degraded,
                        _ => MeterStatus::Failure,
                    },
                };
                let bytes = ChainRecord::Reading(reading).to_avro().expect("encodes");
                state.process(&bytes, offset, *now)
            }
            DetectOp::Warm(bytes, ts) => {
                state.warm(bytes, offset, *ts);
                continue;
            }
        };
        if let ChainRecord::DeadLetter(d) = &out {
            assert!(
                !d.reason.is_empty() && !d.message.trim().is_empty(),
                "{d:?}"
            );
        }
        out.to_avro().expect("detect's output encodes");
    }
}

/// The Apicurio / Confluent framing header parser, both id widths: what it
/// accepts must be exactly a header followed by the datum it returns.
pub fn framing_header(data: &[u8]) {
    for width in [IdWidth::ContentId4, IdWidth::GlobalId8] {
        match parse(data, width) {
            Ok(framed) => {
                let mut again = Vec::with_capacity(data.len());
                write_header(&mut again, framed.schema_id, width);
                again.extend_from_slice(framed.datum);
                assert_eq!(again, data, "{width:?} header does not round-trip");
            }
            Err(e) => assert!(!e.to_string().is_empty(), "framing error without a reason"),
        }
    }
}

/// The ingest API's JSON-array body parser: each element is a reading or a
/// dead letter; a body that is not an array is one dead letter with it all.
pub fn json_array_body(data: &[u8]) {
    let (ok, bad) = Ingest::<EmbeddedBackend>::parse_json_array(data);
    for d in &bad {
        assert_explained(d);
    }
    match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(data) {
        Ok(items) => assert_eq!(ok.len() + bad.len(), items.len()),
        Err(_) => {
            assert!(ok.is_empty());
            assert_eq!(bad.len(), 1);
            assert_eq!(bad[0].original, data);
        }
    }
}

/// The JSON edge format: one reading, and the RFC 3339 timestamp helpers.
pub fn json_reading(data: &[u8]) {
    match parse_reading(data) {
        Ok(reading) => {
            // What was accepted serialises and parses back to the same
            // reading (floats compared by value: serde_json's default parser
            // may differ from the shortest representation by an ulp).
            let text = serde_json::to_vec(&reading).expect("a parsed reading serialises");
            let again = parse_reading(&text).expect("our own JSON parses");
            assert_eq!(again.meter_id, reading.meter_id);
            assert_eq!(again.timestamp, reading.timestamp);
            assert_eq!(again.status, reading.status);
            for (a, b) in [
                (again.voltage, reading.voltage),
                (again.current, reading.current),
                (again.temperature, reading.temperature),
            ] {
                assert!((a - b).abs() <= f64::EPSILON * b.abs(), "{a} vs {b}");
            }
        }
        Err(e) => {
            assert!(
                REASONS.contains(&e.reason()),
                "unknown reason {}",
                e.reason()
            );
            assert!(
                !e.to_string().trim().is_empty(),
                "a rejected reading without a reason"
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(ms) = parse_rfc3339_millis(text)
    {
        let shown = format_rfc3339_millis(ms);
        assert_eq!(
            parse_rfc3339_millis(&shown),
            Some(ms),
            "{text:?} -> {shown}"
        );
    }
    if let Ok(bytes) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        let _ = format_rfc3339_millis(i64::from_le_bytes(bytes));
    }
}

/// The ingest API's NDJSON body parser: every non-blank line is either a
/// reading or a dead letter carrying exactly that line.
pub fn ndjson_body(data: &[u8]) {
    let (ok, bad) = Ingest::<EmbeddedBackend>::parse_ndjson(data);
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    assert_eq!(
        ok.len() + bad.len(),
        lines.len(),
        "every line is counted once"
    );
    for d in &bad {
        assert!(
            lines.contains(&d.original.as_slice()),
            "a dead letter keeps its line"
        );
        assert_eq!(d.stage, "ingest");
        assert_explained(d);
    }
}

/// validate's whole decision (`validate_record`) on arbitrary bytes, with
/// five writer schemas (the contract, a v2 evolution, and three whose types
/// do not match) under ids 41–45.
///
/// Input: a flags byte (bit 0: legacy 8-byte global ids; bit 1: the next 8
/// bytes are "now", little-endian, else a fixed now), then the record.
pub fn validate_record_target(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (now, record) = match rest.split_first_chunk::<8>() {
        Some((now, record)) if flags & 2 != 0 => (i64::from_le_bytes(*now), record),
        _ => (NOW, rest),
    };
    let config = config(flags & 1 != 0);
    let out = validate_record(record, 7, config, now);
    match &out {
        ChainRecord::Reading(r) => {
            assert!(r.voltage.is_finite() && r.current.is_finite() && r.temperature.is_finite());
            assert!(!r.meter_id.trim().is_empty() && r.meter_id.len() <= config.max_meter_id_len);
            assert!(r.timestamp >= config.earliest_ms);
        }
        ChainRecord::DeadLetter(d) => {
            assert_explained(d);
            assert_eq!(
                d.original, record,
                "the dead letter keeps the original bytes"
            );
            assert_eq!(d.source_offset, Some(7));
        }
        ChainRecord::Scored(_) => panic!("validate never scores"),
    }
    // What the module hands on must be a valid ChainRecord datum.
    assert_round_trips(&out);
    let bytes = out.to_avro().expect("encodes");
    assert!(ChainRecord::from_avro(&bytes).is_ok());
}

/// validate's `schemas` param (writer schemas as the registry hands them
/// over) and decoding with whatever writer schema parses.
///
/// Input: the schema text, a NUL byte, then an Avro datum. The text is used
/// both as the whole `schemas` param and as the one schema under id 1.
pub fn validate_writer_schema(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, datum) = data.split_at(split);
    let datum = datum.get(1..).unwrap_or_default();
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let wrapped = serde_json::json!({ "1": text }).to_string();
    for param in [text, wrapped.as_str()] {
        let config = match ValidateConfig::from_params(|k| (k == "schemas").then_some(param)) {
            Ok(config) => config,
            Err(e) => {
                assert!(
                    !e.to_string().is_empty(),
                    "a refused schema without a reason"
                );
                continue;
            }
        };
        for &id in config.schemas.keys() {
            let mut record = Vec::with_capacity(datum.len() + 5);
            write_header(&mut record, id, IdWidth::ContentId4);
            record.extend_from_slice(datum);
            if let ChainRecord::DeadLetter(d) = validate_record(&record, 0, &config, NOW) {
                assert_explained(&d);
            }
        }
    }
}
