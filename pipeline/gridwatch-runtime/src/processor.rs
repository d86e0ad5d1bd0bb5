//! The processor: one per input partition, running a SmartModule chain
//! and writing its results exactly once.
//!
//! Each processor owns partition `p` of the input and partition `p` of every
//! output topic, so its outputs have a single writer. The protocol:
//!
//! 1. Read a batch of records from the last position.
//! 2. Run it through the chain (for the grid pipeline, validate → detect).
//! 3. Let the [`Router`] send each output to its topics (for the grid
//!    pipeline, `scored`, `anomalies` and `dead-letter`; see
//!    [`crate::grid`]) and append them (durable when the append returns).
//! 4. Every `checkpoint_events` records or `checkpoint_interval`, record the
//!    input position, the outputs' high watermarks and where to replay from
//!    to rebuild chain state.
//!
//! After a crash the processor restarts from its checkpoint. Everything it
//! wrote after the checkpoint is read back first and identified by the
//! router (anomaly ids, source offsets); re-processing then skips exactly
//! those outputs. Chain state is rebuilt by replaying the inputs since
//! `warm_from` (windowed state is a function of the last window), so every
//! record is processed once and every output appears once.
//!
//! A running processor also takes a replacement chain ([`Swap`]): it warms
//! the new chain over the same window and switches between two batches, so
//! a hot-swap neither loses nor repeats a record.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::backend::{BackendError, InRecord, OutRecord, TopicBackend};
use crate::chain::{Chain, ChainError};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::metrics::Metrics;

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
        "chain output at offset {offset} of partition {partition} breaks the router's contract: {message}"
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

/// One record a [`Router`] sends to an output topic.
#[derive(Debug, Clone)]
pub struct Routed {
    /// Index into [`Router::outputs`].
    pub output: usize,
    /// The record's identity within its topic, as [`Router::identify`]
    /// would compute it from the written bytes; recovery skips records
    /// whose identity is already there.
    pub identity: u64,
    pub record: OutRecord,
}

/// What a record already in an output topic says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    /// The input offset it came from, when the record carries it.
    pub source_offset: Option<u64>,
    pub identity: u64,
}

/// Where a chain's outputs go, and how to recognise them after a crash:
/// the application-specific half of a processor.
///
/// Exactly-once needs both directions: [`Router::route`] stamps every
/// output with an identity derived from its source position, and
/// [`Router::identify`] recovers that identity from the written bytes, so
/// that re-processing after a crash skips what is already there.
pub trait Router: Send + Sync + 'static {
    /// Output topics; partition `p` of each is written by processor `p`.
    fn outputs(&self) -> Vec<String>;

    /// Routes the chain's output for one input record of `partition`. An
    /// `Err` stops the processor: a chain that breaks its own output
    /// contract is a bug.
    fn route(
        &self,
        partition: u32,
        input: &InRecord,
        output: &[u8],
        out: &mut Vec<Routed>,
    ) -> Result<(), String>;

    /// Reads back a record written to output `output`.
    fn identify(&self, output: usize, value: &[u8]) -> Option<Identified>;
}

/// A new chain for a running processor (hot-swap). The processor warms it
/// over the current state window, then switches between two batches.
pub struct Swap<C> {
    pub chain: C,
    /// Answered with how many records warmed the new chain, or why not.
    pub done: oneshot::Sender<Result<usize, String>>,
}

impl<C> std::fmt::Debug for Swap<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swap").finish_non_exhaustive()
    }
}

/// What a recovering processor has already written past its checkpoint.
#[derive(Debug, Default)]
struct AlreadyWritten {
    /// (output index, identity) of every record written past the checkpoint.
    seen: HashSet<(usize, u64)>,
    /// Highest source offset among them; past it nothing can be a repeat.
    until: Option<u64>,
}

impl AlreadyWritten {
    fn is_empty(&self) -> bool {
        self.until.is_none() && self.seen.is_empty()
    }
}

