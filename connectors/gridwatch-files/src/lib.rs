//! Reading sensor readings from files, for `gridwatch ingest FILE…`
//! (replay and backfill into a running pipeline) and `gridwatch score
//! FILE…` (offline scoring).
//!
//! Every format streams: a file of any size is read in batches of at most
//! [`ReadOptions::batch_size`] readings, so memory stays bounded. Event
//! time is kept exactly as written. A record that does not parse becomes a
//! [`RecordError`] with its position, for the dead-letter queue; the rest
//! of the file is still read. Only a file that cannot be read at all (or
//! whose framing breaks mid-way) ends the stream with a [`FileError`].
//!
//! - [`format`]: which format a file is, by magic bytes and extension.
//! - [`progress`]: bytes read of total, for a progress bar.
//! - `csv`, `ndjson`, `avro`, `parquet`: one reader per format.
//!
//! The readers do blocking file I/O; from async code, drive them with
//! `tokio::task::spawn_blocking`.

mod avro;
mod csv;
pub mod format;
mod ndjson;
mod parquet;
pub mod progress;

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use gridwatch_contracts::{DeadLetter, SensorReading};

pub use format::Format;
pub use progress::Progress;

/// How files are read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Most readings per batch (default 8,192). Memory is bounded by this
    /// times the reading size, plus one Parquet row group's column pages or
    /// one Avro block.
    pub batch_size: usize,
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
    /// Longest NDJSON line accepted (default 1 MiB); a longer one becomes a
    /// record error and is skipped without being held in memory.
    pub max_line_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            batch_size: 8192,
            format: None,
            max_line_bytes: 1 << 20,
        }
    }
}

/// Where in a file a record sits, for error messages and dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 0-based index of the record among all records of the file, bad ones
    /// included (for CSV, the header is not a record).
    pub record: u64,
    /// 1-based line, for the text formats.
    pub line: Option<u64>,
    /// Byte offset of the record's start, where known.
    pub byte: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line} (record {})", self.record),
            None => write!(f, "record {}", self.record),
        }
    }
}

/// One record that did not parse. The stream goes on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub position: Position,
    /// The dead-letter reason code (`gridwatch_contracts::model::reason`).
    pub reason: &'static str,
    pub message: String,
    /// The record as it was in the file (the line for text formats, a
    /// rendering of the row or datum for binary ones), capped at 64 KiB.
    pub original: Vec<u8>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.position, self.message, self.reason)
    }
}

/// The most of a bad record kept in [`RecordError::original`].
pub const MAX_ORIGINAL: usize = 64 * 1024;

pub(crate) fn capped(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len().min(MAX_ORIGINAL)].to_vec()
}

impl RecordError {
    /// The dead letter for this record: stage `ingest`, the file as
    /// `source_topic` (`file:PATH`) and the record index as `source_offset`.
    pub fn to_dead_letter(&self, file: &Path, now_ms: i64) -> DeadLetter {
        DeadLetter {
            reason: self.reason.to_owned(),
            message: format!("{}: {}", self.position, self.message),
            stage: "ingest".to_owned(),
            source_topic: Some(format!("file:{}", file.display())),
            source_partition: None,
            source_offset: i64::try_from(self.position.record).ok(),
            original: self.original.clone(),
            first_failed_at: now_ms,
            attempts: 1,
        }
    }
}

/// A batch of readings in file order, and the records between them that did
/// not parse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub readings: Vec<SensorReading>,
    pub errors: Vec<RecordError>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.errors.is_empty()
    }
}

/// Why a file could not be read (or stopped being readable part-way).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Neither the magic bytes nor the extension say what the file is.
    #[error("{}: unknown format: {detail}; use .csv, .ndjson/.jsonl, .avro or .parquet", path.display())]
    UnknownFormat { path: PathBuf, detail: String },
    /// The extension names a binary format the contents are not.
    #[error("{}: not a {format} file: {detail}", path.display())]
    NotFormat {
        path: PathBuf,
        format: Format,
        detail: String,
    },
    /// The file's schema or header lacks what a reading needs.
    #[error("{}: {detail}", path.display())]
    Schema { path: PathBuf, detail: String },
    /// The file's framing broke (truncated or corrupt); what came before was
    /// read, nothing after can be.
    #[error("{}: corrupt at {position}: {detail}", path.display())]
    Corrupt {
        path: PathBuf,
        position: Position,
        detail: String,
    },
}

