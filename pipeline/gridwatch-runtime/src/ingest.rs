//! Getting readings into the `readings` topic: parse at the edge, drop
//! re-sent readings, wait for room downstream, append durably.
//!
//! JSON is accepted only here; what is appended is Avro framed with the
//! registry's contentId (SR-003). Lines that do not parse become dead letters
//! right away, and the rest of the request still counts. A request is
//! answered only once its readings are durable, so an acknowledged reading
//! is never lost (RPO 0).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch_contracts::fast::{self, ReadingRef};
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::json::parse_reading;
use gridwatch_contracts::{DeadLetter, SensorReading};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::backend::{BackendError, OutRecord, TopicBackend};
use crate::dedup::Dedup;
use crate::metrics::Metrics;
use crate::processor::{Progress, now_ms, out};
use crate::topics::{SchemaIds, Topics};

/// The partition of a meter: stable across restarts and releases.
pub fn partition_of(meter_id: &str, partitions: u32) -> u32 {
    (xxh3_64(meter_id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// The answer to an ingest request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

/// Why readings were not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "the pipeline is {lag} readings behind on partition {partition}; retry after {retry_after:?}"
    )]
    Backpressure {
        partition: u32,
        lag: u64,
        retry_after: Duration,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Backpressure bounds.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Most unprocessed readings a partition may hold before producers wait (SR-002).
    pub max_lag: u64,
    /// How long a producer waits for room before giving up with 503.
    pub backpressure_timeout: Duration,
    /// Dedup horizon: the detector window plus the allowed lateness.
    pub dedup_horizon_ms: i64,
}

/// Appends readings to the `readings` topic for every source.
pub struct Ingest<B> {
    backend: Arc<B>,
    topics: Topics,
    ids: SchemaIds,
    config: IngestConfig,
    dedup: Vec<Mutex<Dedup>>,
    progress: Vec<Arc<Progress>>,
    metrics: Metrics,
}

impl<B> std::fmt::Debug for Ingest<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("partitions", &self.dedup.len())
            .finish()
    }
}

impl<B: TopicBackend> Ingest<B> {
    /// `progress` has one entry per partition, shared with its processor.
    pub fn new(
        backend: Arc<B>,
        topics: Topics,
        ids: SchemaIds,
        config: IngestConfig,
        progress: Vec<Arc<Progress>>,
        metrics: Metrics,
    ) -> Self {
        let dedup = progress
            .iter()
            .map(|_| Mutex::new(Dedup::new(config.dedup_horizon_ms)))
            .collect();
        Self {
            backend,
            topics,
            ids,
            config,
            dedup,
            progress,
            metrics,
        }
    }

    fn partitions(&self) -> u32 {
        self.progress.len() as u32
    }

