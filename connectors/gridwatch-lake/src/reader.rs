//! Reading the lake back: the committed `readings/` files of a date, and
//! their rows as the readings they were, for `gridwatch replay --from-lake`.
//!
//! Only committed data is read. A file whose last offset is past its
//! partition's `committed` offset, or that a pending flush names, belongs
//! to a flush that has not committed (its rows may be in part, or may come
//! again in another file after recovery), so it is skipped; this is the
//! same rule the sink's recovery applies.
//!
//! The live sink's files (`part-pP-FIRST-LAST.parquet`) are read, and the
//! files `gridwatch dlq replay` wrote into the gaps the live sink left
//! (`part-pP-FIRST-LAST-fill.parquet`, committed when the partition's fill
//! state lists their offsets and no pending fill names them); any other
//! name under `readings/` is ignored.
//!
//! Files are read whole into memory: each is one flush of one topic
//! partition for one hour, bounded by the sink's flush size.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use gridwatch_contracts::{MeterStatus, SensorReading};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::config::LakeConfig;
use crate::error::LakeError;
use crate::layout::{self, CommitState, FillState, Kind, TimePartition};
use crate::store::Lake;

/// One data file of `readings/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    /// Relative to the lake root.
    pub path: String,
    pub day: i64,
    pub hour: u8,
    /// The `scored` topic partition its rows came from.
    pub partition: u32,
    /// First and last source offsets, from the name.
    pub first: u64,
    pub last: u64,
    pub size: u64,
    /// Written by a DLQ replay into a gap (see [`crate::sink`]).
    pub fill: bool,
}

/// One archived reading.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeReading {
    pub reading: SensorReading,
    /// The partition of the row (of `scored`, which is the partition of
    /// `readings` the reading was in: both are partitioned by meter).
    pub partition: u32,
    /// Where the reading sat in the `readings` topic: with the partition,
    /// the position anomaly ids are derived from.
    pub reading_offset: i64,
}

/// What a date holds: its committed files, and how many were skipped.
#[derive(Debug, Clone, Default)]
pub struct DateFiles {
    /// Sorted by hour, then partition, then first offset.
    pub files: Vec<LakeFile>,
    /// Files of flushes that have not committed.
    pub uncommitted: usize,
}

/// A lake opened for reading.
#[derive(Debug, Clone)]
pub struct LakeReader {
    lake: Lake,
}

impl LakeReader {
    /// Opens the lake `config` points at (`prefix` names the config
    /// section in errors, e.g. `sinks.lake`).
    pub fn open(config: &LakeConfig, prefix: &str) -> Result<Self, LakeError> {
        Ok(Self {
            lake: Lake::open(config, prefix)?,
        })
    }

    /// `file:///…` or `s3://bucket/prefix`, without credentials.
    pub fn location(&self) -> &str {
        &self.lake.display
    }

    /// The committed `readings/` files of one UTC day (days since 1970-01-01).
    pub async fn reading_files(&self, day: i64) -> Result<DateFiles, LakeError> {
        let date = TimePartition { day, hour: None }.dirs();
        let folder = format!("{}/{date}", Kind::Readings.dir());
        let mut files: Vec<LakeFile> = self
            .lake
            .list(&folder)
            .await?
            .into_iter()
            .filter_map(|(path, size)| parse_file(&path, day, size))
            .collect();
        let mut states: HashMap<u32, CommitState> = HashMap::new();
        let mut fills: HashMap<u32, FillState> = HashMap::new();
        for (p, fill) in files.iter().map(|f| (f.partition, f.fill)) {
            if let std::collections::hash_map::Entry::Vacant(e) = states.entry(p) {
                e.insert(self.state(p).await?);
            }
            if fill && let std::collections::hash_map::Entry::Vacant(e) = fills.entry(p) {
                e.insert(self.fill_state(p).await?);
            }
        }
        let before = files.len();
        files.retain(|f| {
            if f.fill {
                let Some(fills) = fills.get(&f.partition) else {
                    return false;
                };
                let pending = fills
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.files.contains(&f.path));
                return !pending
                    && layout::in_ranges(&fills.filled, f.first)
                    && layout::in_ranges(&fills.filled, f.last);
            }
            let state = &states[&f.partition];
            let pending = state
                .pending
                .as_ref()
                .is_some_and(|p| p.files.contains(&f.path));
            !pending && state.committed.is_some_and(|c| f.last <= c)
        });
        let uncommitted = before - files.len();
        files.sort_by(|a, b| {
            (a.hour, a.partition, a.first, &a.path).cmp(&(b.hour, b.partition, b.first, &b.path))
        });
        Ok(DateFiles { files, uncommitted })
    }

    async fn fill_state(&self, partition: u32) -> Result<FillState, LakeError> {
        let path = layout::fill_state_file(Kind::Readings, partition);
        match self.lake.get(&path).await? {
            None => Ok(FillState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| LakeError::State {
                path,
                problem: e.to_string(),
            }),
        }
    }

    async fn state(&self, partition: u32) -> Result<CommitState, LakeError> {
        let path = layout::state_file(Kind::Readings, partition);
        match self.lake.get(&path).await? {
            None => Ok(CommitState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| LakeError::State {
                path,
                problem: e.to_string(),
            }),
        }
    }

    /// Every row of one file, in file order.
    pub async fn read(&self, file: &LakeFile) -> Result<Vec<LakeReading>, LakeError> {
        let bytes = self
            .lake
            .get(&file.path)
            .await?
            .ok_or_else(|| LakeError::Decode {
                path: file.path.clone(),
                problem: "the file disappeared while reading".into(),
            })?;
        decode(&file.path, bytes, file.partition)
    }
}

