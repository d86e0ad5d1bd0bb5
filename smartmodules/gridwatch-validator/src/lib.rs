//! The validation rules for readings, as a plain library.
//!
//! It compiles natively (the runtime, offline scoring, tests) and into the
//! `validate` SmartModule, so both run exactly the same code. Input bytes hold a reading in one of two encodings: Avro framed the
//! Apicurio v3 way (magic byte 0, a 4-byte big-endian schema id, the datum),
//! or a plain JSON object. Output records are `io.gridwatch.ChainRecord`
//! Avro datums: the decoded [`SensorReading`], or a [`DeadLetter`] saying why
//! the bytes were refused, so the runtime can route them without parsing again.
//! Nothing is dropped and no input makes the module fail.
//!
//! A module cannot call the registry, so the writer schemas arrive through
//! the `schemas` init param (see `smartmodules/validate/SmartModule.toml`).

pub mod batch;
mod params;

use std::borrow::Cow;

use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::fast::{self, ReadingRef};
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{ChainRecord, DeadLetter, SensorReading, framing, json};

pub use params::{DEFAULT_EARLIEST_MS, Range, ValidateConfig};

/// The stage name written into dead letters.
pub const STAGE: &str = "validate";

/// Why a record was refused: a [`reason`] code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The dead letter for this rejection.
    pub fn into_dead_letter(self, original: &[u8], source_offset: i64, now_ms: i64) -> DeadLetter {
        DeadLetter {
            reason: self.reason.to_string(),
            message: self.message,
            stage: STAGE.to_string(),
            source_topic: None,
            source_partition: None,
            source_offset: Some(source_offset),
            original: original.to_vec(),
            first_failed_at: now_ms,
            attempts: 1,
        }
    }
}

/// Decodes and checks one record. `now_ms` is the wall clock that bounds
/// future timestamps.
pub fn validate(
    bytes: &[u8],
    config: &ValidateConfig,
    now_ms: i64,
) -> Result<SensorReading, Rejection> {
    let reading = decode(bytes, config)?;
    check(&reading, config, now_ms)?;
    Ok(reading)
}

/// [`validate`], shaped as the chain record the module emits.
pub fn validate_record(
    bytes: &[u8],
    source_offset: i64,
    config: &ValidateConfig,
    now_ms: i64,
) -> ChainRecord {
    match validate(bytes, config, now_ms) {
        Ok(reading) => ChainRecord::Reading(reading),
        Err(rejection) => {
            ChainRecord::DeadLetter(rejection.into_dead_letter(bytes, source_offset, now_ms))
        }
    }
}

/// [`validate_record`] written as its `ChainRecord` datum onto `out`, the
/// way the module emits it. Returns the meter id (the output record's key)
/// when the reading passed, `None` when it became a dead letter.
///
/// Framed Avro written with SensorReading v1 itself (what Gridwatch's own
/// ingest produces) is decoded by hand, borrowing the meter id, and
/// re-encoded without a `SensorReading` in between: no allocation per
/// reading. Anything else, and every rejection, takes [`validate_record`],
/// so dead letters and their messages are exactly as before.
pub fn validate_into<'a>(
    bytes: &'a [u8],
    source_offset: i64,
    config: &ValidateConfig,
    now_ms: i64,
    out: &mut Vec<u8>,
) -> Result<Option<Cow<'a, str>>, gridwatch_contracts::CodecError> {
    if let Some(r) = decode_v1(bytes, config)
        && check_ref(&r, config, now_ms).is_ok()
    {
        fast::put_chain_reading(out, &r);
        return Ok(Some(Cow::Borrowed(r.meter_id)));
    }
    let record = validate_record(bytes, source_offset, config, now_ms);
    record.encode_into(out)?;
    Ok(match record {
        ChainRecord::Reading(r) => Some(Cow::Owned(r.meter_id)),
        _ => None,
    })
}

/// The hand-written decoder's share of [`decode`]: framed Avro under a
/// SensorReading v1 writer schema, decoding exactly. `None` otherwise.
fn decode_v1<'a>(bytes: &'a [u8], config: &ValidateConfig) -> Option<ReadingRef<'a>> {
    if bytes.first() != Some(&framing::MAGIC) {
        return None;
    }
    let framed = framing::parse(bytes, config.id_width).ok()?;
    if !config.v1_ids.contains(&framed.schema_id) {
        return None;
    }
    fast::decode_reading(framed.datum)
}

