//! The processor: one per input partition, running the SmartModule chain
//! and writing its results exactly once.
//!
//! Each processor owns partition `p` of the input and partition `p` of every
//! output topic, so its outputs have a single writer. The protocol:
//!
//! 1. Read a batch of readings from the last position.
//! 2. Run it through the chain (validate → detect).
//! 3. Append the results to `scored`, `anomalies` and `dead-letter`
//!    (durable when the append returns).
//! 4. Every `checkpoint_events` readings or `checkpoint_interval`, record the
//!    input position, the outputs' high watermarks and where to replay from
//!    to rebuild detector state.
//!
//! After a crash the processor restarts from its checkpoint. Everything it
//! wrote after the checkpoint is read back first, and identified by source
//! position (anomaly ids, source offsets); re-processing then skips exactly
//! those outputs. Detector state is rebuilt by replaying the inputs since
//! `warm_from` (the state is a function of the last window), so every
//! reading is scored once and every anomaly appears once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, ChainRecord, DeadLetter, ScoredReading};
use tokio::sync::{Notify, watch};

use crate::backend::{BackendError, InRecord, OutRecord, TopicBackend};
use crate::chain::{Chain, ChainError};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::metrics::Metrics;
use crate::topics::{SchemaIds, Topics};

/// How a processor paces itself.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Most records per batch. Batches take what is available, so small
    /// batches at low rates keep latency low.
    pub batch_max: usize,
    /// Checkpoint after this many readings (SR-004: 10,000)...
    pub checkpoint_events: u64,
    /// ...or this much time, whichever comes first (SR-004: 10 s).
    pub checkpoint_interval: Duration,
    /// How much input (by append time) rebuilds detector state: the
    /// detector window plus the allowed lateness.
    pub warm_window_ms: i64,
    /// How long a fetch waits for new input before checking for shutdown.
    pub fetch_wait: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            batch_max: 10_000,
            checkpoint_events: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            warm_window_ms: 305_000,
            fetch_wait: Duration::from_millis(200),
        }
    }
}

/// Why a processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "chain output at offset {offset} of partition {partition} is not a ChainRecord: {message}"
    )]
    BadOutput {
        partition: u32,
        offset: u64,
        message: String,
    },
}

/// Where a processor is, shared with ingest for backpressure.
#[derive(Debug, Default)]
pub struct Progress {
    /// Next input offset to process.
    pub position: AtomicU64,
    /// Poked after every batch, so producers waiting for room wake up.
    pub advanced: Notify,
    /// Set once recovery is done and the processor is live.
    pub ready: std::sync::atomic::AtomicBool,
}

/// What a recovering processor has already written past its checkpoint.
#[derive(Debug, Default)]
struct AlreadyWritten {
    scored: HashSet<u64>,
    anomalies: HashSet<String>,
    dead_letters: HashSet<u64>,
    /// Highest source offset among them; past it nothing can be a repeat.
    until: Option<u64>,
}

impl AlreadyWritten {
    fn is_empty(&self) -> bool {
        self.until.is_none()
    }
    fn note(&mut self, offset: u64) {
        self.until = Some(self.until.map_or(offset, |u| u.max(offset)));
    }
}

/// What every processor of a pipeline shares; cloned per partition.
#[derive(Debug)]
pub struct ProcessorContext<B> {
    pub backend: Arc<B>,
    pub topics: Topics,
    pub ids: SchemaIds,
    pub config: ProcessorConfig,
    pub store: CheckpointStore,
    pub metrics: Metrics,
}

impl<B> Clone for ProcessorContext<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            topics: self.topics.clone(),
            ids: self.ids,
            config: self.config.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// One input partition's processor.
pub struct Processor<B, C> {
    ctx: ProcessorContext<B>,
    chain: C,
    partition: u32,
    progress: Arc<Progress>,
}

impl<B, C> std::fmt::Debug for Processor<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("partition", &self.partition)
            .finish()
    }
}

