//! Rows and their Parquet encoding.
//!
//! Records are decoded once, in [`Sink::write`](gridwatch_connector::Sink::write),
//! into compact rows ([`ReadingRow`], [`AnomalyRow`]); a flush turns each
//! event-time partition's rows into one Arrow batch and one Parquet file.
//! The schemas are flat (no lists, no structs) so that any SQL engine can
//! query them without unnesting; see the crate docs for every column.
//!
//! The output is a pure function of the rows and the compression, so a
//! replayed flush writes byte-identical files.

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use gridwatch_contracts::fast::{ScoreRef, ScoredRef};
use gridwatch_contracts::{AnomalyEvent, Disposition, ScoredReading, SensorReading, Severity};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::config::Compression;

/// The fields the detector scores, in column order.
pub const SCORED_FIELDS: [&str; 3] = ["voltage", "current", "temperature"];

/// One field's evidence, as in [`gridwatch_contracts::FieldScore`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldStats {
    pub window_count: i32,
    pub window_mean: Option<f64>,
    pub window_stddev: Option<f64>,
    pub zscore: Option<f64>,
    pub anomalous: bool,
}

/// One processed reading, ready to archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingRow {
    /// Source offset in the `scored` topic: the row's identity.
    pub offset: u64,
    /// When the record was appended to its topic (epoch ms).
    pub appended_at: i64,
    pub reading: SensorReading,
    /// Where the reading itself sits in the `readings` topic.
    pub reading_offset: i64,
    pub disposition: Disposition,
    pub anomalous: bool,
    pub anomaly_count: i32,
    /// The anomaly types, comma-separated, in the detector's order.
    pub anomaly_types: Option<String>,
    pub max_severity: Option<Severity>,
    /// Indexed like [`SCORED_FIELDS`]; `None` when the detector sent no
    /// score for the field (a late or failed reading).
    pub scores: [Option<FieldStats>; 3],
}

impl ReadingRow {
    /// Flattens a scored reading. Scores for fields other than
    /// [`SCORED_FIELDS`] (from a future detector) are not archived.
    pub fn new(offset: u64, appended_at: i64, scored: ScoredReading) -> Self {
        let (scores, any_anomalous_field) = flatten_scores(scored.scores.iter().map(ScoreRef::of));
        let anomaly_types = (!scored.anomalies.is_empty()).then(|| {
            scored
                .anomalies
                .iter()
                .map(|a| a.anomaly_type.as_str())
                .collect::<Vec<_>>()
                .join(",")
        });
        Self {
            offset,
            appended_at,
            reading: scored.reading,
            reading_offset: scored.source_offset,
            disposition: scored.disposition,
            anomalous: any_anomalous_field || !scored.anomalies.is_empty(),
            anomaly_count: i32::try_from(scored.anomalies.len()).unwrap_or(i32::MAX),
            anomaly_types,
            max_severity: scored.anomalies.iter().map(|a| a.severity).max(),
            scores,
        }
    }

    /// Flattens a scored reading without anomalies, read where it lies
    /// ([`gridwatch_contracts::fast::decode_scored_reading`]): the lake's every-reading path,
    /// without the owned strings of a serde decode. Gives the same row as
    /// [`ReadingRow::new`].
    pub fn from_ref(offset: u64, appended_at: i64, scored: &ScoredRef<'_>) -> Self {
        let (scores, any_anomalous_field) = flatten_scores(scored.scores().iter().copied());
        Self {
            offset,
            appended_at,
            reading: scored.reading.to_owned(),
            reading_offset: scored.source_offset,
            disposition: scored.disposition,
            anomalous: any_anomalous_field,
            anomaly_count: 0,
            anomaly_types: None,
            max_severity: None,
            scores,
        }
    }

    /// The reading's event time, which partitions it.
    pub fn event_time(&self) -> i64 {
        self.reading.timestamp
    }
}

/// The scores by [`SCORED_FIELDS`] slot, and whether any field (archived or
/// not) was anomalous.
fn flatten_scores<'a>(
    scores: impl Iterator<Item = ScoreRef<'a>>,
) -> ([Option<FieldStats>; 3], bool) {
    let mut slots: [Option<FieldStats>; 3] = Default::default();
    let mut any_anomalous_field = false;
    for s in scores {
        any_anomalous_field |= s.anomalous;
        if let Some(i) = SCORED_FIELDS.iter().position(|f| *f == s.field) {
            slots[i] = Some(FieldStats {
                window_count: s.window_count,
                window_mean: s.window_mean,
                window_stddev: s.window_stddev,
                zscore: s.zscore,
                anomalous: s.anomalous,
            });
        }
    }
    (slots, any_anomalous_field)
}