/// What every processor of a pipeline shares; cloned per partition.
pub struct ProcessorContext<B> {
    pub backend: Arc<B>,
    /// The keyed, partitioned input topic.
    pub input: String,
    pub router: Arc<dyn Router>,
    pub config: ProcessorConfig,
    pub store: CheckpointStore,
    pub metrics: Metrics,
}

impl<B> std::fmt::Debug for ProcessorContext<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext")
            .field("input", &self.input)
            .field("outputs", &self.router.outputs())
            .finish_non_exhaustive()
    }
}

impl<B> Clone for ProcessorContext<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            input: self.input.clone(),
            router: Arc::clone(&self.router),
            config: self.config.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// One input partition's processor.
pub struct Processor<B, C> {
    ctx: ProcessorContext<B>,
    outputs: Vec<String>,
    chain: C,
    partition: u32,
    progress: Arc<Progress>,
    swaps: Option<mpsc::Receiver<Swap<C>>>,
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
            outputs: ctx.router.outputs(),
            ctx,
            chain,
            partition,
            progress,
            swaps: None,
        }
    }

    /// Accepts replacement chains from `swaps` while running (hot-swap).
    pub fn with_swaps(mut self, swaps: mpsc::Receiver<Swap<C>>) -> Self {
        self.swaps = Some(swaps);
        self
    }

    /// The checkpoint name of partition `p`'s processor.
    pub fn checkpoint_name(partition: u32) -> String {
        format!("processor-{partition}")
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

        // First offset and newest timestamp of recent batches: where to
        // replay from to rebuild state (checkpoints, swaps).
        let mut batches: VecDeque<(u64, i64)> = VecDeque::new();
        if checkpoint.warm_from < position {
            batches.push_back((checkpoint.warm_from, i64::MIN));
        }
        let mut swaps = self.swaps.take();
        let mut since_checkpoint = 0u64;
        let mut last_checkpoint = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let fetched = tokio::select! {
                r = self.ctx.backend.fetch(&self.ctx.input, p, position, self.ctx.config.batch_max, self.ctx.config.fetch_wait) => r?,
                _ = shutdown.changed() => Vec::new(),
                Some(swap) = next_swap(&mut swaps) => {
                    let warm_from = batches.front().map_or(position, |b| b.0);
                    self.swap(swap, warm_from, position).await;
                    Vec::new()
                }
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
                batches.push_back((first.offset, newest));
                let cutoff = newest.saturating_sub(self.ctx.config.warm_window_ms);
                while batches.len() > 1 && batches[1].1 <= cutoff {
                    batches.pop_front();
                }
            }
            let hw = self.ctx.backend.high_watermark(&self.ctx.input, p).await?;
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

    /// Warms `swap.chain` over inputs `warm_from..position`, then makes it
    /// the processor's chain. Runs between batches, so every reading is
    /// scored by exactly one of the two chains.
    async fn swap(&mut self, swap: Swap<C>, warm_from: u64, position: u64) {
        let Swap { mut chain, done } = swap;
        let started = Instant::now();
        let result = replay(&self.ctx, self.partition, &mut chain, warm_from, position).await;
        let answer = match result {
            Ok(warmed) => {
                self.chain = chain;
                tracing::info!(
                    partition = self.partition,
                    warmed,
                    position,
                    took_ms = started.elapsed().as_millis() as u64,
                    "Chain swapped; state re-warmed."
                );
                Ok(warmed)
            }
            Err(e) => {
                tracing::error!(partition = self.partition, error = %e, "Swap failed while warming; the old chain keeps running.");
                Err(e.to_string())
            }
        };
        let _ = done.send(answer);
    }

    async fn checkpoint(&self, input_offset: u64, warm_from: u64) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let mut outputs = std::collections::BTreeMap::new();
        for topic in &self.outputs {
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
        let name = Self::checkpoint_name(self.partition);
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
        let start = self.ctx.backend.log_start(&self.ctx.input, p).await?;
        let mut checkpoint = self
            .ctx
            .store
            .load(&Self::checkpoint_name(p))?
            .unwrap_or_default();
        checkpoint.input_offset = checkpoint.input_offset.max(start);
        checkpoint.warm_from = checkpoint.warm_from.clamp(start, checkpoint.input_offset);

        let mut already = AlreadyWritten::default();
        for (index, topic) in self.outputs.iter().enumerate() {
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
                    if let Some(id) = self.ctx.router.identify(index, &r.value) {
                        already.seen.insert((index, id.identity));
                        if let Some(o) = id.source_offset {
                            already.until = Some(already.until.map_or(o, |u| u.max(o)));
                        }
                    }
                }
            }
        }
        if !already.is_empty() {
            tracing::info!(partition = p, until = ?already.until, "Outputs past the checkpoint found; re-processing will skip them.");
        }

        let warmed = replay(
            &self.ctx,
            p,
            &mut self.chain,
            checkpoint.warm_from,
            checkpoint.input_offset,
        )
        .await?;
        if warmed > 0 {
            tracing::info!(
                partition = p,
                warmed,
                "Detector state rebuilt from the input window."
            );
        }
        Ok((checkpoint, already))
    }

    async fn process_batch(
        &mut self,
        records: &[InRecord],
        already: &mut AlreadyWritten,
    ) -> Result<(), ProcessorError> {
        let p = self.partition;
        let now = now_ms();
        let started = Instant::now();
        let outputs = self.chain.process(records, now)?;
        self.ctx.metrics.stage_duration("detect", started.elapsed());
        let mut routed = Vec::with_capacity(records.len() * 2);
        let mut per_topic: Vec<Vec<OutRecord>> = vec![Vec::new(); self.outputs.len()];
        for (input, output) in records.iter().zip(outputs) {
            routed.clear();
            self.ctx
                .router
                .route(p, input, &output, &mut routed)
                .map_err(|message| ProcessorError::BadOutput {
                    partition: p,
                    offset: input.offset,
                    message,
                })?;
            let repeat = already.until.is_some_and(|u| input.offset <= u);
            for r in routed.drain(..) {
                if repeat && already.seen.contains(&(r.output, r.identity)) {
                    continue;
                }
                if let Some(topic) = per_topic.get_mut(r.output) {
                    topic.push(r.record);
                }
            }
        }
        if let Some(last) = records.last()
            && already.until.is_some_and(|u| last.offset >= u)
        {
            *already = AlreadyWritten::default();
        }
        let appends = self
            .outputs
            .iter()
            .zip(per_topic)
            .filter(|(_, records)| !records.is_empty())
            .map(|(topic, records)| self.ctx.backend.append(topic, p, records));
        let started = Instant::now();
        for r in futures::future::join_all(appends).await {
            if let Err(e) = r {
                self.ctx.metrics.stage_error("append", e.is_retryable());
                return Err(e.into());
            }
        }
        self.ctx.metrics.stage_duration("append", started.elapsed());
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

/// The next swap request, or never if the processor takes none.
async fn next_swap<C>(swaps: &mut Option<mpsc::Receiver<Swap<C>>>) -> Option<Swap<C>> {
    match swaps {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Feeds inputs `from..until` through `chain` for state only.
async fn replay<B: TopicBackend, C: Chain>(
    ctx: &ProcessorContext<B>,
    partition: u32,
    chain: &mut C,
    from: u64,
    until: u64,
) -> Result<usize, ProcessorError> {
    let mut at = from;
    let now = now_ms();
    let mut warmed = 0usize;
    while at < until {
        let max = (until - at).min(10_000) as usize;
        let records = ctx
            .backend
            .fetch(&ctx.input, partition, at, max, Duration::ZERO)
            .await?;
        let Some(last) = records.last() else { break };
        at = last.offset + 1;
        warmed += records.len();
        chain.warm(&records, now)?;
    }
    Ok(warmed)
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
