//! What goes into the log and what comes back out.
//!
//! Appends borrow the caller's bytes ([`Record`]) because they are copied into
//! the frame buffer anyway; reads hand out [`RecordView`]s whose key and value
//! are [`Bytes`] slices of the chunk read from disk, so a read of thousands of
//! records costs one buffer, not one allocation per record.

use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

/// One record to append: optional key, value bytes, and a timestamp.
///
/// The timestamp is the producer's event time in milliseconds since the Unix
/// epoch; the log stores it as given and uses it for age-based retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Partitioning or compaction key; `None` is distinct from an empty key.
    pub key: Option<&'a [u8]>,
    /// The payload.
    pub value: &'a [u8],
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl<'a> Record<'a> {
    /// A keyless record with the given event time.
    pub fn new(timestamp_ms: i64, value: &'a [u8]) -> Self {
        Record {
            key: None,
            value,
            timestamp_ms,
        }
    }

    /// The same record with a key.
    pub fn with_key(self, key: &'a [u8]) -> Self {
        Record {
            key: Some(key),
            ..self
        }
    }
}

/// One record read back, with the offset the log assigned to it.
///
/// Key and value share the buffer of the read that produced them; holding
/// one view keeps that whole buffer (at most one read chunk) alive. Copy the
/// bytes out if a record must outlive its batch by long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Position of the record in its partition.
    pub offset: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The key, if the record had one.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
}

impl RecordView {
    /// Borrows this view as an appendable record, e.g. to copy it to another
    /// topic.
    pub fn as_record(&self) -> Record<'_> {
        Record {
            key: self.key.as_deref(),
            value: &self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// The wall clock in milliseconds, for callers that stamp records at ingest
/// and for retention by age.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
