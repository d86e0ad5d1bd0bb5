//! Avro binary encoding of the contract types.
//!
//! The hot path (ingest, the SmartModules, the sinks) uses `serde_avro_fast`,
//! which decodes straight into the Rust types without an intermediate value
//! tree. `apache-avro` stays the reference: the tests below encode with one
//! and decode with the other.

use serde::{Serialize, de::DeserializeOwned};
use serde_avro_fast::Schema;
use serde_avro_fast::ser::SerializerConfig;

/// A parsed writer schema, as received from a registry.
pub use serde_avro_fast::Schema as WriterSchema;

use crate::model::{AnomalyEvent, ChainRecord, DeadLetter, ScoredReading, SensorReading};
use crate::schema;

/// Why bytes could not be turned into a contract type, or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("Avro datum does not decode as {record}: {source}")]
    Decode {
        record: &'static str,
        #[source]
        source: serde_avro_fast::de::DeError,
    },
    #[error("{record} does not encode to Avro: {source}")]
    Encode {
        record: &'static str,
        #[source]
        source: serde_avro_fast::ser::SerError,
    },
    #[error("writer schema does not parse: {0}")]
    Schema(String),
}

/// A contract type with its Avro schema attached.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// The record's name, for error messages.
    const NAME: &'static str;
    /// The parsed schema this type reads and writes.
    fn schema() -> &'static Schema;

    /// Appends the Avro binary datum to `out`, reusing its allocation.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let buf = std::mem::take(out);
        let mut config = SerializerConfig::new(Self::schema());
        *out = serde_avro_fast::to_datum(self, buf, &mut config).map_err(|source| {
            CodecError::Encode {
                record: Self::NAME,
                source,
            }
        })?;
        Ok(())
    }

    /// The Avro binary datum.
    fn to_avro(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(96);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a datum written with this type's own schema.
    fn from_avro(bytes: &[u8]) -> Result<Self, CodecError> {
        Self::from_avro_with(bytes, Self::schema())
    }

    /// Decodes a datum written with another (compatible) writer schema.
    /// Fields are matched by name, so added fields are skipped and fields
    /// with a serde default may be absent.
    fn from_avro_with(bytes: &[u8], writer: &Schema) -> Result<Self, CodecError> {
        serde_avro_fast::from_datum_slice(bytes, writer).map_err(|source| CodecError::Decode {
            record: Self::NAME,
            source,
        })
    }
}

macro_rules! avro_record {
    ($t:ty, $name:literal, $schema:expr) => {
        impl AvroRecord for $t {
            const NAME: &'static str = $name;
            fn schema() -> &'static Schema {
                &$schema
            }
        }
    };
}

avro_record!(
    SensorReading,
    "SensorReading",
    schema::SENSOR_READING_SCHEMA
);
avro_record!(AnomalyEvent, "AnomalyEvent", schema::ANOMALY_EVENT_SCHEMA);
avro_record!(DeadLetter, "DeadLetter", schema::DEAD_LETTER_SCHEMA);
avro_record!(
    ScoredReading,
    "ScoredReading",
    schema::SCORED_READING_SCHEMA
);
avro_record!(ChainRecord, "ChainRecord", schema::CHAIN_RECORD_SCHEMA);