/// One anomaly, ready to archive.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRow {
    /// Source offset in the `anomalies` topic: the row's identity.
    pub offset: u64,
    pub appended_at: i64,
    pub event: AnomalyEvent,
}

impl AnomalyRow {
    /// The event time of the reading that raised it, which partitions it.
    pub fn event_time(&self) -> i64 {
        self.event.original_event.timestamp
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn provenance_fields() -> Vec<Field> {
    vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new("appended_at", timestamp(), false),
    ]
}

fn reading_fields() -> Vec<Field> {
    vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("event_time", timestamp(), false),
        Field::new("voltage", DataType::Float64, false),
        Field::new("current", DataType::Float64, false),
        Field::new("temperature", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
    ]
}

/// The `readings/` schema.
pub static READINGS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = provenance_fields();
    fields.extend(reading_fields());
    fields.extend([
        Field::new("reading_offset", DataType::Int64, false),
        Field::new("disposition", DataType::Utf8, false),
        Field::new("anomalous", DataType::Boolean, false),
        Field::new("anomaly_count", DataType::Int32, false),
        Field::new("anomaly_types", DataType::Utf8, true),
        Field::new("max_severity", DataType::Utf8, true),
    ]);
    for f in SCORED_FIELDS {
        fields.extend([
            Field::new(format!("{f}_window_count"), DataType::Int32, true),
            Field::new(format!("{f}_window_mean"), DataType::Float64, true),
            Field::new(format!("{f}_window_stddev"), DataType::Float64, true),
            Field::new(format!("{f}_zscore"), DataType::Float64, true),
            Field::new(format!("{f}_anomalous"), DataType::Boolean, true),
        ]);
    }
    Arc::new(Schema::new(fields))
});

/// The `anomalies/` schema.
pub static ANOMALIES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = provenance_fields();
    fields.extend([
        Field::new("anomaly_id", DataType::Utf8, false),
        Field::new("anomaly_type", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("detected_at", timestamp(), false),
    ]);
    fields.extend(reading_fields());
    fields.extend([
        Field::new("field", DataType::Utf8, true),
        Field::new("zscore", DataType::Float64, true),
        Field::new("window_mean", DataType::Float64, true),
        Field::new("window_stddev", DataType::Float64, true),
        Field::new("window_count", DataType::Int32, true),
        Field::new("threshold", DataType::Float64, true),
        Field::new("window_ms", DataType::Int64, true),
    ]);
    Arc::new(Schema::new(fields))
});

/// Where the rows of a file came from; the same for every row.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub topic: &'a str,
    pub partition: u32,
}

fn provenance_columns(
    p: Provenance<'_>,
    offsets: impl Iterator<Item = (u64, i64)> + Clone,
    rows: usize,
) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            p.topic, rows,
        ))),
        Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(
            i32::try_from(p.partition).unwrap_or(i32::MAX),
            rows,
        ))),
        Arc::new(Int64Array::from_iter_values(
            offsets
                .clone()
                .map(|(o, _)| i64::try_from(o).unwrap_or(i64::MAX)),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(offsets.map(|(_, t)| t))
                .with_timezone("UTC"),
        ),
    ]
}

fn reading_columns<'a>(readings: impl Iterator<Item = &'a SensorReading> + Clone) -> Vec<ArrayRef> {
    let r = readings;
    vec![
        Arc::new(StringArray::from_iter_values(
            r.clone().map(|r| r.meter_id.as_str()),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(r.clone().map(|r| r.timestamp))
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter_values(r.clone().map(|r| r.voltage))),
        Arc::new(Float64Array::from_iter_values(r.clone().map(|r| r.current))),
        Arc::new(Float64Array::from_iter_values(
            r.clone().map(|r| r.temperature),
        )),
        Arc::new(StringArray::from_iter_values(r.map(|r| r.status.as_str()))),
    ]
}

/// The readings rows as one Arrow batch.
pub fn readings_batch(
    p: Provenance<'_>,
    rows: &[&ReadingRow],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut columns = provenance_columns(
        p,
        rows.iter().map(|r| (r.offset, r.appended_at)),
        rows.len(),
    );
    columns.extend(reading_columns(rows.iter().map(|r| &r.reading)));
    columns.extend([
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.reading_offset),
        )) as ArrayRef,
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.disposition.as_str()),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.anomalous)),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.anomaly_count),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.anomaly_types.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.max_severity.map(|s| s.as_str())),
        )),
    ]);
    for i in 0..SCORED_FIELDS.len() {
        let stats = || rows.iter().map(move |r| r.scores[i].as_ref());
        columns.extend([
            Arc::new(Int32Array::from_iter(
                stats().map(|s| s.map(|s| s.window_count)),
            )) as ArrayRef,
            Arc::new(Float64Array::from_iter(
                stats().map(|s| s.and_then(|s| s.window_mean)),
            )),
            Arc::new(Float64Array::from_iter(
                stats().map(|s| s.and_then(|s| s.window_stddev)),
            )),
            Arc::new(Float64Array::from_iter(
                stats().map(|s| s.and_then(|s| s.zscore)),
            )),
            Arc::new(BooleanArray::from_iter(
                stats().map(|s| s.map(|s| s.anomalous)),
            )),
        ]);
    }
    RecordBatch::try_new(READINGS_SCHEMA.clone(), columns)
}

