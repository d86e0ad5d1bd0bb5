//! Parquet with flat columns, read by name: `meter_id`, `timestamp` (or the
//! lake's `event_time`), `voltage`, `current`, `temperature` and an
//! optional `status`. Other columns, such as the lake's provenance and
//! scores, are not even decoded. Any string, numeric or timestamp type
//! the values fit is accepted.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{MeterStatus, SensorReading};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::{ChunkReader, Length};

use crate::progress::{Counting, Progress};
use crate::{Batch, FileError, Position, RecordError, parse_status, parse_timestamp};

pub(crate) struct ParquetReader {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    names: Names,
    row: u64,
}

/// The column names found for each field.
struct Names {
    time: &'static str,
    status: bool,
}

/// A file whose reads count into a [`Progress`].
struct CountingFile {
    file: File,
    progress: Progress,
}

impl Length for CountingFile {
    fn len(&self) -> u64 {
        self.file.len()
    }
}

impl ChunkReader for CountingFile {
    type T = Counting<<File as ChunkReader>::T>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(Counting::new(
            self.file.get_read(start)?,
            self.progress.clone(),
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.file.get_bytes(start, length)?;
        self.progress.add_bytes(length as u64);
        Ok(bytes)
    }
}

const NUMBERS: [&str; 3] = ["voltage", "current", "temperature"];

impl ParquetReader {
    pub(crate) fn open(path: &Path, progress: &Progress, batch: usize) -> Result<Self, FileError> {
        let file = File::open(path).map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let chunks = CountingFile {
            file,
            progress: progress.clone(),
        };
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(chunks).map_err(|e| FileError::NotFormat {
                path: path.to_path_buf(),
                format: crate::Format::Parquet,
                detail: e.to_string(),
            })?;
        let schema = builder.schema().clone();
        let found: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let schema_error = |detail: String| FileError::Schema {
            path: path.to_path_buf(),
            detail: format!("{detail} (columns: {})", found.join(",")),
        };
        let index = |name: &str| schema.index_of(name).ok();
        let time = ["timestamp", "event_time"]
            .into_iter()
            .find(|n| index(n).is_some())
            .ok_or_else(|| schema_error("Parquet file has no `timestamp` column".into()))?;
        let mut roots = Vec::new();
        for name in ["meter_id", time].into_iter().chain(NUMBERS) {
            let i = index(name)
                .ok_or_else(|| schema_error(format!("Parquet file has no `{name}` column")))?;
            roots.push(i);
        }
        let status = index("status");
        roots.extend(status);
        let time_type = schema.field(index(time).unwrap_or_default()).data_type();
        if !time_type_ok(time_type) {
            return Err(schema_error(format!(
                "`{time}` is {time_type}, not a timestamp, integer or string"
            )));
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch)
            .build()
            .map_err(|e| schema_error(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            names: Names {
                time,
                status: status.is_some(),
            },
            row: 0,
        })
    }

    pub(crate) fn next_batch(&mut self) -> Result<Option<Batch>, FileError> {
        let Some(result) = self.reader.next() else {
            return Ok(None);
        };
        let position = Position {
            record: self.row,
            line: None,
            byte: None,
        };
        let rb = result.map_err(|e| FileError::Corrupt {
            path: self.path.clone(),
            position,
            detail: e.to_string(),
        })?;
        let batch = convert(&rb, &self.names, self.row).map_err(|detail| FileError::Corrupt {
            path: self.path.clone(),
            position,
            detail,
        })?;
        self.row += rb.num_rows() as u64;
        Ok(Some(batch))
    }
}

fn time_type_ok(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _)
            | DataType::Date64
            | DataType::Int64
            | DataType::Int32
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    ) || matches!(t, DataType::Dictionary(_, v) if time_type_ok(v))
}