/// The per-format readers behind [`FileReader`].
enum Inner {
    Csv(csv::CsvReader),
    Ndjson(ndjson::NdjsonReader),
    Avro(Box<avro::AvroReader>),
    Parquet(Box<parquet::ParquetReader>),
}

/// A stream of [`Batch`]es from one file: an `Iterator`, ending after the
/// last batch or after the first [`FileError`].
pub struct FileReader {
    path: PathBuf,
    format: Format,
    inner: Option<Inner>,
    progress: Progress,
}

impl fmt::Debug for FileReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// Opens `path`, detects its format and reads its header.
pub fn open(path: impl AsRef<Path>, options: &ReadOptions) -> Result<FileReader, FileError> {
    let path = path.as_ref().to_path_buf();
    let io = |source| FileError::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::open(&path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]).map_err(io)? {
            0 => break,
            n => filled += n,
        }
    }
    let format = match options.format {
        Some(f) => f,
        None => format::detect(&path, &head[..filled])?,
    };
    drop(file);
    let progress = Progress::new(total);
    let batch = options.batch_size.max(1);
    let inner = match format {
        Format::Csv => Inner::Csv(csv::CsvReader::open(&path, &progress, batch)?),
        Format::Ndjson => Inner::Ndjson(ndjson::NdjsonReader::open(
            &path,
            &progress,
            batch,
            options.max_line_bytes,
        )?),
        Format::Avro => Inner::Avro(Box::new(avro::AvroReader::open(&path, &progress, batch)?)),
        Format::Parquet => Inner::Parquet(Box::new(parquet::ParquetReader::open(
            &path, &progress, batch,
        )?)),
    };
    Ok(FileReader {
        path,
        format,
        inner: Some(inner),
        progress,
    })
}

impl FileReader {
    pub fn format(&self) -> Format {
        self.format
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// A handle to this file's progress, readable from another thread.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

impl Iterator for FileReader {
    type Item = Result<Batch, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = match self.inner.as_mut()? {
            Inner::Csv(r) => r.next_batch(),
            Inner::Ndjson(r) => r.next_batch(),
            Inner::Avro(r) => r.next_batch(),
            Inner::Parquet(r) => r.next_batch(),
        };
        match result {
            Ok(Some(batch)) => {
                self.progress
                    .add_records(batch.readings.len() as u64, batch.errors.len() as u64);
                Some(Ok(batch))
            }
            Ok(None) => {
                self.inner = None;
                self.progress.finish();
                None
            }
            Err(e) => {
                self.inner = None;
                Some(Err(e))
            }
        }
    }
}

/// A buffered file whose reads count into a [`Progress`].
pub(crate) fn counted_file(
    path: &Path,
    progress: &Progress,
) -> Result<BufReader<progress::Counting<File>>, FileError> {
    let file = File::open(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(BufReader::with_capacity(
        64 * 1024,
        progress::Counting::new(file, progress.clone()),
    ))
}

/// Ends a batch at a fatal error: the records read before it are returned
/// first, and the error on the next call.
pub(crate) fn fail(
    out: Batch,
    err: FileError,
    pending: &mut Option<FileError>,
) -> Result<Option<Batch>, FileError> {
    if out.is_empty() {
        Err(err)
    } else {
        *pending = Some(err);
        Ok(Some(out))
    }
}

/// Parses a timestamp cell: epoch milliseconds or RFC 3339.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    gridwatch_contracts::json::parse_rfc3339_millis(text)
}

/// Parses a status cell; empty means `OK`, case does not matter.
pub(crate) fn parse_status(text: &str) -> Option<gridwatch_contracts::MeterStatus> {
    let text = text.trim();
    if text.is_empty() {
        return Some(gridwatch_contracts::MeterStatus::Ok);
    }
    text.to_ascii_uppercase().parse().ok()
}
