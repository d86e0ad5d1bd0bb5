//! The sink interface and its exactly-once contract.
//!
//! # The contract
//!
//! A sink copies records of one input topic partition to a destination.
//! Every record carries its **source position** (topic, partition, offset),
//! and that position is the record's identity everywhere downstream.
//!
//! 1. **Start-up.** The driver calls [`Sink::recover`] for each partition.
//!    A sink that can see its own output (a Kafka topic's tail, the lake's
//!    file names) returns the highest source offset already durably there,
//!    and the driver resumes after `max(checkpoint, recovered)`. A sink that
//!    cannot returns `None` and must make writes idempotent instead
//!    (InfluxDB: a point's identity is its tags and event time, so a rewrite
//!    overwrites).
//! 2. **Writes.** [`Sink::write`] gets batches in offset order. A batch may
//!    be written again after a crash (between the write and the
//!    checkpoint), so writes must be idempotent by source position, or the
//!    sink must use step 1 to skip them.
//! 3. **Checkpoints.** Every `checkpoint_events` records or
//!    `checkpoint_interval`, the driver calls [`Sink::flush`]; only after it
//!    returns does the driver record the next offset as committed. A sink
//!    that buffers (the lake cuts one file per flush) must make everything
//!    durable in `flush`.
//! 4. **Failures.** A [`SinkError::Transient`] is retried under the shared
//!    [`RetryPolicy`](crate::RetryPolicy); when the retries run out, or on a
//!    [`SinkError::Permanent`], the records go to the dead-letter topic with
//!    the reason, their source position and their original bytes, and the
//!    stream moves on. `gridwatch dlq replay` re-delivers them later.

use std::future::Future;

use bytes::Bytes;

/// One record a sink receives: the bytes of an output topic's record, and
/// where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub topic: String,
    pub partition: u32,
    /// Source position; with `topic` and `partition`, the record's identity.
    pub offset: u64,
    /// When the record was appended (epoch ms).
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    /// Avro with the registry's framing, as the topic holds it.
    pub value: Bytes,
}

/// Why a sink could not take a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: a connection refused, a timeout, a 5xx or a 429.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: a 4xx other than 429, a record the destination
    /// refuses. The batch goes to the DLQ at once.
    #[error("{0}")]
    Permanent(String),
    /// Some records were refused for good and the rest were written. The
    /// refused ones (by source offset) go to the DLQ with their reasons.
    #[error("{} records refused", .0.len())]
    Rejected(Vec<(u64, String)>),
}

impl SinkError {
    /// Builds the error for an HTTP status, following FR-008: 429 and 5xx are
    /// transient, every other 4xx is permanent.
    pub fn from_http_status(status: u16, body: &str) -> Self {
        let message = format!("HTTP {status}: {}", body.trim());
        if status == 429 || status >= 500 {
            Self::Transient(message)
        } else {
            Self::Permanent(message)
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// A destination for one output topic. See the module docs for the contract.
pub trait Sink: Send + 'static {
    /// Short, stable name used in metrics, logs, checkpoints and dead letters
    /// (`kafka`, `influxdb`, `lake`, `webhook`).
    fn name(&self) -> &str;

    /// The highest source offset of `topic`/`partition` already durably in
    /// the destination, if the sink can tell.
    fn recover(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send {
        let _ = (topic, partition);
        async { Ok(None) }
    }

    /// Writes a batch of records, in offset order, of one partition.
    fn write(&mut self, batch: &[SinkRecord])
    -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Makes everything written so far durable; the driver commits the
    /// position only after this returns.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_follow_fr_008() {
        assert!(SinkError::from_http_status(429, "slow down").is_transient());
        assert!(SinkError::from_http_status(503, "").is_transient());
        assert!(SinkError::from_http_status(500, "").is_transient());
        assert!(!SinkError::from_http_status(400, "bad line").is_transient());
        assert!(!SinkError::from_http_status(401, "").is_transient());
        assert!(!SinkError::from_http_status(404, "").is_transient());
        assert_eq!(
            SinkError::from_http_status(400, " bad line\n").to_string(),
            "HTTP 400: bad line"
        );
    }
}
