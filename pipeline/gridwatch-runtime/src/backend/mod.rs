//! Topic backends: where the pipeline's topics live.
//!
//! The pipeline is written against [`TopicBackend`] only, so the same code
//! runs on the embedded log (one machine, no servers) and on a Fluvio
//! cluster. The contract every backend keeps:
//! - `append` returns only once the records are durable, with contiguous offsets;
//! - offsets are dense per partition, starting at the log start;
//! - `fetch` returns records at or after `from` in offset order, waiting up to
//!   `wait` when there are none yet.

pub mod embedded;

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// Append time (ms) as the producer saw it; the runtime uses receive time.
    pub timestamp_ms: i64,
}

/// A record read back, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// A topic and its partition count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
}

/// What went wrong in a backend, and whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("topic {topic:?} does not exist")]
    NoSuchTopic { topic: String },
    #[error("topic {topic:?} has no partition {partition}")]
    NoSuchPartition { topic: String, partition: u32 },
    #[error("offset {offset} of {topic}/{partition} is no longer (or not yet) in the log")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
    },
    #[error("embedded log: {0}")]
    Log(#[from] gridwatch_log::LogError),
    #[error("backend task failed: {0}")]
    Task(String),
}

impl BackendError {
    /// True when the same call may succeed later (transient I/O).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Log(e) => e.is_retryable(),
            Self::Task(_) => true,
            _ => false,
        }
    }
}

/// Topics with partitions, durable appends and offset-based reads.
pub trait TopicBackend: Send + Sync + 'static {
    /// Creates the topic if missing; an existing topic keeps its partitions.
    fn ensure_topic(
        &self,
        name: &str,
        partitions: u32,
    ) -> impl Future<Output = Result<TopicInfo, BackendError>> + Send;

    fn list_topics(&self) -> impl Future<Output = Result<Vec<TopicInfo>, BackendError>> + Send;

    /// Appends durably; returns the offsets the records got.
    fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<Range<u64>, BackendError>> + Send;

    /// Reads up to `max` records from `from`, waiting up to `wait` for the first.
    fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<InRecord>, BackendError>> + Send;

    /// The offset the next appended record will get.
    fn high_watermark(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// The first offset still held.
    fn log_start(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;
}
