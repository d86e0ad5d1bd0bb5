//! Anomalies as InfluxDB line protocol.
//!
//! One point per anomaly:
//!
//! ```text
//! anomalies,anomaly_type=VOLTAGE_SURGE,meter_id=m-1,severity=CRITICAL zscore=3.6,voltage=260,current=5,temperature=20,window_mean=230,window_stddev=4,threshold=2.5,window_count=300i,anomaly_id="…",source_offset=42i,source_partition=0i 1772406000000
//! ```
//!
//! - **Tags** are what dashboards group and filter by: `anomaly_type`,
//!   `meter_id`, `severity`, written in key order (InfluxDB sorts them
//!   anyway; pre-sorted saves it the work).
//! - **Fields** are the evidence. Evidence that does not apply to an anomaly
//!   (an `EQUIPMENT_FAILURE` has no z-score) is left out rather than written
//!   as a fake 0; so is a non-finite number, which line protocol cannot hold.
//!   `source_offset` and `source_partition` (integers) say where the point
//!   came from, so a reader can check the sink's output against its input.
//! - **Timestamp** is the reading's event time in milliseconds, not the time
//!   of writing. A point's identity in InfluxDB is measurement + tag set +
//!   timestamp, so a replay overwrites the same points instead of adding
//!   copies: that is what makes the sink idempotent.
//!
//! The price of that identity: two anomalies of the same meter and type at
//! the same millisecond are one point, and the later write wins. In the
//! pipeline (`meter_id`, `timestamp`) names one reading (ingest drops
//! re-sent readings as duplicates), and one reading yields at most one
//! anomaly per type, so this only merges a re-sent reading that outlived the
//! dedup window, which is what it should do.
//!
//! Escaping follows the line-protocol reference: in the measurement, `,` and
//! space; in tag values, `,`, `=` and space; in string fields, `"` and `\`.
//! Some tag values have no line-protocol spelling at all (a newline, an
//! empty value, or a `\` right before `,`, `=`, space or the end, which
//! InfluxDB 1.x would read as an escape); those records are refused with the
//! reason rather than written wrongly.

use std::io::Write as _;

use gridwatch_connector::SinkRecord;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, FramingError, IdWidth};
use gridwatch_contracts::{AnomalyEvent, CodecError};

