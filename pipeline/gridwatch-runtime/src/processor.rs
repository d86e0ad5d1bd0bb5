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
//!    The appends run in the background while the next batch goes through
//!    the chain, one batch in flight at a time; the position producers
//!    wait on moves only once they are durable.
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
//! With every time-based checkpoint the processor also writes a snapshot of
//! the chain's state (its modules' linear memory, see
//! [`Chain::snapshot`]). Recovery restores it and replays only the inputs
//! after it, so restart time no longer grows with the window: that is what
//! keeps the RTO under 5 s with 10,000 meters. Without a usable snapshot
//! (none yet, damaged, or taken of other modules) recovery replays from
//! `warm_from`.
//!
//! A record the chain cannot process (a trap, the call's deadline or the
//! memory limit) must not stop the partition. When a batch fails, the
//! processor resets the chain, rebuilds its state up to the batch and feeds
//! the batch one record at a time: the record that fails alone goes to the
//! dead letters with the error (via [`Router::dead_letter`]), its offset is
//! remembered in the checkpoint so that state rebuilds skip it, and the
//! stream goes on. A batch that passes record by record (a deadline missed
//! under load) loses nothing.
//!
//! A running processor also takes a replacement chain ([`Swap`]): it warms
//! the new chain over the same window and switches between two batches, so
//! a hot-swap neither loses nor repeats a record.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::backend::{BackendError, InRecord, OutRecord, TopicBackend};
use crate::chain::{Chain, ChainError};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, StateSnapshot};
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
    /// Least time between two state snapshots, written with a checkpoint;
    /// `None` turns them off (recovery then always replays the window).
    pub snapshot_interval: Option<Duration>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            batch_max: 10_000,
            checkpoint_events: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            warm_window_ms: 305_000,
            fetch_wait: Duration::from_millis(200),
            snapshot_interval: Some(Duration::from_secs(10)),
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
    #[error("the output appends of partition {partition} stopped: {message}")]
    AppendTask { partition: u32, message: String },
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

    /// The dead letter for an input the chain failed on alone, carrying
    /// `message` and the input's bytes. Its identity must be what
    /// [`Router::identify`] finds in it, like any output. `None` (the
    /// default) drops the input with an error in the log.
    fn dead_letter(&self, partition: u32, input: &InRecord, message: &str) -> Option<Routed> {
        let _ = (partition, input, message);
        None
    }
}

/// What the chain made of one input record.
type Outcome = Result<Bytes, String>;

/// A replay stopped by a chain fault in `range`; its state is lost.
#[derive(Debug)]
struct ReplayFault {
    range: Range<u64>,
    error: ChainError,
    /// The range is one input, fed alone.
    alone: bool,
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
    /// First offset and newest timestamp of recent batches: where to
    /// replay from to rebuild state (checkpoints, swaps, faults).
    window: VecDeque<(u64, i64)>,
    /// Inputs dead-lettered because the chain failed on them alone.
    poisoned: BTreeSet<u64>,
    last_snapshot: Option<Instant>,
    /// The state snapshot being written in the background, if any.
    snapshot_write: Option<tokio::task::JoinHandle<Result<(), CheckpointError>>>,
    /// The last batch's output appends, still in flight (see
    /// [`Processor::start_appends`]).
    appending: Option<tokio::task::JoinHandle<Result<(), BackendError>>>,
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
            window: VecDeque::new(),
            poisoned: BTreeSet::new(),
            last_snapshot: None,
            snapshot_write: None,
            appending: None,
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

