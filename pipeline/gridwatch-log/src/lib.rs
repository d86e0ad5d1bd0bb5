//! Gridwatch's embedded durable topic log: the storage behind `gridwatch run`
//! when no Fluvio cluster is used.
//!
//! It is a synchronous library on purpose. Durability is a matter of blocking
//! system calls (`pwrite`, `fdatasync`), so the async runtime wraps it with
//! `spawn_blocking` or a writer thread of its own, and awaits new data through
//! [`Partition::on_commit`] instead of polling.
//!
//! # Module map
//!
//! - [`log`]: [`Log`], the data directory: opens and recovers every topic,
//!   creates topics, runs retention across all of them.
//! - [`topic`]: [`Topic`], a named set of partitions and its `topic.json`.
//! - [`partition`]: [`Partition`], the ordered log itself: group-commit
//!   appends, reads, tailing, retention, recovery.
//! - [`config`]: [`TopicConfig`] (persisted), [`LogOptions`] and
//!   [`Durability`] (per process).
//! - [`record`]: [`Record`] in, [`RecordView`] out.
//! - [`error`]: [`LogError`] with its retryable/permanent split.
//! - `segment` (private): segment and index files, and the recovery scan.
//! - `frame` (private): encoding and checking of one frame.
//!
//! # Guarantees
//!
//! - Offsets are `u64`, start at 0 and are contiguous per partition.
//! - [`Partition::append_batch`] returns only once the batch is durable
//!   (under the default [`Durability::Fsync`]); concurrent appends share one
//!   fsync. A batch survives a crash whole or not at all.
//! - Readers see only durable records, so nothing they read can be taken
//!   back by a crash.
//! - On open, the last segment is verified frame by frame and cut at the
//!   start of the batch holding the first torn or corrupt frame. Sealed
//!   segments are trusted through their checksummed index files, and a
//!   corrupt sealed segment is an error, not a cut.
//!
//! # On-disk format
//!
//! ```text
//! <dir>/<topic>/topic.json                       TopicConfig as JSON
//! <dir>/<topic>/<partition>/<base:020>.log       frames, back to back
//! <dir>/<topic>/<partition>/<base:020>.index     sparse index, sealed segments only
//! ```
//!
//! `<base>` is the offset of the segment's first record, zero-padded to 20
//! digits. A segment is sealed, and the next one started, when the next batch
//! would take it past `segment_bytes`; a batch never spans two segments. All
//! integers are little-endian.
//!
//! **Frame**. One `append_batch` call writes one batch: one frame, or several
//! of about `frame_bytes` each, all but the last flagged "continues".
//! Recovery keeps a batch only if all of its frames are intact.
//!
//! | bytes | field | meaning |
//! |------:|-------|---------|
//! | 0..4 | `frame_len: u32` | whole frame, this header included |
//! | 4..8 | `crc: u32` | CRC-32C (Castagnoli) of bytes `8..frame_len` |
//! | 8 | `version: u8` | 1 |
//! | 9 | `flags: u8` | bit 0: the batch continues in the next frame |
//! | 10..12 | reserved | 0 |
//! | 12..16 | `record_count: u32` | at least 1 |
//! | 16..24 | `base_offset: u64` | offset of the first record |
//! | 24..32 | `max_timestamp_ms: i64` | newest record, for retention by age |
//! | 32.. | records | `record_count` times the record layout below |
//!
//! **Record** inside a frame (record `i` has offset `base_offset + i`):
//!
//! | bytes | field |
//! |------:|-------|
//! | 0..8 | `timestamp_ms: i64` |
//! | 8..12 | `key_len: i32`, −1 for no key |
//! | 12..16 | `value_len: u32` |
//! | 16.. | key bytes, then value bytes |
//!
//! **Index file** (written once when a segment is sealed): magic `GWIX`,
//! `version: u32`, `base_offset: u64`, `log_len: u64`, `end_offset: u64`,
//! `max_timestamp_ms: i64`, `entry_count: u32`, then `entry_count` pairs of
//! (`frame base_offset: u64`, `byte position: u64`) spaced about
//! `index_interval_bytes` apart, then a CRC-32C of everything before it. An
//! index whose checksum or `log_len` does not match its log is ignored and
//! the log is scanned instead; the active segment's index is rebuilt in
//! memory by the recovery scan.
//!
//! # Example
//!
//! ```
//! use gridwatch_log::{Log, LogOptions, ReadLimits, Record, TopicConfig};
//!
//! # fn main() -> Result<(), gridwatch_log::LogError> {
//! # let dir = tempfile::tempdir().map_err(|e| gridwatch_log::LogError::Io {
//! #     op: "tempdir", path: "/tmp".into(), source: e })?;
//! let log = Log::open(dir.path(), LogOptions::default())?;
//! let readings = log.create_topic("sensor-readings", TopicConfig::new(4))?;
//! let p = readings.partition(0)?;
//! let offsets = p.append_batch(&[
//!     Record::new(1_700_000_000_000, b"{\"v\":229.8}").with_key(b"meter-7"),
//!     Record::new(1_700_000_000_100, b"{\"v\":230.1}").with_key(b"meter-7"),
//! ])?;
//! assert_eq!(offsets, 0..2);
//! let back = p.read(0, ReadLimits::default())?;
//! assert_eq!(&back[1].value[..], b"{\"v\":230.1}");
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod error;
mod frame;
pub mod log;
pub mod partition;
pub mod record;
mod segment;
pub mod topic;

pub use config::{Durability, LogOptions, PartitionConfig, TopicConfig};
pub use error::{LogError, Result};
pub use log::Log;
pub use partition::{Partition, ReadLimits, RecoveryReport, RetentionOutcome};
pub use record::{Record, RecordView, now_ms};
pub use topic::Topic;