    /// Refills the dedup sets from the readings appended since `from[p]`,
    /// after a restart.
    pub async fn rebuild_dedup(&self, from: &[u64]) -> Result<usize, BackendError> {
        let mut n = 0;
        for (p, &start) in from.iter().enumerate() {
            let p = p as u32;
            let hw = self
                .backend
                .high_watermark(&self.topics.readings, p)
                .await?;
            let mut at = start.max(self.backend.log_start(&self.topics.readings, p).await?);
            while at < hw {
                let records = self
                    .backend
                    .fetch(&self.topics.readings, p, at, 10_000, Duration::ZERO)
                    .await?;
                let Some(last) = records.last() else { break };
                at = last.offset + 1;
                let mut dedup = lock(&self.dedup[p as usize]);
                for r in &records {
                    if let Some(reading) = decode_own(&r.value) {
                        dedup.insert(&reading.meter_id, reading.timestamp);
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Parses NDJSON (one reading per line); unparseable lines become dead letters.
    pub fn parse_ndjson(body: &[u8]) -> (Vec<SensorReading>, Vec<DeadLetter>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_reading(line) {
                Ok(r) => ok.push(r),
                Err(e) => bad.push(ingest_dead_letter(
                    e.reason(),
                    format!("line {}: {e}", i + 1),
                    line,
                )),
            }
        }
        (ok, bad)
    }

    /// Parses a JSON array of readings; elements that do not parse become dead letters.
    pub fn parse_json_array(body: &[u8]) -> (Vec<SensorReading>, Vec<DeadLetter>) {
        let items: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(body) {
            Ok(items) => items,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![ingest_dead_letter(
                        gridwatch_contracts::model::reason::UNPARSEABLE,
                        format!("body is not a JSON array: {e}"),
                        body,
                    )],
                );
            }
        };
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match parse_reading(item.get().as_bytes()) {
                Ok(r) => ok.push(r),
                Err(e) => bad.push(ingest_dead_letter(
                    e.reason(),
                    format!("element {i}: {e}"),
                    item.get().as_bytes(),
                )),
            }
        }
        (ok, bad)
    }

    /// Appends readings (and dead letters for what did not parse), waiting
    /// for downstream room first. Returns once everything is durable.
    ///
    /// Borrows the readings, so a caller that retries after backpressure
    /// keeps them without a copy.
    pub async fn ingest(
        &self,
        readings: &[SensorReading],
        rejected: Vec<DeadLetter>,
    ) -> Result<IngestOutcome, IngestError> {
        let received = now_ms();
        let parts = self.partitions();
        let mut by_partition: Vec<Vec<&SensorReading>> = vec![Vec::new(); parts as usize];
        for r in readings {
            by_partition[partition_of(&r.meter_id, parts) as usize].push(r);
        }
        let mut outcome = IngestOutcome {
            rejected: rejected.len() as u64,
            ..Default::default()
        };
        if !rejected.is_empty() {
            let records = rejected
                .iter()
                .map(|d| {
                    tracing::warn!(stage = "ingest", reason = %d.reason, message = %d.message, bytes = d.original.len(), "Event dead-lettered.");
                    self.metrics.dead_letter("ingest", &d.reason);
                    out(None, self.ids.dead_letter, d, received)
                })
                .collect();
            self.backend
                .append(&self.topics.dead_letter, 0, records)
                .await?;
        }
        let appends = by_partition
            .into_iter()
            .enumerate()
            .filter(|(_, rs)| !rs.is_empty())
            .map(|(p, rs)| self.append_partition(p as u32, rs, received));
        for result in futures::future::join_all(appends).await {
            let (accepted, duplicates) = result?;
            outcome.accepted += accepted;
            outcome.duplicates += duplicates;
        }
        self.metrics.ingested(outcome.accepted);
        self.metrics.duplicates(outcome.duplicates);
        Ok(outcome)
    }

    async fn append_partition(
        &self,
        p: u32,
        readings: Vec<&SensorReading>,
        received: i64,
    ) -> Result<(u64, u64), IngestError> {
        self.wait_for_room(p).await?;
        let offered = readings.len() as u64;
        let fresh: Vec<&SensorReading> = {
            let mut dedup = lock(&self.dedup[p as usize]);
            readings
                .into_iter()
                .filter(|r| dedup.insert(&r.meter_id, r.timestamp))
                .collect()
        };
        let accepted = fresh.len() as u64;
        let records = fresh
            .iter()
            .map(|r| {
                // The hand-written codec writes the bytes serde would, at a
                // fraction of the cost: this runs for every reading.
                let mut value = Vec::with_capacity(40 + r.meter_id.len());
                framing::write_header(&mut value, self.ids.reading, IdWidth::ContentId4);
                fast::put_reading(&mut value, &ReadingRef::of(r));
                OutRecord {
                    key: Some(Bytes::copy_from_slice(r.meter_id.as_bytes())),
                    value: Bytes::from(value),
                    timestamp_ms: received,
                }
            })
            .collect();
        if let Err(e) = self.backend.append(&self.topics.readings, p, records).await {
            // Not durable, so not seen: a retry must not count as a duplicate.
            let mut dedup = lock(&self.dedup[p as usize]);
            for r in &fresh {
                dedup.remove(&r.meter_id, r.timestamp);
            }
            return Err(e.into());
        }
        Ok((accepted, offered - accepted))
    }

    /// Appends bytes as a producer wrote them, unparsed, keyed by `meter_id`:
    /// for sources that hand over payloads validate must judge (and
    /// dead-letter when they are malformed).
    pub async fn append_raw(&self, meter_id: &str, bytes: Vec<u8>) -> Result<(), IngestError> {
        let p = partition_of(meter_id, self.partitions());
        self.wait_for_room(p).await?;
        let record = crate::backend::OutRecord {
            key: Some(Bytes::from(meter_id.as_bytes().to_vec())),
            value: Bytes::from(bytes),
            timestamp_ms: now_ms(),
        };
        self.backend
            .append(&self.topics.readings, p, vec![record])
            .await?;
        Ok(())
    }

    /// SR-002: blocks while the partition's processor is too far behind.
    async fn wait_for_room(&self, p: u32) -> Result<(), IngestError> {
        let progress = &self.progress[p as usize];
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.backpressure_timeout;
        loop {
            let notified = progress.advanced.notified();
            let hw = self
                .backend
                .high_watermark(&self.topics.readings, p)
                .await?;
            let lag =
                hw.saturating_sub(progress.position.load(std::sync::atomic::Ordering::Acquire));
            if lag < self.config.max_lag {
                if started.elapsed() > Duration::from_millis(1) {
                    self.metrics.backpressure_wait("ingest", started.elapsed());
                }
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.metrics.backpressure_wait("ingest", started.elapsed());
                return Err(IngestError::Backpressure {
                    partition: p,
                    lag,
                    retry_after: Duration::from_secs(1),
                });
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decodes a reading this runtime appended (framed with its own schema).
pub fn decode_own(value: &[u8]) -> Option<SensorReading> {
    use gridwatch_contracts::codec::AvroRecord;
    let framed = gridwatch_contracts::framing::parse(
        value,
        gridwatch_contracts::framing::IdWidth::ContentId4,
    )
    .ok()?;
    SensorReading::from_avro(framed.datum).ok()
}

fn ingest_dead_letter(reason: &str, message: String, original: &[u8]) -> DeadLetter {
    DeadLetter {
        reason: reason.to_string(),
        message,
        stage: "ingest".into(),
        source_topic: None,
        source_partition: None,
        source_offset: None,
        original: original.to_vec(),
        first_failed_at: now_ms(),
        attempts: 1,
    }
}