        if checkpoint.warm_from < position {
            self.window.push_back((checkpoint.warm_from, i64::MIN));
        }
        let mut swaps = self.swaps.take();
        let mut since_checkpoint = 0u64;
        let mut last_checkpoint = Instant::now();
        let mut fetch_failures = 0u32;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let fetched = tokio::select! {
                r = self.ctx.backend.fetch(&self.ctx.input, p, position, self.ctx.config.batch_max, self.ctx.config.fetch_wait) => match r {
                    Ok(records) => {
                        fetch_failures = 0;
                        records
                    }
                    // A networked backend (a Fluvio SPU restarting, a
                    // module not yet propagated) fails reads for a while;
                    // retry with backoff rather than give up the partition.
                    Err(e) if e.is_retryable() || fetch_failures < 5 => {
                        fetch_failures += 1;
                        self.ctx.metrics.stage_error("fetch", true);
                        let delay = Duration::from_millis(100 << fetch_failures.min(6));
                        tracing::warn!(partition = p, position, attempt = fetch_failures, retry_in_ms = delay.as_millis() as u64, error = %e, "Reading the input failed; retrying.");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => {}
                        }
                        Vec::new()
                    }
                    Err(e) => return Err(e.into()),
                },
                _ = shutdown.changed() => Vec::new(),
                Some(swap) = next_swap(&mut swaps) => {
                    self.finish_appends().await?;
                    self.swap(swap, self.warm_from(position), position).await;
                    Vec::new()
                }
            };
            if let Some(first) = fetched.first() {
                let newest = fetched
                    .last()
                    .map_or(first.timestamp_ms, |r| r.timestamp_ms);
                let outputs = self.process_batch(&fetched, &mut already).await?;
                self.finish_appends().await?;
                self.start_appends(outputs);
                position = fetched.last().map_or(position, |r| r.offset + 1);
                since_checkpoint += fetched.len() as u64;
                self.window.push_back((first.offset, newest));
                let cutoff = newest.saturating_sub(self.ctx.config.warm_window_ms);
                while self.window.len() > 1 && self.window[1].1 <= cutoff {
                    self.window.pop_front();
                }
            }
            let hw = self.ctx.backend.high_watermark(&self.ctx.input, p).await?;
            self.ctx.metrics.set_lag(p, hw.saturating_sub(position));
            if since_checkpoint >= self.ctx.config.checkpoint_events
                || (since_checkpoint > 0
                    && last_checkpoint.elapsed() >= self.ctx.config.checkpoint_interval)
            {
                self.checkpoint(position).await?;
                since_checkpoint = 0;
                last_checkpoint = Instant::now();
            }
        }
        self.checkpoint(position).await?;
        self.finish_snapshot_write().await;
        tracing::info!(
            partition = p,
            position,
            "Processor stopped after a final checkpoint."
        );
        Ok(())
    }

    /// Where replaying input must start to rebuild state as of `position`.
    fn warm_from(&self, position: u64) -> u64 {
        self.window.front().map_or(position, |b| b.0)
    }

    /// Warms `swap.chain` over inputs `warm_from..position`, then makes it
    /// the processor's chain. Runs between batches, so every reading is
    /// scored by exactly one of the two chains.
    async fn swap(&mut self, swap: Swap<C>, warm_from: u64, position: u64) {
        let Swap { mut chain, done } = swap;
        let started = Instant::now();
        let result = replay(
            &self.ctx,
            self.partition,
            &mut chain,
            warm_from..position,
            &self.poisoned,
            None,
        )
        .await;
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
                let e = match e {
                    Ok(fault) => fault.error.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!(partition = self.partition, error = %e, "Swap failed while warming; the old chain keeps running.");
                Err(e)
            }
        };
        let _ = done.send(answer);
    }

    async fn checkpoint(&mut self, input_offset: u64) -> Result<(), ProcessorError> {
        // A checkpoint names output positions: every output before it
        // must be durable.
        self.finish_appends().await?;
        let started = Instant::now();
        let warm_from = self.warm_from(input_offset);
        self.poisoned = self.poisoned.split_off(&warm_from);
        if let Some(state) = self.chain.state_size() {
            self.ctx
                .metrics
                .set_detector_state(self.partition, state.meters, Some(state.bytes));
        }
        let due = self
            .ctx
            .config
            .snapshot_interval
            .is_some_and(|every| self.last_snapshot.is_none_or(|at| at.elapsed() >= every));
        if due {
            self.save_snapshot(input_offset).await?;
        }
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
            poisoned: self.poisoned.iter().copied().collect(),
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

    /// Writes the chain's state as of `input_offset` in the background.
    ///
    /// Only copying the modules' memory happens here, between batches; the
    /// encoding, the write and the fsyncs (of the modules' whole memory)
    /// run on a blocking thread while the processor goes on, so readings
    /// never wait for the disk on a snapshot's account. One write is in
    /// flight at a time: a snapshot that falls due while the last one is
    /// still being written is taken at the next checkpoint instead.
    ///
    /// The checkpoint naming `input_offset` may then be durable before the
    /// snapshot is, or after; recovery is right either way, because it uses
    /// a snapshot only within `warm_from..=checkpoint` and replays the
    /// inputs after it. A failed write costs only recovery time, so it is a
    /// warning, not a processor error.
    async fn save_snapshot(&mut self, input_offset: u64) -> Result<(), ProcessorError> {
        if self
            .snapshot_write
            .as_ref()
            .is_some_and(|w| !w.is_finished())
        {
            return Ok(());
        }
        self.finish_snapshot_write().await;
        let Some(snapshot) = self.chain.snapshot() else {
            return Ok(());
        };
        let started = Instant::now();
        let chain = match snapshot {
            Ok(chain) => chain,
            Err(e) => {
                tracing::warn!(partition = self.partition, error = %e, "Chain state snapshot failed; recovery will replay the window.");
                return Ok(());
            }
        };
        self.last_snapshot = Some(Instant::now());
        let copied = started.elapsed();
        // The only part the processor waits for: `snapshot` below is the whole.
        self.ctx.metrics.stage_duration("snapshot_copy", copied);
        let bytes = chain.len();
        let store = self.ctx.store.clone();
        let name = Self::checkpoint_name(self.partition);
        let metrics = self.ctx.metrics.clone();
        let partition = self.partition;
        let snapshot = StateSnapshot {
            input_offset,
            chain,
        };
        self.snapshot_write = Some(tokio::task::spawn_blocking(move || {
            let written = Instant::now();
            store.save_snapshot(&name, &snapshot)?;
            metrics.stage_duration("snapshot", copied + written.elapsed());
            tracing::debug!(
                partition,
                input_offset,
                bytes,
                copy_ms = copied.as_millis() as u64,
                write_ms = written.elapsed().as_millis() as u64,
                "Chain state snapshot written."
            );
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the snapshot being written, if any, and reports how it went.
    async fn finish_snapshot_write(&mut self) {
        let Some(write) = self.snapshot_write.take() else {
            return;
        };
        let failed = match write.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(partition = self.partition, error = %failed, "Writing the chain state snapshot failed; recovery will replay the window.");
    }

    /// Rebuilds chain state as of `until` into a fresh chain: restores the
    /// stored snapshot when it fits (taken of these modules, within
    /// `warm_from..=until`) and replays the inputs after it, else replays
    /// `warm_from..until`. A replay the chain fails on is started again from
    /// the beginning with the failing range fed one record at a time; a
    /// record that fails alone there is skipped and remembered.
    async fn rebuild_state(&mut self, warm_from: u64, until: u64) -> Result<usize, ProcessorError> {
        let p = self.partition;
        let store = self.ctx.store.clone();
        let name = Self::checkpoint_name(p);
        let snapshot = tokio::task::spawn_blocking(move || store.load_snapshot(&name))
            .await
            .map_err(|e| BackendError::Task(e.to_string()))??
            .filter(|s| (warm_from..=until).contains(&s.input_offset));
        let mut careful: Option<Range<u64>> = None;
        for attempt in 0..8 {
            if attempt > 0 {
                self.chain.reset()?;
            }
            let mut from = warm_from;
            if let Some(s) = &snapshot {
                match self.chain.restore(&s.chain) {
                    Ok(true) => from = s.input_offset,
                    Ok(false) => tracing::info!(
                        partition = p,
                        "The state snapshot was taken of other modules; replaying the window instead."
                    ),
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "Restoring the state snapshot failed; replaying the window instead.")
                    }
                }
            }
            let replayed = replay(
                &self.ctx,
                p,
                &mut self.chain,
                from..until,
                &self.poisoned,
                careful.clone(),
            )
            .await;
            match replayed {
                Ok(warmed) => {
                    if from > warm_from || warmed > 0 {
                        tracing::info!(
                            partition = p,
                            snapshot_at = (from > warm_from).then_some(from),
                            replayed = warmed,
                            "Chain state rebuilt."
                        );
                    }
                    return Ok(warmed);
                }
                Err(Ok(fault)) if fault.alone => {
                    tracing::error!(partition = p, offset = fault.range.start, error = %fault.error, "An input the chain processed before fails it alone now; it is left out of the rebuilt state.");
                    self.poisoned.insert(fault.range.start);
                }
                Err(Ok(fault)) => {
                    tracing::warn!(partition = p, from = fault.range.start, until = fault.range.end, error = %fault.error, "The chain failed while rebuilding state; starting again, one record at a time over that range.");
                    careful = Some(match careful {
                        Some(r) => r.start.min(fault.range.start)..r.end.max(fault.range.end),
                        None => fault.range,
                    });
                }
                Err(Err(e)) => return Err(e),
            }
        }
        Err(ProcessorError::Chain(ChainError::Process {
            offset: warm_from,
            message: "rebuilding state failed eight times in a row".into(),
        }))
    }

    /// Loads the checkpoint, reads back what was written after it, and
    /// rebuilds chain state up to it.
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
        self.poisoned = checkpoint.poisoned.iter().copied().collect();

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

        self.rebuild_state(checkpoint.warm_from, checkpoint.input_offset)
            .await?;
        Ok((checkpoint, already))
    }

    /// Runs a batch through the chain and routes its outputs, leaving out
    /// what a crashed run already wrote.
    async fn process_batch(
        &mut self,
        records: &[InRecord],
        already: &mut AlreadyWritten,
    ) -> Result<BatchOutputs, ProcessorError> {
        let p = self.partition;
        let now = now_ms();
        let started = Instant::now();
        let outputs = self.run_chain(records, now).await?;
        self.ctx.metrics.stage_duration("detect", started.elapsed());
        let mut routed = Vec::with_capacity(records.len() * 2);
        let mut per_topic: Vec<Vec<OutRecord>> = vec![Vec::new(); self.outputs.len()];
        for (input, output) in records.iter().zip(outputs) {
            routed.clear();
            match output {
                Ok(output) => self
                    .ctx
                    .router
                    .route(p, input, &output, &mut routed)
                    .map_err(|message| ProcessorError::BadOutput {
                        partition: p,
                        offset: input.offset,
                        message,
                    })?,
                Err(message) => match self.ctx.router.dead_letter(p, input, &message) {
                    Some(r) => routed.push(r),
                    None => tracing::error!(
                        partition = p,
                        offset = input.offset,
                        error = %message,
                        "The chain failed on this input and the router has no dead letters; it is dropped."
                    ),
                },
            }
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
        Ok(BatchOutputs {
            per_topic,
            append_times: records
                .iter()
                .map(|r| r.timestamp_ms)
                // A record without an append time (a Fluvio SPU's
                // SmartModule output batch carries none) says nothing about
                // latency; counting it would put it at the histogram's 60 s
                // cap.
                .filter(|&t| t > 0)
                .collect(),
            processed: records.len() as u64,
            end: records.last().map(|r| r.offset + 1),
        })
    }

    /// Appends a batch's outputs in the background, so the chain works on
    /// the next batch while these wait for their fsync. One batch at a
    /// time is in flight, so outputs keep their order; the progress ingest
    /// waits on, the latency histogram and the processed count move only
    /// once the outputs are durable.
    fn start_appends(&mut self, outputs: BatchOutputs) {
        let backend = Arc::clone(&self.ctx.backend);
        let metrics = self.ctx.metrics.clone();
        let progress = Arc::clone(&self.progress);
        let p = self.partition;
        let topics = self.outputs.clone();
        self.appending = Some(tokio::spawn(async move {
            let started = Instant::now();
            let appends = topics
                .iter()
                .zip(outputs.per_topic)
                .filter(|(_, records)| !records.is_empty())
                .map(|(topic, records)| backend.append(topic, p, records));
            for r in futures::future::join_all(appends).await {
                if let Err(e) = r {
                    metrics.stage_error("append", e.is_retryable());
                    return Err(e);
                }
            }
            metrics.stage_duration("append", started.elapsed());
            let wall = now_ms();
            metrics.latencies(
                outputs
                    .append_times
                    .iter()
                    .map(|&t| Duration::from_millis((wall - t).max(0) as u64)),
            );
            metrics.processed(outputs.processed);
            if let Some(end) = outputs.end {
                progress.position.store(end, Ordering::Release);
                progress.advanced.notify_waiters();
            }
            Ok(())
        }));
    }

    /// Waits for the batch in flight, if any; its append error is the
    /// processor's.
    async fn finish_appends(&mut self) -> Result<(), ProcessorError> {
        let Some(appending) = self.appending.take() else {
            return Ok(());
        };
        match appending.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(ProcessorError::AppendTask {
                partition: self.partition,
                message: e.to_string(),
            }),
        }
    }
}

/// A routed batch, ready to append.
struct BatchOutputs {
    /// Indexed like the router's outputs.
    per_topic: Vec<Vec<OutRecord>>,
    append_times: Vec<i64>,
    processed: u64,
    /// The input offset after the batch.
    end: Option<u64>,
}

impl<B: TopicBackend, C: Chain> Processor<B, C> {
    /// Runs a batch through the chain, isolating records it fails on alone
    /// (see the module docs). A chain that cannot reset fails the batch.
    async fn run_chain(
        &mut self,
        records: &[InRecord],
        now: i64,
    ) -> Result<Vec<Outcome>, ProcessorError> {
        let p = self.partition;
        let mut results = Vec::with_capacity(records.len());
        // The window does not hold this batch yet; rebuilds start before it.
        let warm_from = self.warm_from(records.first().map_or(0, |r| r.offset));
        let mut rest = records;
        while let Some(first) = rest.first() {
            let error = match self.chain.process(rest, now) {
                Ok(out) => {
                    results.extend(out.into_iter().map(Ok));
                    break;
                }
                Err(e) => e,
            };
            if matches!(self.chain.reset(), Err(ChainError::Unsupported { .. })) {
                return Err(error.into());
            }
            tracing::warn!(
                partition = p,
                from = first.offset,
                records = rest.len(),
                error = %error,
                "The chain failed on a batch; rebuilding its state and feeding the batch one record at a time."
            );
            self.rebuild_state(warm_from, first.offset).await?;
            let mut failed = None;
            for (i, r) in rest.iter().enumerate() {
                match self.chain.process(std::slice::from_ref(r), now) {
                    Ok(mut out) if out.len() == 1 => results.extend(out.pop().map(Ok)),
                    Ok(out) => {
                        failed = Some((
                            i,
                            ChainError::Cardinality {
                                want: 1,
                                got: out.len(),
                            },
                        ));
                        break;
                    }
                    Err(e) => {
                        failed = Some((i, e));
                        break;
                    }
                }
            }
            let Some((i, e)) = failed else { break };
            let bad = &rest[i];
            tracing::error!(
                partition = p,
                offset = bad.offset,
                bytes = bad.value.len(),
                error = %e,
                "The chain fails on this record alone; it goes to the dead letters and the stream goes on."
            );
            results.push(Err(e.to_string()));
            self.poisoned.insert(bad.offset);
            self.chain.reset()?;
            self.rebuild_state(warm_from, bad.offset + 1).await?;
            rest = &rest[i + 1..];
        }
        Ok(results)
    }
}

/// The next swap request, or never if the processor takes none.
async fn next_swap<C>(swaps: &mut Option<mpsc::Receiver<Swap<C>>>) -> Option<Swap<C>> {
    match swaps {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Feeds inputs in `range` through `chain` for state only, leaving out
/// `skip`. Inputs in `careful` go one at a time, so that a fault there
/// names the one input that fails alone.
async fn replay<B: TopicBackend, C: Chain>(
    ctx: &ProcessorContext<B>,
    partition: u32,
    chain: &mut C,
    range: Range<u64>,
    skip: &BTreeSet<u64>,
    careful: Option<Range<u64>>,
) -> Result<usize, Result<ReplayFault, ProcessorError>> {
    let mut at = range.start;
    let now = now_ms();
    let mut warmed = 0usize;
    while at < range.end {
        let max = (range.end - at).min(10_000) as usize;
        let mut records = ctx
            .backend
            .fetch(&ctx.input, partition, at, max, Duration::ZERO)
            .await
            .map_err(|e| Err(e.into()))?;
        let Some(last) = records.last() else { break };
        let fetched = at..last.offset + 1;
        at = fetched.end;
        records.retain(|r| !skip.contains(&r.offset));
        warmed += records.len();
        let slow = careful
            .as_ref()
            .is_some_and(|c| c.start < fetched.end && fetched.start < c.end);
        if slow {
            for r in &records {
                chain.warm(std::slice::from_ref(r), now).map_err(|error| {
                    Ok(ReplayFault {
                        range: r.offset..r.offset + 1,
                        error,
                        alone: true,
                    })
                })?;
            }
        } else {
            chain.warm(&records, now).map_err(|error| {
                Ok(ReplayFault {
                    range: fetched,
                    error,
                    alone: false,
                })
            })?;
        }
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

/// Frames an already encoded contract datum for a topic.
pub fn framed(key: Option<Bytes>, schema_id: u64, datum: &[u8], timestamp_ms: i64) -> OutRecord {
    let mut buf = Vec::with_capacity(1 + 4 + datum.len());
    framing::write_header(&mut buf, schema_id, IdWidth::ContentId4);
    buf.extend_from_slice(datum);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use gridwatch_log::{LogOptions, TopicConfig};

    use super::*;
    use crate::backend::embedded::EmbeddedBackend;
    use crate::chain::ChainSnapshot;

    /// A running sum of the inputs (decimal text): each output is the sum so
    /// far, so outputs are right only if state was rebuilt right. Fails on
    /// `poison`, and on any batch larger than `fail_above` (like a deadline
    /// missed under load, which one record at a time does not miss).
    struct Summing {
        sum: u64,
        fail_above: usize,
        resets: Arc<AtomicUsize>,
    }

    impl Chain for Summing {
        fn process(&mut self, records: &[InRecord], _: i64) -> Result<Vec<Bytes>, ChainError> {
            let fail = |offset| ChainError::Process {
                offset,
                message: "trapped".into(),
            };
            if records.len() > self.fail_above {
                return Err(fail(records[0].offset));
            }
            let mut out = Vec::new();
            for r in records {
                let n: u64 = std::str::from_utf8(&r.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| fail(r.offset))?;
                self.sum += n;
                out.push(Bytes::from(format!("{}:{}", r.offset, self.sum)));
            }
            Ok(out)
        }

        fn reset(&mut self) -> Result<(), ChainError> {
            self.sum = 0;
            self.resets.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }

        fn snapshot(&self) -> Option<Result<ChainSnapshot, ChainError>> {
            Some(Ok(ChainSnapshot {
                fingerprint: "summing".into(),
                images: vec![self.sum.to_le_bytes().to_vec()],
            }))
        }

        fn restore(&mut self, snapshot: &ChainSnapshot) -> Result<bool, ChainError> {
            let bytes =
                snapshot.images[0]
                    .as_slice()
                    .try_into()
                    .map_err(|_| ChainError::Restore {
                        message: "not a u64".into(),
                    })?;
            self.sum = u64::from_le_bytes(bytes);
            Ok(true)
        }
    }

    struct Split;

    fn offset_of(value: &[u8]) -> Option<u64> {
        std::str::from_utf8(value)
            .ok()?
            .split(':')
            .next()?
            .parse()
            .ok()
    }

    impl Router for Split {
        fn outputs(&self) -> Vec<String> {
            vec!["sums".into(), "dlq".into()]
        }

        fn route(
            &self,
            _: u32,
            input: &InRecord,
            output: &[u8],
            out: &mut Vec<Routed>,
        ) -> Result<(), String> {
            out.push(Routed {
                output: 0,
                identity: input.offset,
                record: OutRecord {
                    key: None,
                    value: Bytes::copy_from_slice(output),
                    timestamp_ms: input.timestamp_ms,
                },
            });
            Ok(())
        }

        fn identify(&self, _: usize, value: &[u8]) -> Option<Identified> {
            let o = offset_of(value)?;
            Some(Identified {
                source_offset: Some(o),
                identity: o,
            })
        }

        fn dead_letter(&self, _: u32, input: &InRecord, message: &str) -> Option<Routed> {
            Some(Routed {
                output: 1,
                identity: input.offset,
                record: OutRecord {
                    key: None,
                    value: Bytes::from(format!("{}:{message}", input.offset)),
                    timestamp_ms: input.timestamp_ms,
                },
            })
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        backend: Arc<EmbeddedBackend>,
        resets: Arc<AtomicUsize>,
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let backend = Arc::new(
                EmbeddedBackend::open(
                    &dir.path().join("t"),
                    LogOptions::default(),
                    TopicConfig::new(1),
                )
                .unwrap(),
            );
            for t in ["in", "sums", "dlq"] {
                backend.ensure_topic(t, 1).await.unwrap();
            }
            Self {
                dir,
                backend,
                resets: Arc::default(),
            }
        }

        async fn send(&self, values: &[&str]) {
            let records = values
                .iter()
                .map(|v| OutRecord {
                    key: None,
                    value: Bytes::from(v.to_string()),
                    timestamp_ms: 1_000,
                })
                .collect();
            self.backend.append("in", 0, records).await.unwrap();
        }

        /// Runs a processor until it has consumed everything, then stops it.
        async fn run(&self, fail_above: usize, snapshots: bool) {
            let config = ProcessorConfig {
                batch_max: 64,
                warm_window_ms: i64::MAX / 4,
                fetch_wait: Duration::from_millis(20),
                snapshot_interval: snapshots.then_some(Duration::ZERO),
                ..ProcessorConfig::default()
            };
            let ctx = ProcessorContext {
                backend: Arc::clone(&self.backend),
                input: "in".into(),
                router: Arc::new(Split),
                config,
                store: CheckpointStore::open(self.dir.path().join("cp")).unwrap(),
                metrics: Metrics::new(),
            };
            let chain = Summing {
                sum: 0,
                fail_above,
                resets: Arc::clone(&self.resets),
            };
            let progress = Arc::new(Progress::default());
            let (stop, shutdown) = watch::channel(false);
            let task =
                tokio::spawn(Processor::new(ctx, 0, chain, Arc::clone(&progress)).run(shutdown));
            let end = self.backend.high_watermark("in", 0).await.unwrap();
            while progress.position.load(Ordering::Acquire) < end {
                assert!(
                    !task.is_finished(),
                    "the processor stopped: {:?}",
                    task.await
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.send(true).unwrap();
            task.await.unwrap().unwrap();
        }

        async fn read(&self, topic: &str) -> Vec<String> {
            self.backend
                .fetch(topic, 0, 0, 100_000, Duration::ZERO)
                .await
                .unwrap()
                .iter()
                .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
                .collect()
        }
    }

    /// `offset:sum` of `1..=n` sent as decimals, leaving out the offsets in
    /// `bad`.
    fn sums(n: u64, bad: &[u64]) -> Vec<String> {
        let mut sum = 0;
        (0..n)
            .filter(|o| !bad.contains(o))
            .map(|o| {
                sum += o + 1;
                format!("{o}:{sum}")
            })
            .collect()
    }

    fn values(n: u64, bad: &[u64]) -> Vec<String> {
        (0..n)
            .map(|o| {
                if bad.contains(&o) {
                    "poison".to_string()
                } else {
                    (o + 1).to_string()
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn a_record_that_fails_alone_is_dead_lettered_and_the_stream_goes_on() {
        let f = Fixture::new().await;
        let bad = [37, 38, 90];
        let v = values(150, &bad);
        f.send(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        f.run(usize::MAX, true).await;
        assert_eq!(f.read("sums").await, sums(150, &bad));
        let dlq = f.read("dlq").await;
        assert_eq!(dlq.len(), 3, "{dlq:?}");
        for (d, o) in dlq.iter().zip(bad) {
            assert!(d.starts_with(&format!("{o}:")), "{d}");
            assert!(
                d.contains("trapped"),
                "the chain's error is the reason: {d}"
            );
        }
        let checkpoint = CheckpointStore::open(f.dir.path().join("cp"))
            .unwrap()
            .load("processor-0")
            .unwrap()
            .unwrap();
        assert_eq!(checkpoint.poisoned, bad.to_vec());

        // After a restart the state (from the snapshot) leaves them out too.
        f.send(&["1000"]).await;
        f.run(usize::MAX, true).await;
        let all = f.read("sums").await;
        let last_sum: u64 = sums(150, &bad).last().unwrap()[4..].parse().unwrap();
        assert_eq!(all.last().unwrap(), &format!("150:{}", last_sum + 1000));
        assert_eq!(f.read("dlq").await.len(), 3, "no dead letter twice");
    }

    #[tokio::test]
    async fn without_snapshots_the_rebuild_replays_and_skips_known_poison() {
        let f = Fixture::new().await;
        let bad = [5, 70];
        let v = values(100, &bad);
        f.send(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        f.run(usize::MAX, false).await;
        f.send(&["1000"]).await;
        f.run(usize::MAX, false).await;
        let mut want = sums(100, &bad);
        let last: u64 = want.last().unwrap()[3..].parse().unwrap();
        want.push(format!("100:{}", last + 1000));
        assert_eq!(f.read("sums").await, want);
        assert_eq!(f.read("dlq").await.len(), 2);
    }

    #[tokio::test]
    async fn a_batch_that_passes_record_by_record_loses_nothing() {
        let f = Fixture::new().await;
        let v = values(200, &[]);
        f.send(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        // Batches of up to 64 fail; single records pass.
        f.run(10, true).await;
        assert_eq!(f.read("sums").await, sums(200, &[]));
        assert!(f.read("dlq").await.is_empty());
        assert!(f.resets.load(Ordering::Relaxed) > 0, "the fault path ran");
    }
}