impl<B: TopicBackend, C: Chain> Processor<B, C> {
    pub fn new(
        ctx: ProcessorContext<B>,
        partition: u32,
        chain: C,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            ctx,
            chain,
            partition,
            progress,
        }
    }

    fn name(&self) -> String {
        format!("processor-{}", self.partition)
    }

    fn output_key(topic: &str, partition: u32) -> String {
        format!("{topic}/{partition}")
    }

    /// Runs until `shutdown` turns true; checkpoints on the way out.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ProcessorError> {
        let p = self.partition;
        let started = Instant::now();
        let (checkpoint, mut already) = self.recover().await?;
        let mut position = checkpoint.input_offset;
        self.progress.position.store(position, Ordering::Release);
        self.progress.ready.store(true, Ordering::Release);
        tracing::info!(
            partition = p,
            position,
            took_ms = started.elapsed().as_millis() as u64,
            "Processor recovered and live."
        );

        let mut batches: VecDeque<(u64, i64)> = VecDeque::new();
        if checkpoint.warm_from < position {
            batches.push_back((checkpoint.warm_from, i64::MIN));
        }
        let mut since_checkpoint = 0u64;
        let mut last_checkpoint = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let fetched = tokio::select! {
                r = self.ctx.backend.fetch(&self.ctx.topics.readings, p, position, self.ctx.config.batch_max, self.ctx.config.fetch_wait) => r?,
                _ = shutdown.changed() => Vec::new(),
            };
            if let Some(first) = fetched.first() {
                let newest = fetched
                    .last()
                    .map_or(first.timestamp_ms, |r| r.timestamp_ms);
                self.process_batch(&fetched, &mut already).await?;
                position = fetched.last().map_or(position, |r| r.offset + 1);
                self.progress.position.store(position, Ordering::Release);
                self.progress.advanced.notify_waiters();
                since_checkpoint += fetched.len() as u64;
                batches.push_back((first.offset, first.timestamp_ms));
                let cutoff = newest.saturating_sub(self.ctx.config.warm_window_ms);
                while batches.len() > 1 && batches[1].1 <= cutoff {
                    batches.pop_front();
                }
            }
            let hw = self
                .ctx
                .backend
                .high_watermark(&self.ctx.topics.readings, p)
                .await?;
            self.ctx.metrics.set_lag(p, hw.saturating_sub(position));
            if since_checkpoint >= self.ctx.config.checkpoint_events
                || (since_checkpoint > 0
                    && last_checkpoint.elapsed() >= self.ctx.config.checkpoint_interval)
            {
                let warm_from = batches.front().map_or(position, |b| b.0);
                self.checkpoint(position, warm_from).await?;
                since_checkpoint = 0;
                last_checkpoint = Instant::now();
            }
        }
        let warm_from = batches.front().map_or(position, |b| b.0);
        self.checkpoint(position, warm_from).await?;
        tracing::info!(
            partition = p,
            position,
            "Processor stopped after a final checkpoint."
        );
        Ok(())
    }

    async fn checkpoint(&self, input_offset: u64, warm_from: u64) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let mut outputs = std::collections::BTreeMap::new();
        for topic in self.ctx.topics.outputs() {
            let hw = self
                .ctx
                .backend
                .high_watermark(topic, self.partition)
                .await?;
            outputs.insert(Self::output_key(topic, self.partition), hw);
        }
        let taken_at_ms = now_ms();
        let checkpoint = Checkpoint {
            input_offset,
            warm_from,
            outputs,
            taken_at_ms,
        };
        let store = self.ctx.store.clone();
        let name = self.name();
        tokio::task::spawn_blocking(move || store.save(&name, &checkpoint))
            .await
            .map_err(|e| BackendError::Task(e.to_string()))??;
        self.ctx
            .metrics
            .checkpoint_taken(self.partition, started.elapsed(), taken_at_ms);
        Ok(())
    }

    /// Loads the checkpoint, reads back what was written after it, and
    /// replays the window before it into the chain.
    async fn recover(&mut self) -> Result<(Checkpoint, AlreadyWritten), ProcessorError> {
        let p = self.partition;
        let start = self
            .ctx
            .backend
            .log_start(&self.ctx.topics.readings, p)
            .await?;
        let mut checkpoint = self.ctx.store.load(&self.name())?.unwrap_or_default();
        checkpoint.input_offset = checkpoint.input_offset.max(start);
        checkpoint.warm_from = checkpoint.warm_from.clamp(start, checkpoint.input_offset);

        let mut already = AlreadyWritten::default();
        for topic in self.ctx.topics.outputs() {
            let from = checkpoint
                .outputs
                .get(&Self::output_key(topic, p))
                .copied()
                .unwrap_or(0);
            let hw = self.ctx.backend.high_watermark(topic, p).await?;
            let mut at = from.max(self.ctx.backend.log_start(topic, p).await?);
            while at < hw {
                let records = self
                    .ctx
                    .backend
                    .fetch(topic, p, at, 10_000, Duration::ZERO)
                    .await?;
                let Some(last) = records.last() else { break };
                at = last.offset + 1;
                for r in &records {
                    self.note_written(topic, &r.value, &mut already);
                }
            }
        }
        if !already.is_empty() {
            tracing::info!(partition = p, until = ?already.until, "Outputs past the checkpoint found; re-processing will skip them.");
        }

        let mut at = checkpoint.warm_from;
        let now = now_ms();
        let mut warmed = 0usize;
        while at < checkpoint.input_offset {
            let max = (checkpoint.input_offset - at).min(10_000) as usize;
            let records = self
                .ctx
                .backend
                .fetch(&self.ctx.topics.readings, p, at, max, Duration::ZERO)
                .await?;
            let Some(last) = records.last() else { break };
            at = last.offset + 1;
            warmed += records.len();
            self.chain.warm(&records, now)?;
        }
        if warmed > 0 {
            tracing::info!(
                partition = p,
                warmed,
                "Detector state rebuilt from the input window."
            );
        }
        Ok((checkpoint, already))
    }

    fn note_written(&self, topic: &str, value: &[u8], already: &mut AlreadyWritten) {
        let Ok(framed) = framing::parse(value, IdWidth::ContentId4) else {
            return;
        };
        if topic == self.ctx.topics.scored {
            if let Ok(s) = ScoredReading::from_avro(framed.datum) {
                already.scored.insert(s.source_offset as u64);
                already.note(s.source_offset as u64);
            }
        } else if topic == self.ctx.topics.anomalies {
            if let Ok(a) = AnomalyEvent::from_avro(framed.datum) {
                already.anomalies.insert(a.anomaly_id);
            }
        } else if topic == self.ctx.topics.dead_letter
            && let Ok(d) = DeadLetter::from_avro(framed.datum)
            && d.source_topic.as_deref() == Some(self.ctx.topics.readings.as_str())
            && let Some(o) = d.source_offset
        {
            already.dead_letters.insert(o as u64);
            already.note(o as u64);
        }
    }

    async fn process_batch(
        &mut self,
        records: &[InRecord],
        already: &mut AlreadyWritten,
    ) -> Result<(), ProcessorError> {
        let p = self.partition;
        let now = now_ms();
        let outputs = self.chain.process(records, now)?;
        let mut scored = Vec::with_capacity(records.len());
        let mut anomalies = Vec::new();
        let mut dead = Vec::new();
        for (input, output) in records.iter().zip(outputs) {
            let record =
                ChainRecord::from_avro(&output).map_err(|e| ProcessorError::BadOutput {
                    partition: p,
                    offset: input.offset,
                    message: e.to_string(),
                })?;
            let repeat = already.until.is_some_and(|u| input.offset <= u);
            match record {
                ChainRecord::Scored(s) => {
                    let key = Some(Bytes::from(s.reading.meter_id.clone().into_bytes()));
                    for a in &s.anomalies {
                        if repeat && already.anomalies.contains(&a.anomaly_id) {
                            continue;
                        }
                        self.ctx
                            .metrics
                            .anomaly(a.severity.as_str(), a.anomaly_type.as_str());
                        anomalies.push(out(
                            key.clone(),
                            self.ctx.ids.anomaly,
                            a,
                            input.timestamp_ms,
                        ));
                    }
                    if !(repeat && already.scored.contains(&input.offset)) {
                        scored.push(out(key, self.ctx.ids.scored, &s, input.timestamp_ms));
                    }
                }
                ChainRecord::DeadLetter(mut d) => {
                    d.source_topic = Some(self.ctx.topics.readings.clone());
                    d.source_partition = Some(p as i32);
                    d.source_offset = Some(input.offset as i64);
                    if repeat && already.dead_letters.contains(&input.offset) {
                        continue;
                    }
                    tracing::warn!(
                        stage = %d.stage, reason = %d.reason, topic = %self.ctx.topics.readings,
                        partition = p, offset = input.offset, bytes = d.original.len(),
                        message = %d.message,
                        "Event dead-lettered."
                    );
                    self.ctx.metrics.dead_letter(&d.stage, &d.reason);
                    dead.push(out(
                        input.key.clone(),
                        self.ctx.ids.dead_letter,
                        &d,
                        input.timestamp_ms,
                    ));
                }
                ChainRecord::Reading(_) => {
                    return Err(ProcessorError::BadOutput {
                        partition: p,
                        offset: input.offset,
                        message: "the chain returned an unscored reading; is detect missing?"
                            .into(),
                    });
                }
            }
        }
        if let Some(last) = records.last()
            && already.until.is_some_and(|u| last.offset >= u)
        {
            *already = AlreadyWritten::default();
        }
        let (a, b, c) = tokio::join!(
            self.ctx.backend.append(&self.ctx.topics.scored, p, scored),
            self.ctx
                .backend
                .append(&self.ctx.topics.anomalies, p, anomalies),
            self.ctx
                .backend
                .append(&self.ctx.topics.dead_letter, p, dead),
        );
        a?;
        b?;
        c?;
        let wall = now_ms();
        self.ctx.metrics.latencies(
            records
                .iter()
                .map(|r| Duration::from_millis((wall - r.timestamp_ms).max(0) as u64)),
        );
        self.ctx.metrics.processed(records.len() as u64);
        Ok(())
    }
}

/// Frames a contract record for a topic: magic byte, schema id, datum.
pub fn out<T: AvroRecord>(
    key: Option<Bytes>,
    schema_id: u64,
    value: &T,
    timestamp_ms: i64,
) -> OutRecord {
    let mut buf = Vec::with_capacity(128);
    framing::write_header(&mut buf, schema_id, IdWidth::ContentId4);
    // Contract types always encode; a failure would be a schema bug caught by tests.
    let _ = value.encode_into(&mut buf);
    OutRecord {
        key,
        value: Bytes::from(buf),
        timestamp_ms,
    }
}

/// Wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