fn column(rb: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, String> {
    let col = rb
        .column_by_name(name)
        .ok_or_else(|| format!("column `{name}` missing from a batch"))?;
    arrow_cast::cast(col, to).map_err(|e| format!("column `{name}`: {e}"))
}

/// The batch's rows as readings; rows with a null or unconvertible value
/// become record errors.
fn convert(rb: &RecordBatch, names: &Names, first_row: u64) -> Result<Batch, String> {
    let meter = column(rb, "meter_id", &DataType::Utf8)?;
    let meter = meter.as_string::<i32>();
    let time_col = rb
        .column_by_name(names.time)
        .ok_or_else(|| format!("column `{}` missing from a batch", names.time))?;
    let time_type = match time_col.data_type() {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        t => t.clone(),
    };
    // Epoch milliseconds, or text to parse per row.
    let (millis, time_text): (Option<ArrayRef>, Option<ArrayRef>) = match time_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (None, Some(column(rb, names.time, &DataType::Utf8)?))
        }
        DataType::Timestamp(_, _) => {
            let ms = column(
                rb,
                names.time,
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?;
            let ms = arrow_cast::cast(&ms, &DataType::Int64).map_err(|e| e.to_string())?;
            (Some(ms), None)
        }
        _ => (Some(column(rb, names.time, &DataType::Int64)?), None),
    };
    let numbers = NUMBERS
        .iter()
        .map(|n| column(rb, n, &DataType::Float64))
        .collect::<Result<Vec<_>, _>>()?;
    let status = if names.status {
        Some(column(rb, "status", &DataType::Utf8)?)
    } else {
        None
    };

    let mut out = Batch::default();
    out.readings.reserve(rb.num_rows());
    for row in 0..rb.num_rows() {
        let position = Position {
            record: first_row + row as u64,
            line: None,
            byte: None,
        };
        let reading = (|| -> Result<SensorReading, (&'static str, String)> {
            let null = |name: &str| (reason::SCHEMA_MISMATCH, format!("`{name}` is null"));
            if meter.is_null(row) {
                return Err(null("meter_id"));
            }
            let timestamp = match (&millis, &time_text) {
                (Some(ms), _) => {
                    let ms = ms.as_primitive::<Int64Type>();
                    if ms.is_null(row) {
                        return Err(null(names.time));
                    }
                    ms.value(row)
                }
                (None, Some(text)) => {
                    let text = text.as_string::<i32>();
                    if text.is_null(row) {
                        return Err(null(names.time));
                    }
                    let t = text.value(row);
                    parse_timestamp(t).ok_or_else(|| {
                        (
                            reason::TIMESTAMP_OUT_OF_RANGE,
                            format!("timestamp {t:?} is neither epoch milliseconds nor RFC 3339"),
                        )
                    })?
                }
                (None, None) => return Err(null(names.time)),
            };
            let mut values = [0.0; 3];
            for (i, col) in numbers.iter().enumerate() {
                let col = col.as_primitive::<Float64Type>();
                if col.is_null(row) {
                    return Err(null(NUMBERS[i]));
                }
                values[i] = col.value(row);
            }
            let status = match &status {
                Some(s) => {
                    let s = s.as_string::<i32>();
                    if s.is_null(row) {
                        MeterStatus::Ok
                    } else {
                        let text = s.value(row);
                        parse_status(text).ok_or_else(|| {
                            (
                                reason::SCHEMA_MISMATCH,
                                format!("status {text:?} is not OK, DEGRADED or FAILURE"),
                            )
                        })?
                    }
                }
                None => MeterStatus::Ok,
            };
            Ok(SensorReading {
                meter_id: meter.value(row).to_owned(),
                timestamp,
                voltage: values[0],
                current: values[1],
                temperature: values[2],
                status,
            })
        })();
        match reading {
            Ok(r) => out.readings.push(r),
            Err((reason, message)) => out.errors.push(RecordError {
                position,
                reason,
                message,
                original: crate::capped(render_row(rb, row).as_bytes()),
            }),
        }
    }
    Ok(out)
}

/// A row as `name=value` pairs, for a dead letter's original.
fn render_row(rb: &RecordBatch, row: usize) -> String {
    let schema = rb.schema();
    let options = arrow_cast::display::FormatOptions::default().with_null("null");
    schema
        .fields()
        .iter()
        .zip(rb.columns())
        .map(|(f, col)| {
            let value = arrow_cast::display::ArrayFormatter::try_new(col.as_ref(), &options)
                .map(|fmt| fmt.value(row).to_string())
                .unwrap_or_default();
            format!("{}={value}", f.name())
        })
        .collect::<Vec<_>>()
        .join(",")
}
