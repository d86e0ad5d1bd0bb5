//! The source side: what MQTT, Kafka, file replay and the HTTP API hand
//! readings to.
//!
//! A source acknowledges upstream (an MQTT PUBACK, a Kafka offset commit)
//! only after [`IngestTarget::ingest`] returns, because that is when the
//! readings are durably appended. That ordering is the whole of the
//! sources' no-loss guarantee.

use std::future::Future;

use bytes::Bytes;
use serde::Serialize;

/// One message from a source, holding one reading: JSON, or Avro with the
/// registry's framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub bytes: Bytes,
    /// Where it came from, for dead letters and logs
    /// (`mqtt:meters/m-1/readings`, `kafka:readings/0@1234`).
    pub origin: String,
}

/// What became of a batch of payloads; the HTTP API's response body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Durably appended for processing.
    pub accepted: u64,
    /// Malformed; dead-lettered with the reason.
    pub rejected: u64,
    /// Already ingested within the dedup horizon; dropped and counted.
    pub duplicates: u64,
}

/// Why a batch could not be ingested. Nothing of it was acknowledged, so
/// the source should retry it (after backing off).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The pipeline is behind by more than its bound (SR-002).
    #[error("backpressure: {0}")]
    Backpressure(String),
    /// The log could not append.
    #[error("ingest failed: {0}")]
    Unavailable(String),
}

/// Where sources put readings: the runtime's ingest path.
pub trait IngestTarget: Send + Sync + 'static {
    /// Parses, dedups and durably appends `payloads`; malformed ones become
    /// dead letters. Returns once everything accepted is durable.
    fn ingest(
        &self,
        payloads: Vec<Payload>,
    ) -> impl Future<Output = Result<IngestOutcome, SourceError>> + Send;
}
