//! The one error type of the crate.
//!
//! Every variant carries the context an operator needs to act on it (the file,
//! the byte position, the offset), and [`LogError::is_retryable`] tells the
//! caller's retry policy whether trying again can help: the async layer retries
//! a full disk after retention has run, but it must not retry a corrupt segment.

use std::io;
use std::path::PathBuf;

/// The result type of every fallible call in this crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// What went wrong in the log, with where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A system call on a file or directory failed.
    #[error("I/O error while trying to {op} {path}: {source}")]
    Io {
        /// What the log was doing, e.g. "fsync" or "open".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A frame failed its checksum or structural checks where no torn tail
    /// can explain it (a sealed segment, or bytes a reader was told are durable).
    #[error("corrupt log data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment or index file.
        path: PathBuf,
        /// Byte position of the bad frame inside that file.
        position: u64,
        /// Which check failed.
        reason: &'static str,
    },

    /// Segments on disk do not form one contiguous range of offsets.
    #[error(
        "offset gap in {path}: segment starts at offset {found} but the previous one ends at {expected}"
    )]
    OffsetGap {
        /// The segment whose base offset is wrong.
        path: PathBuf,
        /// The offset the previous segment ends at.
        expected: u64,
        /// The base offset of this segment.
        found: u64,
    },

    /// A read asked for an offset the partition does not hold (deleted by
    /// retention, or not written yet). The caller resets to one of the bounds.
    #[error("offset {offset} is outside the partition's range {log_start}..={high_watermark}")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        offset: u64,
        /// The first offset still stored.
        log_start: u64,
        /// The next offset to be written.
        high_watermark: u64,
    },

    /// One append is larger than a single frame may be.
    #[error("batch of {bytes} bytes exceeds the {limit}-byte limit of one frame")]
    BatchTooLarge {
        /// Encoded size of the batch.
        bytes: u64,
        /// The configured `max_batch_bytes`.
        limit: u64,
    },

    /// An earlier write or fsync of this partition failed and could not be
    /// rolled back (the partial write could not be cut off, or the flush
    /// had sealed a segment), so nothing written since can be trusted until
    /// the partition is reopened and recovered. A failure that was rolled
    /// back does not poison: see [`LogError::AppendFailed`].
    #[error("partition {path} refuses writes after an earlier failure: {cause}")]
    Poisoned {
        /// The partition directory.
        path: PathBuf,
        /// The first failure, as text (the original error went to its caller).
        cause: String,
    },

    /// An append failed (a full disk, an I/O error) in the group commit
    /// that also held this batch. Nothing of the batch was written: the
    /// partition was cut back to where it was, and later appends are tried
    /// afresh (`retryable` says whether the cause, e.g. ENOSPC, may pass).
    #[error("append to partition {path} failed, nothing of it was written: {cause}")]
    AppendFailed {
        /// The partition directory.
        path: PathBuf,
        /// The failure, as text (the original error went to the appender
        /// whose flush hit it).
        cause: String,
        /// Whether trying again later can succeed.
        retryable: bool,
    },

    /// A topic name that cannot be used as a directory name.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A configuration value outside its valid range.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The field, e.g. `partitions`.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },

    /// No topic of this name exists.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The topic asked for.
        topic: String,
    },

    /// The topic exists but has no partition of this number.
    #[error("topic {topic:?} has {count} partitions, there is no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        count: u32,
    },

    /// The topic exists with a partition count other than the one asked for.
    #[error("topic {topic:?} exists with {existing} partitions, not {requested}")]
    PartitionCountMismatch {
        /// The topic.
        topic: String,
        /// Partition count on disk.
        existing: u32,
        /// Partition count asked for.
        requested: u32,
    },

    /// The topic's metadata file cannot be parsed.
    #[error("cannot parse topic metadata {path}: {source}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl LogError {
    /// Whether the same call can succeed later without anyone changing the
    /// data or the configuration.
    ///
    /// Only transient operating-system conditions qualify: a full disk (which
    /// retention or an operator may relieve), an interrupted or timed-out call,
    /// or a busy resource. Corruption, bad input and a poisoned partition are
    /// permanent: retrying them would only repeat the failure, so the caller
    /// should dead-letter, reset its offset, or reopen the partition instead.
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::StorageFull
                    | io::ErrorKind::QuotaExceeded
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ResourceBusy
                    | io::ErrorKind::OutOfMemory
            ),
            LogError::AppendFailed { retryable, .. } => *retryable,
            LogError::Corrupt { .. }
            | LogError::OffsetGap { .. }
            | LogError::OffsetOutOfRange { .. }
            | LogError::BatchTooLarge { .. }
            | LogError::Poisoned { .. }
            | LogError::InvalidTopicName { .. }
            | LogError::InvalidConfig { .. }
            | LogError::UnknownTopic { .. }
            | LogError::UnknownPartition { .. }
            | LogError::PartitionCountMismatch { .. }
            | LogError::Metadata { .. } => false,
        }
    }

    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_is_retryable_and_corruption_is_not() {
        let full = LogError::io("write", "/x", io::Error::from(io::ErrorKind::StorageFull));
        assert!(full.is_retryable());
        let denied = LogError::io(
            "open",
            "/x",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_retryable());
        let corrupt = LogError::Corrupt {
            path: "/x/0.log".into(),
            position: 7,
            reason: "checksum mismatch",
        };
        assert!(!corrupt.is_retryable());
        assert_eq!(
            corrupt.to_string(),
            "corrupt log data in /x/0.log at byte 7: checksum mismatch"
        );
    }
}
