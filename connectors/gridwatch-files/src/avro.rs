//! Avro object container files of `SensorReading`, or of `ScoredReading`
//! (its `reading`) or `AnomalyEvent` (its `original_event`), as the lake,
//! `gridwatch score` and other Avro tools write them. Fields are matched
//! by name, so writer schemas with extra fields or other numeric widths
//! read too.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::types::Value;
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{MeterStatus, SensorReading};

use crate::progress::{Counting, Progress};
use crate::{Batch, FileError, Position, RecordError, counted_file, parse_status, parse_timestamp};

pub(crate) struct AvroReader {
    path: PathBuf,
    reader: apache_avro::Reader<'static, BufReader<Counting<File>>>,
    /// The field that holds the reading, or `None` when the record is one.
    inner: Option<&'static str>,
    index: u64,
    batch: usize,
    pending: Option<FileError>,
}

const READING_FIELDS: [&str; 5] = ["meter_id", "timestamp", "voltage", "current", "temperature"];

impl AvroReader {
    pub(crate) fn open(path: &Path, progress: &Progress, batch: usize) -> Result<Self, FileError> {
        let reader = apache_avro::Reader::new(counted_file(path, progress)?).map_err(|e| {
            FileError::NotFormat {
                path: path.to_path_buf(),
                format: crate::Format::Avro,
                detail: e.to_string(),
            }
        })?;
        let schema_error = |detail: String| FileError::Schema {
            path: path.to_path_buf(),
            detail,
        };
        let Schema::Record(record) = reader.writer_schema() else {
            return Err(schema_error(format!(
                "Avro writer schema is not a record but {:?}",
                reader.writer_schema()
            )));
        };
        let has = |f: &str| record.lookup.contains_key(f);
        let inner = if READING_FIELDS.iter().all(|f| has(f)) {
            None
        } else if has("reading") {
            Some("reading")
        } else if has("original_event") {
            Some("original_event")
        } else {
            return Err(schema_error(format!(
                "Avro record {} is neither a SensorReading nor holds one \
                 (`reading` or `original_event`)",
                record.name
            )));
        };
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            inner,
            index: 0,
            batch,
            pending: None,
        })
    }

    pub(crate) fn next_batch(&mut self) -> Result<Option<Batch>, FileError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let mut out = Batch::default();
        while out.readings.len() + out.errors.len() < self.batch {
            let Some(value) = self.reader.next() else {
                break;
            };
            let position = Position {
                record: self.index,
                line: None,
                byte: None,
            };
            self.index += 1;
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    let err = FileError::Corrupt {
                        path: self.path.clone(),
                        position,
                        detail: e.to_string(),
                    };
                    return crate::fail(out, err, &mut self.pending);
                }
            };
            match to_reading(&value, self.inner) {
                Ok(r) => out.readings.push(r),
                Err(message) => out.errors.push(RecordError {
                    position,
                    reason: reason::SCHEMA_MISMATCH,
                    message,
                    original: crate::capped(format!("{value:?}").as_bytes()),
                }),
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn field<'v>(fields: &'v [(String, Value)], name: &str) -> Result<&'v Value, String> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| unwrap_union(v))
        .ok_or_else(|| format!("record has no `{name}`"))
}

fn to_reading(value: &Value, inner: Option<&str>) -> Result<SensorReading, String> {
    let Value::Record(fields) = unwrap_union(value) else {
        return Err("datum is not a record".into());
    };
    let fields = match inner {
        None => fields,
        Some(name) => match field(fields, name)? {
            Value::Record(f) => f,
            other => return Err(format!("`{name}` is not a record but {other:?}")),
        },
    };
    let number = |name: &str| -> Result<f64, String> {
        match field(fields, name)? {
            Value::Double(x) => Ok(*x),
            Value::Float(x) => Ok(f64::from(*x)),
            Value::Int(x) => Ok(f64::from(*x)),
            Value::Long(x) => Ok(*x as f64),
            other => Err(format!("`{name}` is not a number but {other:?}")),
        }
    };
    let timestamp = match field(fields, "timestamp")? {
        Value::Long(ms) | Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => *ms,
        Value::Int(ms) => i64::from(*ms),
        Value::TimestampMicros(us) | Value::LocalTimestampMicros(us) => us.div_euclid(1000),
        Value::TimestampNanos(ns) | Value::LocalTimestampNanos(ns) => ns.div_euclid(1_000_000),
        Value::String(s) => parse_timestamp(s)
            .ok_or_else(|| format!("timestamp {s:?} is neither epoch milliseconds nor RFC 3339"))?,
        other => return Err(format!("`timestamp` is not a time but {other:?}")),
    };
    let meter_id = match field(fields, "meter_id")? {
        Value::String(s) => s.clone(),
        other => return Err(format!("`meter_id` is not a string but {other:?}")),
    };
    let status = match field(fields, "status") {
        Err(_) | Ok(Value::Null) => MeterStatus::Ok,
        Ok(Value::Enum(_, s) | Value::String(s)) => {
            parse_status(s).ok_or_else(|| format!("status {s:?} is not OK, DEGRADED or FAILURE"))?
        }
        Ok(other) => return Err(format!("`status` is not a symbol but {other:?}")),
    };
    Ok(SensorReading {
        meter_id,
        timestamp,
        voltage: number("voltage")?,
        current: number("current")?,
        temperature: number("temperature")?,
        status,
    })
}
