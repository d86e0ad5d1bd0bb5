//! CSV with a header row: `meter_id,timestamp,voltage,current,temperature`
//! and an optional `status`, in any order; other columns are ignored.
//! Timestamps are epoch milliseconds or RFC 3339.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use gridwatch_contracts::SensorReading;
use gridwatch_contracts::model::reason;

use crate::progress::{Counting, Progress};
use crate::{Batch, FileError, Position, RecordError, counted_file, parse_status, parse_timestamp};

pub(crate) struct CsvReader {
    path: PathBuf,
    reader: csv::Reader<BufReader<Counting<File>>>,
    columns: Columns,
    record: csv::ByteRecord,
    index: u64,
    batch: usize,
    /// Added to the csv crate's line numbers: 1 for CRLF files, whose
    /// `\n` the crate counts only when it reads the next record.
    line_fix: u64,
    pending: Option<FileError>,
}

/// Column indices of the fields a reading needs.
struct Columns {
    meter_id: usize,
    timestamp: usize,
    voltage: usize,
    current: usize,
    temperature: usize,
    status: Option<usize>,
}

impl CsvReader {
    pub(crate) fn open(path: &Path, progress: &Progress, batch: usize) -> Result<Self, FileError> {
        let line_fix = u64::from(first_line_ends_in_crlf(path));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(counted_file(path, progress)?);
        let headers = reader
            .byte_headers()
            .map_err(|e| FileError::Schema {
                path: path.to_path_buf(),
                detail: format!("CSV header row does not read: {e}"),
            })?
            .clone();
        let names: Vec<String> = headers
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
        let need = |wanted: &[&str]| {
            find(wanted).ok_or_else(|| FileError::Schema {
                path: path.to_path_buf(),
                detail: format!(
                    "CSV header has no `{}` column (found: {})",
                    wanted[0],
                    names.join(",")
                ),
            })
        };
        let columns = Columns {
            meter_id: need(&["meter_id"])?,
            timestamp: need(&["timestamp", "event_time"])?,
            voltage: need(&["voltage"])?,
            current: need(&["current"])?,
            temperature: need(&["temperature"])?,
            status: find(&["status"]),
        };
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            columns,
            record: csv::ByteRecord::new(),
            index: 0,
            batch,
            line_fix,
            pending: None,
        })
    }

    pub(crate) fn next_batch(&mut self) -> Result<Option<Batch>, FileError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let mut out = Batch::default();
        while out.readings.len() + out.errors.len() < self.batch {
            let read = self.reader.read_byte_record(&mut self.record);
            let index = self.index;
            match read {
                Ok(false) => break,
                Ok(true) => {
                    self.index += 1;
                    let pos = self.record.position();
                    let position = Position {
                        record: index,
                        line: pos.map(|p| p.line() + self.line_fix),
                        byte: pos.map(|p| p.byte()),
                    };
                    match self.parse() {
                        Ok(reading) => out.readings.push(reading),
                        Err((reason, message)) => out.errors.push(RecordError {
                            position,
                            reason,
                            message,
                            original: crate::capped(&join(&self.record)),
                        }),
                    }
                }
                Err(e) => {
                    let position = Position {
                        record: index,
                        line: e.position().map(|p| p.line() + self.line_fix),
                        byte: e.position().map(|p| p.byte()),
                    };
                    match e.kind() {
                        csv::ErrorKind::Io(_) => {
                            let err = FileError::Corrupt {
                                path: self.path.clone(),
                                position,
                                detail: e.to_string(),
                            };
                            return crate::fail(out, err, &mut self.pending);
                        }
                        _ => {
                            self.index += 1;
                            out.errors.push(RecordError {
                                position,
                                reason: reason::UNPARSEABLE,
                                message: e.to_string(),
                                original: Vec::new(),
                            });
                        }
                    }
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    fn parse(&self) -> Result<SensorReading, (&'static str, String)> {
        let r = &self.record;
        let c = &self.columns;
        let field = |i: usize, name: &str| -> Result<&str, (&'static str, String)> {
            let bytes = r.get(i).ok_or_else(|| {
                (
                    reason::SCHEMA_MISMATCH,
                    format!("row has {} fields, no `{name}`", r.len()),
                )
            })?;
            std::str::from_utf8(bytes)
                .map_err(|_| (reason::UNPARSEABLE, format!("`{name}` is not UTF-8")))
        };
        let number = |i: usize, name: &str| -> Result<f64, (&'static str, String)> {
            let text = field(i, name)?;
            text.parse::<f64>().map_err(|_| {
                (
                    reason::SCHEMA_MISMATCH,
                    format!("`{name}` = {text:?} is not a number"),
                )
            })
        };
        let meter_id = field(c.meter_id, "meter_id")?.to_owned();
        let ts = field(c.timestamp, "timestamp")?;
        let timestamp = parse_timestamp(ts).ok_or_else(|| {
            (
                reason::TIMESTAMP_OUT_OF_RANGE,
                format!("timestamp {ts:?} is neither epoch milliseconds nor RFC 3339"),
            )
        })?;
        let status = match c.status {
            Some(i) => {
                let text = r.get(i).map(String::from_utf8_lossy).unwrap_or_default();
                parse_status(&text).ok_or_else(|| {
                    (
                        reason::SCHEMA_MISMATCH,
                        format!("status {text:?} is not OK, DEGRADED or FAILURE"),
                    )
                })?
            }
            None => Default::default(),
        };
        Ok(SensorReading {
            meter_id,
            timestamp,
            voltage: number(c.voltage, "voltage")?,
            current: number(c.current, "current")?,
            temperature: number(c.temperature, "temperature")?,
            status,
        })
    }
}

/// The record's fields joined with commas, as the dead letter's original.
fn join(record: &csv::ByteRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.as_slice().len() + record.len());
    for (i, f) in record.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f);
    }
    out
}

/// Whether the header row ends in `\r\n`.
fn first_line_ends_in_crlf(path: &Path) -> bool {
    use std::io::BufRead;
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut line = Vec::new();
    let mut reader = BufReader::new(file).take(1 << 20);
    reader.read_until(b'\n', &mut line).is_ok() && line.ends_with(b"\r\n")
}
