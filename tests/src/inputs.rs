//! Inputs encoded the way producers encode them, and the params the
//! modules need to read them: shared by every test and benchmark that
//! drives the SmartModules, so they all exercise the same bytes.

use std::sync::OnceLock;

use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{SensorReading, schema};

/// The registry id the tests pretend SensorReading v1 has.
pub const SCHEMA_ID: u64 = 41;
/// Base timestamp of every batch: the validate module's "now".
pub const NOW: i64 = 1_767_300_000_000;

/// The `schemas` param: SensorReading v1 under [`SCHEMA_ID`].
pub fn schemas_param() -> &'static str {
    static PARAM: OnceLock<String> = OnceLock::new();
    PARAM.get_or_init(|| {
        serde_json::json!({ SCHEMA_ID.to_string(): schema::SENSOR_READING }).to_string()
    })
}

/// Params as the chain gets them when only the schemas are set.
pub fn schemas_only(key: &str) -> Option<&'static str> {
    (key == "schemas").then(schemas_param)
}

/// A reading as Apicurio-framed Avro under [`SCHEMA_ID`].
pub fn framed_avro(reading: &SensorReading) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    framing::write_header(&mut out, SCHEMA_ID, IdWidth::ContentId4);
    reading
        .encode_into(&mut out)
        .expect("contract types encode");
    out
}

/// A reading as the JSON edge format.
pub fn json(reading: &SensorReading) -> Vec<u8> {
    serde_json::to_vec(reading).expect("contract types serialise")
}

/// The bytes of a record that decodes as nothing: a framed header with a
/// truncated datum.
pub const GARBAGE: &[u8] = b"\x00\x00\x00\x00\x29\xff\xff";

/// Framed Avro, with every fifth reading as JSON and every 97th replaced by
/// [`GARBAGE`], so both decoders and the dead-letter path run.
pub fn mixed_inputs(readings: &[SensorReading]) -> Vec<Vec<u8>> {
    readings
        .iter()
        .enumerate()
        .map(|(i, r)| match i {
            _ if i % 97 == 13 => GARBAGE.to_vec(),
            _ if i % 5 == 0 => json(r),
            _ => framed_avro(r),
        })
        .collect()
}

/// Every reading as framed Avro, as the pipeline's `readings` topic holds them.
pub fn framed_inputs(readings: &[SensorReading]) -> Vec<Vec<u8>> {
    readings.iter().map(framed_avro).collect()
}