/// Parses a writer schema received from a registry.
pub fn parse_schema(text: &str) -> Result<Schema, CodecError> {
    text.parse()
        .map_err(|e: serde_avro_fast::schema::SchemaError| CodecError::Schema(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use apache_avro::types::Value;

    pub(crate) fn reading() -> SensorReading {
        SensorReading {
            meter_id: "feeder-a-001".into(),
            timestamp: 1_767_225_600_000,
            voltage: 231.5,
            current: 5.01,
            temperature: 21.4,
            status: MeterStatus::Degraded,
        }
    }

    fn anomaly() -> AnomalyEvent {
        AnomalyEvent {
            anomaly_id: "a1".into(),
            anomaly_type: AnomalyType::VoltageSurge,
            severity: Severity::Critical,
            detected_at: 1_767_225_600_123,
            original_event: reading(),
            field: Some("voltage".into()),
            zscore: Some(5.2),
            window_mean: Some(230.0),
            window_stddev: Some(0.3),
            window_count: Some(299),
            threshold: Some(2.5),
            window_ms: Some(300_000),
        }
    }

    fn dead_letter() -> DeadLetter {
        DeadLetter {
            reason: reason::UNPARSEABLE.into(),
            message: "expected JSON or framed Avro".into(),
            stage: "validate".into(),
            source_topic: Some("readings".into()),
            source_partition: None,
            source_offset: Some(42),
            original: vec![0xff, 0x00, 0x10],
            first_failed_at: 1,
            attempts: 1,
        }
    }

    fn scored() -> ScoredReading {
        ScoredReading {
            reading: reading(),
            source_offset: 7,
            disposition: Disposition::Scored,
            scores: vec![FieldScore {
                field: "voltage".into(),
                value: 231.5,
                window_count: 12,
                window_mean: Some(230.0),
                window_stddev: None,
                zscore: None,
                anomalous: false,
            }],
            anomalies: vec![anomaly(), anomaly()],
        }
    }

    fn reference_schema(text: &str) -> apache_avro::Schema {
        apache_avro::Schema::parse_str(text).expect("apache-avro parses the schema")
    }

    /// Encodes with our codec, decodes with apache-avro, re-encodes with
    /// apache-avro and decodes with our codec: both directions must agree.
    fn cross_check<T: AvroRecord + PartialEq + std::fmt::Debug>(value: &T, text: &str) -> Value {
        let ours = value.to_avro().expect("encodes");
        let schema = reference_schema(text);
        let decoded = apache_avro::from_avro_datum(&schema, &mut ours.as_slice(), None)
            .expect("apache-avro decodes our bytes");
        let theirs = apache_avro::to_avro_datum(&schema, decoded.clone()).expect("re-encodes");
        assert_eq!(ours, theirs, "both implementations agree on the bytes");
        assert_eq!(&T::from_avro(&theirs).expect("decodes"), value);
        decoded
    }

    #[test]
    fn sensor_reading_round_trips_against_apache_avro() {
        let value = cross_check(&reading(), schema::SENSOR_READING);
        let Value::Record(fields) = value else {
            panic!("a record")
        };
        assert_eq!(
            fields[1],
            (
                "timestamp".into(),
                Value::TimestampMillis(1_767_225_600_000)
            )
        );
        assert_eq!(
            fields[5],
            ("status".into(), Value::Enum(1, "DEGRADED".into()))
        );
    }

    #[test]
    fn anomaly_event_round_trips_against_apache_avro() {
        cross_check(&anomaly(), schema::ANOMALY_EVENT);
        let mut status = anomaly();
        status.field = None;
        status.zscore = None;
        status.anomaly_type = AnomalyType::EquipmentRecovered;
        cross_check(&status, schema::ANOMALY_EVENT);
    }

    #[test]
    fn dead_letter_round_trips_against_apache_avro() {
        cross_check(&dead_letter(), schema::DEAD_LETTER);
    }

    #[test]
    fn scored_reading_round_trips_against_apache_avro() {
        cross_check(&scored(), schema::SCORED_READING);
    }

    #[test]
    fn chain_record_round_trips_every_variant() {
        for record in [
            ChainRecord::Reading(reading()),
            ChainRecord::Scored(scored()),
            ChainRecord::DeadLetter(dead_letter()),
        ] {
            cross_check(&record, schema::CHAIN_RECORD);
        }
    }

    #[test]
    fn embedded_named_types_match_their_own_files() {
        // AnomalyEvent, ScoredReading and ChainRecord inline SensorReading (and
        // more) so each file stands alone in a registry. The copies must not drift.
        let reading = reference_schema(schema::SENSOR_READING).canonical_form();
        let anomaly = reference_schema(schema::ANOMALY_EVENT);
        let apache_avro::Schema::Record(rec) = &anomaly else {
            panic!("record")
        };
        let original = &rec.fields[rec.lookup["original_event"]].schema;
        assert_eq!(original.canonical_form(), reading);

        let chain = reference_schema(schema::CHAIN_RECORD);
        let apache_avro::Schema::Union(union) = &chain else {
            panic!("union")
        };
        assert_eq!(union.variants()[0].canonical_form(), reading);
        let dead = reference_schema(schema::DEAD_LETTER).canonical_form();
        assert_eq!(union.variants()[2].canonical_form(), dead);
    }

    #[test]
    fn v1_data_reads_with_a_v2_reader_that_adds_a_defaulted_field() {
        let mut v2: serde_json::Value = serde_json::from_str(schema::SENSOR_READING).unwrap();
        v2["fields"].as_array_mut().unwrap().push(serde_json::json!(
            {"name": "phase", "type": "string", "default": "L1"}
        ));
        let v2 = reference_schema(&v2.to_string());
        let v1 = reference_schema(schema::SENSOR_READING);
        let bytes = reading().to_avro().unwrap();
        let value = apache_avro::from_avro_datum(&v1, &mut bytes.as_slice(), Some(&v2))
            .expect("v2 reader resolves v1 data");
        let Value::Record(fields) = value else {
            panic!("a record")
        };
        assert_eq!(
            fields.last().unwrap(),
            &("phase".into(), Value::String("L1".into()))
        );
        assert_eq!(
            fields[0],
            ("meter_id".into(), Value::String("feeder-a-001".into()))
        );
    }

    #[test]
    fn v2_data_reads_into_v1_types_through_its_writer_schema() {
        // The other direction, as validate does it: data written by a newer
        // producer decodes into today's types, skipping the added field.
        let mut v2: serde_json::Value = serde_json::from_str(schema::SENSOR_READING).unwrap();
        v2["fields"].as_array_mut().unwrap().push(serde_json::json!(
            {"name": "phase", "type": "string", "default": "L1"}
        ));
        let v2_text = v2.to_string();
        let v2_schema = reference_schema(&v2_text);
        let mut record = apache_avro::types::Record::new(&v2_schema).unwrap();
        let r = reading();
        record.put("meter_id", r.meter_id.as_str());
        record.put("timestamp", Value::TimestampMillis(r.timestamp));
        record.put("voltage", r.voltage);
        record.put("current", r.current);
        record.put("temperature", r.temperature);
        record.put("status", Value::Enum(1, "DEGRADED".into()));
        record.put("phase", "L3");
        let bytes = apache_avro::to_avro_datum(&v2_schema, record).unwrap();
        let writer = parse_schema(&v2_text).unwrap();
        assert_eq!(SensorReading::from_avro_with(&bytes, &writer).unwrap(), r);
    }

    #[test]
    fn truncated_and_garbage_datums_are_errors_not_panics() {
        let bytes = scored().to_avro().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                ScoredReading::from_avro(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(SensorReading::from_avro(&[0xff; 64]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_reading_round_trips(
            meter in "\\PC{0,40}", ts in proptest::num::i64::ANY,
            v in proptest::num::f64::ANY, c in proptest::num::f64::ANY, t in proptest::num::f64::ANY,
            s in 0u8..3,
        ) {
            let r = SensorReading {
                meter_id: meter, timestamp: ts, voltage: v, current: c, temperature: t,
                status: [MeterStatus::Ok, MeterStatus::Degraded, MeterStatus::Failure][s as usize],
            };
            let back = SensorReading::from_avro(&r.to_avro().unwrap()).unwrap();
            proptest::prop_assert_eq!(back.to_avro().unwrap(), r.to_avro().unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = ChainRecord::from_avro(&bytes);
            let _ = SensorReading::from_avro(&bytes);
        }
    }
}