/// The anomaly rows as one Arrow batch.
pub fn anomalies_batch(
    p: Provenance<'_>,
    rows: &[&AnomalyRow],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let e = || rows.iter().map(|r| &r.event);
    let mut columns = provenance_columns(
        p,
        rows.iter().map(|r| (r.offset, r.appended_at)),
        rows.len(),
    );
    columns.extend([
        Arc::new(StringArray::from_iter_values(
            e().map(|e| e.anomaly_id.as_str()),
        )) as ArrayRef,
        Arc::new(StringArray::from_iter_values(
            e().map(|e| e.anomaly_type.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            e().map(|e| e.severity.as_str()),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(e().map(|e| e.detected_at))
                .with_timezone("UTC"),
        ),
    ]);
    columns.extend(reading_columns(e().map(|e| &e.original_event)));
    columns.extend([
        Arc::new(StringArray::from_iter(e().map(|e| e.field.as_deref()))) as ArrayRef,
        Arc::new(Float64Array::from_iter(e().map(|e| e.zscore))),
        Arc::new(Float64Array::from_iter(e().map(|e| e.window_mean))),
        Arc::new(Float64Array::from_iter(e().map(|e| e.window_stddev))),
        Arc::new(Int32Array::from_iter(e().map(|e| e.window_count))),
        Arc::new(Float64Array::from_iter(e().map(|e| e.threshold))),
        Arc::new(Int64Array::from_iter(e().map(|e| e.window_ms))),
    ]);
    RecordBatch::try_new(ANOMALIES_SCHEMA.clone(), columns)
}

/// Writer settings: the codec, one row group per file (files are one
/// flush of one hour, small enough), and the provenance in the footer.
pub fn writer_properties(
    compression: Compression,
    p: Provenance<'_>,
    first: u64,
    last: u64,
) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
        Compression::Snappy => Codec::SNAPPY,
    };
    WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(1_000_000))
        .set_created_by(concat!("gridwatch-lake ", env!("CARGO_PKG_VERSION")).to_owned())
        .set_key_value_metadata(Some(vec![
            KeyValue::new("gridwatch.source_topic".to_owned(), p.topic.to_owned()),
            KeyValue::new(
                "gridwatch.source_partition".to_owned(),
                p.partition.to_string(),
            ),
            KeyValue::new("gridwatch.first_offset".to_owned(), first.to_string()),
            KeyValue::new("gridwatch.last_offset".to_owned(), last.to_string()),
        ]))
        .build()
}

/// Encodes one batch as a complete Parquet file.
pub fn to_parquet(
    batch: &RecordBatch,
    properties: WriterProperties,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4 + 4096);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use gridwatch_contracts::codec::AvroRecord;
    use gridwatch_contracts::{FieldScore, MeterStatus};

    use super::*;

    #[test]
    fn a_row_read_where_it_lies_equals_the_serde_one() {
        let score = |field: &str, anomalous: bool| FieldScore {
            field: field.into(),
            value: 231.4,
            window_count: 120,
            window_mean: Some(230.9),
            window_stddev: (field != "current").then_some(0.4),
            zscore: Some(1.25),
            anomalous,
        };
        for (scores, disposition) in [
            (vec![], Disposition::ExcludedFailure),
            (vec![score("voltage", false)], Disposition::Late),
            (
                vec![
                    score("temperature", true),
                    score("current", false),
                    score("voltage", false),
                ],
                Disposition::Scored,
            ),
            // A field a future detector scores is not archived either way.
            (vec![score("frequency", true)], Disposition::Scored),
        ] {
            let scored = ScoredReading {
                reading: SensorReading {
                    meter_id: "feeder-a-001".into(),
                    timestamp: 1_767_225_600_000,
                    voltage: 231.4,
                    current: 5.012,
                    temperature: 21.05,
                    status: MeterStatus::Degraded,
                },
                source_offset: 42,
                disposition,
                scores,
                anomalies: vec![],
            };
            let datum = scored.to_avro().unwrap();
            let view = gridwatch_contracts::fast::decode_scored_reading(&datum).unwrap();
            assert_eq!(
                ReadingRow::from_ref(7, 99, &view),
                ReadingRow::new(7, 99, scored)
            );
        }
    }
}
