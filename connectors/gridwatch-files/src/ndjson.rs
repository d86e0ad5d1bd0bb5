//! NDJSON: one JSON reading per line, in the ingest API's JSON format. Lines
//! holding a `ScoredReading` (`reading`) or an `AnomalyEvent`
//! (`original_event`), as `gridwatch score` prints, yield their reading.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use gridwatch_contracts::SensorReading;
use gridwatch_contracts::json::parse_reading;
use gridwatch_contracts::model::reason;

use crate::progress::{Counting, Progress};
use crate::{Batch, FileError, Position, RecordError, counted_file};

pub(crate) struct NdjsonReader {
    path: PathBuf,
    reader: BufReader<Counting<File>>,
    line: Vec<u8>,
    line_no: u64,
    byte: u64,
    index: u64,
    batch: usize,
    max_line: usize,
    pending: Option<FileError>,
}

/// One line, or the news that it was too long (and has been skipped).
enum Line {
    Eof,
    Ok,
    TooLong(u64),
}

impl NdjsonReader {
    pub(crate) fn open(
        path: &Path,
        progress: &Progress,
        batch: usize,
        max_line: usize,
    ) -> Result<Self, FileError> {
        Ok(Self {
            path: path.to_path_buf(),
            reader: counted_file(path, progress)?,
            line: Vec::new(),
            line_no: 0,
            byte: 0,
            index: 0,
            batch,
            max_line,
            pending: None,
        })
    }

    /// Reads one line into `self.line` without ever holding more than
    /// `max_line` bytes of it.
    fn read_line(&mut self) -> std::io::Result<Line> {
        self.line.clear();
        let mut total: u64 = 0;
        let mut any = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match memchr(buf) {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let n = chunk.len();
            total += n as u64;
            if self.line.len() + n <= self.max_line + 2 {
                self.line.extend_from_slice(chunk);
            }
            self.reader.consume(n);
            if done {
                break;
            }
        }
        if !any {
            return Ok(Line::Eof);
        }
        if total > self.max_line as u64 + 2 {
            return Ok(Line::TooLong(total));
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(Line::Ok)
    }

    pub(crate) fn next_batch(&mut self) -> Result<Option<Batch>, FileError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let mut out = Batch::default();
        while out.readings.len() + out.errors.len() < self.batch {
            let start = self.byte;
            let line = match self.read_line() {
                Ok(line) => line,
                Err(e) => {
                    let err = FileError::Corrupt {
                        path: self.path.clone(),
                        position: Position {
                            record: self.index,
                            line: Some(self.line_no + 1),
                            byte: Some(start),
                        },
                        detail: e.to_string(),
                    };
                    return crate::fail(out, err, &mut self.pending);
                }
            };
            let len = match line {
                Line::Eof => break,
                Line::Ok => self.line.len() as u64 + 1,
                Line::TooLong(n) => n,
            };
            self.byte += len;
            self.line_no += 1;
            let position = Position {
                record: self.index,
                line: Some(self.line_no),
                byte: Some(start),
            };
            if let Line::TooLong(n) = line {
                self.index += 1;
                out.errors.push(RecordError {
                    position,
                    reason: reason::UNPARSEABLE,
                    message: format!("line of {n} bytes is longer than {} bytes", self.max_line),
                    original: crate::capped(&self.line),
                });
                continue;
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.index += 1;
            match parse_line(&self.line) {
                Ok(reading) => out.readings.push(reading),
                Err((reason, message)) => out.errors.push(RecordError {
                    position,
                    reason,
                    message,
                    original: crate::capped(&self.line),
                }),
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

fn parse_line(line: &[u8]) -> Result<SensorReading, (&'static str, String)> {
    let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    match parse_reading(line) {
        Ok(r) => Ok(r),
        Err(e) => {
            // A scored reading or an anomaly carries its reading inside.
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(line) {
                for key in ["reading", "original_event"] {
                    if let Some(inner) = map.get(key).filter(|v| v.is_object()) {
                        let bytes = serde_json::to_vec(inner).unwrap_or_default();
                        return parse_reading(&bytes).map_err(|e| (e.reason(), e.to_string()));
                    }
                }
            }
            Err((e.reason(), e.to_string()))
        }
    }
}