/// `readings/date=D/hour=HH/part-pP-F-L.parquet`, or `None` for anything else.
fn parse_file(path: &str, day: i64, size: u64) -> Option<LakeFile> {
    let mut parts = path.rsplit('/');
    let name = parts.next()?;
    let hour: u8 = parts.next()?.strip_prefix("hour=")?.parse().ok()?;
    let rest = name.strip_prefix("part-p")?.strip_suffix(".parquet")?;
    let mut fields = rest.split('-');
    let partition = fields.next()?.parse().ok()?;
    let first = fields.next()?.parse().ok()?;
    let last = fields.next()?.parse().ok()?;
    let fill = match fields.next() {
        None => false,
        Some("fill") => true,
        Some(_) => return None,
    };
    if fields.next().is_some() || hour > 23 {
        return None;
    }
    Some(LakeFile {
        path: path.to_owned(),
        day,
        hour,
        partition,
        first,
        last,
        size,
        fill,
    })
}

/// The columns a reading needs, in the lake's own schema.
const COLUMNS: [&str; 8] = [
    "meter_id",
    "event_time",
    "voltage",
    "current",
    "temperature",
    "status",
    "reading_offset",
    "source_partition",
];

fn decode(path: &str, bytes: Bytes, partition: u32) -> Result<Vec<LakeReading>, LakeError> {
    let error = |problem: String| LakeError::Decode {
        path: path.to_owned(),
        problem,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| error(format!("not a Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(COLUMNS.len());
    for name in COLUMNS {
        roots.push(
            schema
                .index_of(name)
                .map_err(|_| error(format!("no `{name}` column: not a lake readings file")))?,
        );
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(|e| error(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| error(e.to_string()))?;
        rows(&batch, partition, &mut out).map_err(error)?;
    }
    Ok(out)
}

fn rows(batch: &RecordBatch, partition: u32, out: &mut Vec<LakeReading>) -> Result<(), String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("no `{name}` column"))
    };
    let wrong = |name: &str| format!("`{name}` does not have the lake's type");
    let meter = col("meter_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong("meter_id"))?;
    let time = col("event_time")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| wrong("event_time"))?;
    let number = |name: &str| {
        col(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| wrong(name))
    };
    let (voltage, current, temperature) = (
        number("voltage")?,
        number("current")?,
        number("temperature")?,
    );
    let status = col("status")?
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong("status"))?;
    let offset = col("reading_offset")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| wrong("reading_offset"))?;
    let source_partition = col("source_partition")?
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| wrong("source_partition"))?;
    out.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        if meter.is_null(i) || time.is_null(i) || offset.is_null(i) {
            return Err(format!("row {i} has a null identity column"));
        }
        let status_text = if status.is_null(i) {
            "OK"
        } else {
            status.value(i)
        };
        let status = match status_text {
            "DEGRADED" => MeterStatus::Degraded,
            "FAILURE" => MeterStatus::Failure,
            _ => MeterStatus::Ok,
        };
        out.push(LakeReading {
            reading: SensorReading {
                meter_id: meter.value(i).to_owned(),
                timestamp: time.value(i),
                voltage: voltage.value(i),
                current: current.value(i),
                temperature: temperature.value(i),
                status,
            },
            partition: u32::try_from(source_partition.value(i)).unwrap_or(partition),
            reading_offset: offset.value(i),
        });
    }
    Ok(())
}

/// `YYYY-MM-DD` to days since 1970-01-01 (UTC), or `None` if it is not a
/// real date in that form.
pub fn parse_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let y: i64 = text.get(0..4)?.parse().ok()?;
    let m: i64 = text.get(5..7)?.parse().ok()?;
    let d: i64 = text.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // 2026-02-30 would land on March 2nd: the round trip refuses it.
    (TimePartition { day, hour: None }.date() == text).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-01-01"), Some(20_454));
        assert_eq!(parse_date("2000-02-29"), Some(11_016));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "",
            "2026/01/01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        for day in -800..30_000 {
            let text = TimePartition { day, hour: None }.date();
            assert_eq!(parse_date(&text), Some(day), "{text}");
        }
    }

    #[test]
    fn file_names_parse() {
        let f = parse_file(
            "readings/date=2026-03-01/hour=23/part-p3-00000000000000000009-00000000000000000120.parquet",
            7,
            10,
        )
        .unwrap();
        assert_eq!((f.hour, f.partition, f.first, f.last), (23, 3, 9, 120));
        assert!(!f.fill);
        let fill = parse_file(
            "readings/date=2026-03-01/hour=23/part-p3-00000000000000000009-00000000000000000120-fill.parquet",
            7,
            10,
        )
        .unwrap();
        assert!(fill.fill && fill.first == 9 && fill.last == 120);
        assert!(
            parse_file(
                "readings/date=2026-03-01/hour=23/part-p3-1-2-x.parquet",
                7,
                1
            )
            .is_none()
        );
        assert!(parse_file("readings/date=2026-03-01/hour=23/x.parquet", 7, 1).is_none());
        assert!(parse_file("readings/date=2026-03-01/hour=24/part-p0-1-2.parquet", 7, 1).is_none());
    }
}