/// Why a record has no line.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("not a framed Avro record: {0}")]
    Framing(#[from] FramingError),
    #[error(transparent)]
    Decode(#[from] CodecError),
    #[error("tag {tag} = {value:?} cannot be written as line protocol: {why}")]
    Unrepresentable {
        tag: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Encodes anomalies as line protocol into a caller's buffer, so a batch
/// is one allocation.
#[derive(Debug, Clone)]
pub struct LineEncoder {
    /// The measurement, already escaped.
    measurement: Vec<u8>,
}

impl LineEncoder {
    /// An encoder writing to `measurement`.
    pub fn new(measurement: &str) -> Self {
        let mut escaped = Vec::with_capacity(measurement.len());
        for b in measurement.bytes() {
            if matches!(b, b',' | b' ') {
                escaped.push(b'\\');
            }
            escaped.push(b);
        }
        Self {
            measurement: escaped,
        }
    }

    /// Decodes a framed Avro [`AnomalyEvent`] record (Apicurio v3 framing)
    /// and appends its line. On error `out` is left as it was.
    pub fn encode_record(&self, record: &SinkRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let framed = framing::parse(&record.value, IdWidth::ContentId4)?;
        let event = AnomalyEvent::from_avro(framed.datum)?;
        self.encode(&event, record.partition, record.offset, out)
    }

    /// Appends the line of `event`, which came from source position
    /// (`partition`, `offset`). On error `out` is left as it was.
    pub fn encode(
        &self,
        event: &AnomalyEvent,
        partition: u32,
        offset: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_unchecked(event, partition, offset, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked(
        &self,
        event: &AnomalyEvent,
        partition: u32,
        offset: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let reading = &event.original_event;
        out.extend_from_slice(&self.measurement);
        tag(out, "anomaly_type", event.anomaly_type.as_str())?;
        tag(out, "meter_id", &reading.meter_id)?;
        tag(out, "severity", event.severity.as_str())?;
        let mut fields = Fields { out, first: true };
        fields.float("zscore", event.zscore);
        fields.float("voltage", Some(reading.voltage));
        fields.float("current", Some(reading.current));
        fields.float("temperature", Some(reading.temperature));
        fields.float("window_mean", event.window_mean);
        fields.float("window_stddev", event.window_stddev);
        fields.float("threshold", event.threshold);
        fields.integer("window_count", event.window_count.map(i64::from));
        fields.string("anomaly_id", &event.anomaly_id);
        fields.integer("source_offset", i64::try_from(offset).ok());
        fields.integer("source_partition", Some(i64::from(partition)));
        let _ = writeln!(out, " {}", reading.timestamp);
        Ok(())
    }
}

/// Appends `,key=value` with the value escaped, or says why it cannot be.
fn tag(out: &mut Vec<u8>, key: &'static str, value: &str) -> Result<(), EncodeError> {
    let refuse = |why| EncodeError::Unrepresentable {
        tag: key,
        value: value.to_owned(),
        why,
    };
    if value.is_empty() {
        return Err(refuse("an empty tag value is not allowed"));
    }
    out.push(b',');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' | b'\r' => return Err(refuse("line protocol has no escape for a line break")),
            b'\\' if matches!(bytes.get(i + 1), None | Some(b',' | b'=' | b' ')) => {
                return Err(refuse(
                    "a backslash before a comma, equals sign, space or the end reads as an escape",
                ));
            }
            b',' | b'=' | b' ' => out.extend_from_slice(&[b'\\', b]),
            _ => out.push(b),
        }
    }
    Ok(())
}

/// The field set being written: commas between fields, none before the first.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Fields<'_> {
    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b' ' } else { b',' });
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    /// A float field; absent and non-finite values are left out.
    fn float(&mut self, key: &str, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.key(key);
            // `Display` for f64 is the shortest round-tripping decimal and
            // never uses an exponent, which every line-protocol parser reads.
            let _ = write!(self.out, "{v}");
        }
    }

    fn integer(&mut self, key: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.key(key);
            let _ = write!(self.out, "{v}i");
        }
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push(b'"');
        for b in value.bytes() {
            if matches!(b, b'"' | b'\\') {
                self.out.push(b'\\');
            }
            self.out.push(b);
        }
        self.out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use gridwatch_connector::testkit::{anomaly_record, sample_anomaly};
    use gridwatch_contracts::{AnomalyType, Severity};

    use super::*;

    fn line(event: &AnomalyEvent) -> String {
        let mut out = Vec::new();
        LineEncoder::new("anomalies")
            .encode(event, 1, 42, &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_scored_anomaly_has_every_field_and_its_event_time() {
        let event = sample_anomaly(0, 7);
        assert_eq!(
            line(&event),
            format!(
                "anomalies,anomaly_type=VOLTAGE_SURGE,meter_id=meter-0-0007,severity=WARNING \
                 zscore=3,voltage=257,current=5,temperature=20,window_mean=230,window_stddev=4,\
                 threshold=2.5,window_count=300i,anomaly_id=\"{}\",source_offset=42i,\
                 source_partition=1i 1772406420000\n",
                event.anomaly_id
            )
        );
    }

    #[test]
    fn missing_and_non_finite_evidence_is_left_out() {
        let mut event = sample_anomaly(0, 0);
        event.anomaly_type = AnomalyType::EquipmentFailure;
        event.severity = Severity::Critical;
        event.zscore = None;
        event.window_mean = Some(f64::NAN);
        event.window_stddev = Some(f64::INFINITY);
        event.threshold = None;
        event.window_count = None;
        event.original_event.voltage = 0.125;
        let l = line(&event);
        assert!(
            l.starts_with(
                "anomalies,anomaly_type=EQUIPMENT_FAILURE,meter_id=meter-0-0000,severity=CRITICAL \
                 voltage=0.125,current=5,temperature=20,anomaly_id="
            ),
            "{l}"
        );
        assert!(!l.contains("window") && !l.contains("zscore") && !l.contains("NaN"));
    }

    #[test]
    fn tags_measurement_and_strings_are_escaped() {
        let mut event = sample_anomaly(0, 0);
        event.original_event.meter_id = r"feeder 7,bay=2 c:\x".into();
        event.anomaly_id = r#"a"b\c"#.into();
        let mut out = Vec::new();
        LineEncoder::new("grid anomalies,v2")
            .encode(&event, 0, 0, &mut out)
            .unwrap();
        let l = String::from_utf8(out).unwrap();
        assert!(
            l.starts_with(
                r"grid\ anomalies\,v2,anomaly_type=VOLTAGE_SURGE,meter_id=feeder\ 7\,bay\=2\ c:\x,"
            ),
            "{l}"
        );
        assert!(l.contains(r#"anomaly_id="a\"b\\c""#), "{l}");
    }

    #[test]
    fn unrepresentable_tags_are_refused_and_leave_the_buffer_alone() {
        let encoder = LineEncoder::new("anomalies");
        for bad in ["", "a\nb", "a\\", "a\\ b", "a\\,b", "a\\=b"] {
            let mut event = sample_anomaly(0, 0);
            event.original_event.meter_id = bad.into();
            let mut out = b"kept\n".to_vec();
            let e = encoder.encode(&event, 0, 0, &mut out).unwrap_err();
            assert!(
                matches!(
                    e,
                    EncodeError::Unrepresentable {
                        tag: "meter_id",
                        ..
                    }
                ),
                "{bad:?}: {e}"
            );
            assert_eq!(out, b"kept\n");
        }
        // A backslash before anything else is literal, and fine.
        let mut event = sample_anomaly(0, 0);
        event.original_event.meter_id = r"a\b\\c".into();
        assert!(line(&event).contains(r",meter_id=a\b\\c,"));
    }

    #[test]
    fn records_decode_from_framed_avro_and_garbage_is_refused() {
        let encoder = LineEncoder::new("anomalies");
        let record = anomaly_record("anomalies", 2, 9, 77);
        let mut out = Vec::new();
        encoder.encode_record(&record, &mut out).unwrap();
        let l = String::from_utf8(out).unwrap();
        assert!(l.contains("source_offset=9i,source_partition=2i "), "{l}");

        let mut bad = record.clone();
        bad.value = bytes::Bytes::from_static(b"{\"json\":true}");
        let mut out = Vec::new();
        assert!(matches!(
            encoder.encode_record(&bad, &mut out),
            Err(EncodeError::Framing(_))
        ));
        bad.value = bytes::Bytes::from_static(&[0, 0, 0, 0, 77, 0xff, 0xff]);
        assert!(matches!(
            encoder.encode_record(&bad, &mut out),
            Err(EncodeError::Decode(_))
        ));
        assert!(out.is_empty());
    }
}