/// Turns bytes into a reading: framed Avro when the first byte is the magic
/// byte, JSON when it opens an object, refused otherwise.
pub fn decode(bytes: &[u8], config: &ValidateConfig) -> Result<SensorReading, Rejection> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(Rejection::new(reason::UNPARSEABLE, "record is empty")),
        Some(&framing::MAGIC) => {
            let framed = framing::parse(bytes, config.id_width)
                .map_err(|e| Rejection::new(reason::UNPARSEABLE, e.to_string()))?;
            let schema = config.schemas.get(&framed.schema_id).ok_or_else(|| {
                Rejection::new(
                    reason::UNKNOWN_SCHEMA,
                    format!(
                        "schema id {} is not among the {} writer schemas this module was given",
                        framed.schema_id,
                        config.schemas.len()
                    ),
                )
            })?;
            SensorReading::from_avro_with(framed.datum, schema)
                .map_err(|e| Rejection::new(reason::SCHEMA_MISMATCH, e.to_string()))
        }
        Some(b'{') => {
            json::parse_reading(bytes).map_err(|e| Rejection::new(e.reason(), e.to_string()))
        }
        Some(&other) => Err(Rejection::new(
            reason::UNPARSEABLE,
            format!(
                "first byte {other:#04x} is neither the Avro magic byte 0x00 nor a JSON object"
            ),
        )),
    }
}

/// Checks meaning, not just shape: ids, finite and plausible values, times.
pub fn check(r: &SensorReading, config: &ValidateConfig, now_ms: i64) -> Result<(), Rejection> {
    check_ref(&ReadingRef::of(r), config, now_ms)
}

/// [`check`] on a borrowed reading.
pub fn check_ref(
    r: &ReadingRef<'_>,
    config: &ValidateConfig,
    now_ms: i64,
) -> Result<(), Rejection> {
    let id = r.meter_id;
    // ASCII ids (all real ones) are answered without Unicode tables; the
    // answers are those of `trim` and `char::is_control`.
    // One pass over the bytes for all three questions.
    let (mut ascii, mut blank, mut control) = (true, true, false);
    for &b in id.as_bytes() {
        ascii &= b < 0x80;
        blank &= matches!(b, b' ' | b'\t'..=b'\r');
        control |= b < 0x20 || b == 0x7f;
    }
    if !ascii {
        blank = id.trim().is_empty();
        control = id.chars().any(char::is_control);
    }
    if blank {
        return Err(Rejection::new(
            reason::INVALID_METER_ID,
            "meter_id is empty",
        ));
    }
    if id.len() > config.max_meter_id_len {
        return Err(Rejection::new(
            reason::INVALID_METER_ID,
            format!(
                "meter_id is {} bytes, longer than {}",
                id.len(),
                config.max_meter_id_len
            ),
        ));
    }
    if control {
        return Err(Rejection::new(
            reason::INVALID_METER_ID,
            "meter_id contains control characters",
        ));
    }
    // The fast test first, the messages only for the reading that fails:
    // the table of fields the loop below walks costs a copy per reading.
    let plausible = |value: f64, range: Range| value.is_finite() && range.contains(value);
    if !(plausible(r.voltage, config.voltage)
        && plausible(r.current, config.current)
        && plausible(r.temperature, config.temperature))
    {
        for (name, value, range, unit) in [
            ("voltage", r.voltage, config.voltage, "V"),
            ("current", r.current, config.current, "A"),
            ("temperature", r.temperature, config.temperature, "°C"),
        ] {
            if !value.is_finite() {
                return Err(Rejection::new(
                    reason::NOT_FINITE,
                    format!("{name} is {value}"),
                ));
            }
            if !range.contains(value) {
                return Err(Rejection::new(
                    reason::OUT_OF_RANGE,
                    format!(
                        "{name} {value} {unit} is outside {} to {} {unit}",
                        range.min, range.max
                    ),
                ));
            }
        }
    }
    let latest = now_ms.saturating_add(config.max_future_ms);
    if r.timestamp < config.earliest_ms || r.timestamp > latest {
        return Err(Rejection::new(
            reason::TIMESTAMP_OUT_OF_RANGE,
            format!(
                "timestamp {} ({}) is outside {} to {}",
                r.timestamp,
                json::format_rfc3339_millis(r.timestamp),
                json::format_rfc3339_millis(config.earliest_ms),
                json::format_rfc3339_millis(latest)
            ),
        ));
    }
    Ok(())
}

/// The wall clock for a record: its own timestamp when the log set one (so a
/// replay judges it as it was judged first), else the host's clock.
pub fn record_clock(record_timestamp: i64) -> i64 {
    if record_timestamp > 0 {
        return record_timestamp;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
