//! The JSON edge format for readings.
//!
//! JSON is accepted only at the edge (the ingest API, plain `fluvio produce`);
//! everything written to topics is Avro. Field names are the Avro names.
//! `status` is optional, defaults to `OK`, and must be upper case.
//! `timestamp` is epoch milliseconds or an RFC 3339 string.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{MeterStatus, SensorReading, reason};

/// Why a JSON reading was rejected, with the DLQ reason code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum JsonReadingError {
    #[error("not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    #[error("JSON does not match SensorReading: {0}")]
    Shape(#[source] serde_json::Error),
    #[error("timestamp {value:?} is neither epoch milliseconds nor RFC 3339")]
    Timestamp { value: String },
}

impl JsonReadingError {
    /// The [`reason`] code for a dead letter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Syntax(_) => reason::UNPARSEABLE,
            Self::Shape(_) => reason::SCHEMA_MISMATCH,
            Self::Timestamp { .. } => reason::TIMESTAMP_OUT_OF_RANGE,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTimestamp<'a> {
    Millis(i64),
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
}

#[derive(Deserialize)]
struct JsonReading<'a> {
    #[serde(borrow)]
    meter_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    timestamp: JsonTimestamp<'a>,
    voltage: f64,
    current: f64,
    temperature: f64,
    #[serde(default)]
    status: MeterStatus,
}

/// Parses one JSON reading. Range and plausibility checks are validate's job.
pub fn parse_reading(bytes: &[u8]) -> Result<SensorReading, JsonReadingError> {
    let raw: JsonReading<'_> = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => JsonReadingError::Shape(e),
        _ => JsonReadingError::Syntax(e),
    })?;
    let timestamp = match raw.timestamp {
        JsonTimestamp::Millis(ms) => ms,
        JsonTimestamp::Text(text) => {
            parse_rfc3339_millis(&text).ok_or_else(|| JsonReadingError::Timestamp {
                value: text.into_owned(),
            })?
        }
    };
    Ok(SensorReading {
        meter_id: raw.meter_id.into_owned(),
        timestamp,
        voltage: raw.voltage,
        current: raw.current,
        temperature: raw.temperature,
        status: raw.status,
    })
}

/// RFC 3339 to epoch milliseconds, `None` when it does not parse or overflows.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Epoch milliseconds to RFC 3339, for display.
pub fn format_rfc3339_millis(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoch_millis_and_defaults_status() {
        let r = parse_reading(
            br#"{"meter_id":"m1","timestamp":1767225600000,"voltage":230.1,"current":5,"temperature":21.5}"#,
        )
        .unwrap();
        assert_eq!(r.timestamp, 1_767_225_600_000);
        assert_eq!(r.status, MeterStatus::Ok);
        assert_eq!(r.current, 5.0);
    }

    #[test]
    fn parses_rfc3339_with_offsets() {
        let r = parse_reading(
            br#"{"meter_id":"m1","timestamp":"2026-01-01T01:00:00.250+01:00","voltage":1,"current":1,"temperature":1,"status":"FAILURE"}"#,
        )
        .unwrap();
        assert_eq!(r.timestamp, 1_767_225_600_250);
        assert_eq!(r.status, MeterStatus::Failure);
        assert_eq!(
            format_rfc3339_millis(r.timestamp),
            "2026-01-01T00:00:00.25Z"
        );
    }

    #[test]
    fn rejections_carry_the_right_reason() {
        let cases: [(&[u8], &str); 6] = [
            (b"{not json", reason::UNPARSEABLE),
            (b"", reason::UNPARSEABLE),
            (br#"{"meter_id":"m1","timestamp":1,"voltage":"high","current":1,"temperature":1}"#, reason::SCHEMA_MISMATCH),
            (br#"{"meter_id":"m1","timestamp":1,"current":1,"temperature":1}"#, reason::SCHEMA_MISMATCH),
            (br#"{"meter_id":"m1","timestamp":1,"voltage":1,"current":1,"temperature":1,"status":"ok"}"#, reason::SCHEMA_MISMATCH),
            (br#"{"meter_id":"m1","timestamp":"yesterday","voltage":1,"current":1,"temperature":1}"#, reason::TIMESTAMP_OUT_OF_RANGE),
        ];
        for (input, want) in cases {
            let err = parse_reading(input).unwrap_err();
            assert_eq!(
                err.reason(),
                want,
                "{}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        assert!(
            parse_reading(
                br#"{"meter_id":"m","timestamp":1,"voltage":1e999,"current":1,"temperature":1}"#
            )
            .is_err()
        );
        assert!(
            parse_reading(
                br#"{"meter_id":"m","timestamp":1,"voltage":NaN,"current":1,"temperature":1}"#
            )
            .is_err()
        );
    }
}
