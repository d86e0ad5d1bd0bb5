//! What the fuzz targets share: the writer schemas validate is given, and
//! the properties every decoded value must keep.
//!
//! A target fails when the code under test panics (libFuzzer reports it as a
//! crash) or when one of these properties does not hold.

use std::sync::OnceLock;

use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::schema;
use gridwatch_validator::ValidateConfig;

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
