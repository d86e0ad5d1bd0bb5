//! The builder API: a pipeline declared in one place.
//!
//! ```ignore
//! let running = Pipeline::builder(backend)
//!     .input("readings")                       // keyed, partitioned source topic
//!     .partitions(0..2)                        // the ones this instance owns
//!     .chain(move |_p| WasmChain::new(&engine, &modules).map(boxed))
//!     .router(GridRouter::new(topics, ids, metrics.clone()))
//!     .checkpoints(store, processor_config)    // SR-004, state windows
//!     .sink("anomalies", |_p| async { InfluxDbSink::new(&config) })
//!     .metrics(metrics)
//!     .run(shutdown)?;
//! ```
//!
//! What the builder wires, so applications do not have to:
//! - one [`Processor`] per owned partition, with checkpoints, exactly-once
//!   recovery and hot-swap ([`RunningPipeline::swap`]);
//! - one [`SinkRunner`] per sink and partition, with the shared retry
//!   policy and its own checkpoints;
//! - the [`Progress`] of each partition, for ingest backpressure.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use gridwatch_connector::{RetryPolicy, Sink};

use crate::backend::{BackendError, InRecord, TopicBackend};
use crate::chain::{Chain, ChainError};
use crate::checkpoint::CheckpointStore;
use crate::metrics::Metrics;
use crate::processor::{
    Processor, ProcessorConfig, ProcessorContext, ProcessorError, Progress, Router, Swap,
};
use crate::sink::{DeadLetterTopic, SinkRunner, SinkRunnerConfig, SinkRunnerError};

/// A chain of any kind, so one pipeline type covers WASM and native chains.
pub type BoxChain = Box<dyn Chain + Sync>;

impl Chain for BoxChain {
    fn process(
        &mut self,
        records: &[InRecord],
        now_ms: i64,
    ) -> Result<Vec<bytes::Bytes>, ChainError> {
        (**self).process(records, now_ms)
    }
    fn warm(&mut self, records: &[InRecord], now_ms: i64) -> Result<(), ChainError> {
        (**self).warm(records, now_ms)
    }
    fn reset(&mut self) -> Result<(), ChainError> {
        (**self).reset()
    }
    fn snapshot(&self) -> Option<Result<crate::chain::ChainSnapshot, ChainError>> {
        (**self).snapshot()
    }
    fn restore(&mut self, snapshot: &crate::chain::ChainSnapshot) -> Result<bool, ChainError> {
        (**self).restore(snapshot)
    }
    fn state_size(&mut self) -> Option<crate::chain::StateSize> {
        (**self).state_size()
    }
}

/// Boxes a chain for [`PipelineBuilder::chain`].
pub fn boxed<C: Chain + Sync + 'static>(chain: C) -> BoxChain {
    Box::new(chain)
}

type ChainFactory = Box<dyn Fn(u32) -> Result<BoxChain, ChainError> + Send + Sync>;
type SinkSpawner<B> = Box<
    dyn Fn(&SinkContext<B>, u32, watch::Receiver<bool>) -> JoinHandle<Result<(), PipelineError>>
        + Send
        + Sync,
>;

/// Why a pipeline could not be built or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline is missing {0}; call PipelineBuilder::{0}")]
    Missing(&'static str),
    #[error("pipeline is misconfigured: {0}")]
    Invalid(String),
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Sink(#[from] SinkRunnerError),
    #[error("sink {sink} could not start on partition {partition}: {message}")]
    SinkStart {
        sink: String,
        partition: u32,
        message: String,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("a pipeline task panicked or was cancelled: {0}")]
    Task(String),
}

/// Entry point of the builder API.
#[derive(Debug)]
pub struct Pipeline;

impl Pipeline {
    pub fn builder<B: TopicBackend>(backend: Arc<B>) -> PipelineBuilder<B> {
        PipelineBuilder {
            backend,
            input: None,
            partitions: Vec::new(),
            chain: None,
            router: None,
            store: None,
            config: ProcessorConfig::default(),
            metrics: Metrics::new(),
            sinks: Vec::new(),
            sink_config: SinkRunnerConfig::default(),
            dead_letters: None,
            progress: None,
        }
    }
}

/// Declares a pipeline; see the module docs.
pub struct PipelineBuilder<B: TopicBackend> {
    backend: Arc<B>,
    input: Option<String>,
    partitions: Vec<u32>,
    chain: Option<ChainFactory>,
    router: Option<Arc<dyn Router>>,
    store: Option<CheckpointStore>,
    config: ProcessorConfig,
    metrics: Metrics,
    sinks: Vec<(String, SinkSpawner<B>)>,
    sink_config: SinkRunnerConfig,
    dead_letters: Option<DeadLetterTopic>,
    progress: Option<Vec<Arc<Progress>>>,
}

impl<B: TopicBackend> std::fmt::Debug for PipelineBuilder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("input", &self.input)
            .field("partitions", &self.partitions)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| &s.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What sink spawners need from the built pipeline.
struct SinkContext<B> {
    backend: Arc<B>,
    store: CheckpointStore,
    config: SinkRunnerConfig,
    metrics: Metrics,
    dead_letters: DeadLetterTopic,
}

impl<B: TopicBackend> PipelineBuilder<B> {
    /// The keyed, partitioned topic the pipeline consumes.
    pub fn input(mut self, topic: impl Into<String>) -> Self {
        self.input = Some(topic.into());
        self
    }

    /// The input partitions this instance processes (all of them, unless
    /// several instances split a topic).
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = u32>) -> Self {
        self.partitions = partitions.into_iter().collect();
        self
    }

    /// Builds the chain of each partition: SmartModules (usually a
    /// `WasmChain`) or native code implementing [`Chain`]. Keyed, windowed
    /// state lives in the chain and is rebuilt by replaying the last
    /// `ProcessorConfig::warm_window_ms` of input.
    pub fn chain(
        mut self,
        factory: impl Fn(u32) -> Result<BoxChain, ChainError> + Send + Sync + 'static,
    ) -> Self {
        self.chain = Some(Box::new(factory));
        self
    }

    /// Branches chain outputs to output topics.
    pub fn router(mut self, router: impl Router) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// Where checkpoints live, and how often and how far back they reach.
    pub fn checkpoints(mut self, store: CheckpointStore, config: ProcessorConfig) -> Self {
        self.store = Some(store);
        self.config = config;
        self
    }

    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Uses these progress cells (one per partition, indexed by partition)
    /// instead of new ones, so ingest can be wired before the pipeline runs.
    pub fn progress(mut self, progress: Vec<Arc<Progress>>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The topic sinks dead-letter into, and its schema id.
    pub fn dead_letters(mut self, topic: DeadLetterTopic) -> Self {
        self.dead_letters = Some(topic);
        self
    }

    /// How sinks batch, commit and retry.
    pub fn sink_config(mut self, config: SinkRunnerConfig) -> Self {
        self.sink_config = config;
        self
    }

    /// Copies output `topic` to a sink; `make(partition)` builds one sink per
    /// partition. Each runs under its own driver and checkpoints.
    pub fn sink<S, E, F, Fut>(self, topic: impl Into<String>, make: F) -> Self
    where
        S: Sink,
        E: std::fmt::Display,
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, E>> + Send + 'static,
    {
        self.sink_with_retry(topic, None, make)
    }

    /// [`PipelineBuilder::sink`] with the sink's own retry policy instead of
    /// the pipeline's (`sinks.influxdb.retry`, say).
    pub fn sink_with_retry<S, E, F, Fut>(
        mut self,
        topic: impl Into<String>,
        retry: Option<RetryPolicy>,
        make: F,
    ) -> Self
    where
        S: Sink,
        E: std::fmt::Display,
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, E>> + Send + 'static,
    {
        let topic = topic.into();
        let label = topic.clone();
        let make = Arc::new(make);
        let spawner: SinkSpawner<B> = Box::new(move |ctx, partition, shutdown| {
            let topic = topic.clone();
            let make = Arc::clone(&make);
            let backend = Arc::clone(&ctx.backend);
            let store = ctx.store.clone();
            let mut config = ctx.config.clone();
            if let Some(retry) = &retry {
                config.retry = retry.clone();
            }
            let metrics = ctx.metrics.clone();
            let dead_letters = ctx.dead_letters.clone();
            tokio::spawn(async move {
                let sink = make(partition)
                    .await
                    .map_err(|e| PipelineError::SinkStart {
                        sink: topic.clone(),
                        partition,
                        message: e.to_string(),
                    })?;
                SinkRunner::new(
                    backend,
                    sink,
                    topic,
                    partition,
                    dead_letters,
                    store,
                    config,
                    metrics,
                )
                .run(shutdown)
                .await
                .map_err(PipelineError::from)
            })
        });
        self.sinks.push((label, spawner));
        self
    }

    /// Starts every processor and sink; they stop when `shutdown` turns true.
    pub fn run(self, shutdown: watch::Receiver<bool>) -> Result<RunningPipeline, PipelineError> {
        let input = self.input.ok_or(PipelineError::Missing("input"))?;
        let chain = self.chain.ok_or(PipelineError::Missing("chain"))?;
        let router = self.router.ok_or(PipelineError::Missing("router"))?;
        let store = self.store.ok_or(PipelineError::Missing("checkpoints"))?;
        if self.partitions.is_empty() {
            return Err(PipelineError::Missing("partitions"));
        }
        let all = self.partitions.iter().copied().max().unwrap_or(0) as usize + 1;
        let progress: Vec<Arc<Progress>> = match self.progress {
            Some(given) if given.len() >= all => given,
            Some(given) => {
                return Err(PipelineError::Invalid(format!(
                    "{} progress cells for partitions up to {}",
                    given.len(),
                    all - 1
                )));
            }
            None => (0..all).map(|_| Arc::new(Progress::default())).collect(),
        };
        let ctx = ProcessorContext {
            backend: Arc::clone(&self.backend),
            input,
            router,
            config: self.config,
            store: store.clone(),
            metrics: self.metrics.clone(),
        };
        let mut tasks = Vec::new();
        let mut swaps = Vec::new();
        for &p in &self.partitions {
            let (tx, rx) = mpsc::channel(1);
            let processor =
                Processor::new(ctx.clone(), p, chain(p)?, Arc::clone(&progress[p as usize]))
                    .with_swaps(rx);
            swaps.push((p, tx));
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                processor.run(shutdown).await.map_err(PipelineError::from)
            }));
        }
        if !self.sinks.is_empty() {
            let dead_letters = self
                .dead_letters
                .ok_or(PipelineError::Missing("dead_letters"))?;
            let sink_ctx = SinkContext {
                backend: Arc::clone(&self.backend),
                store,
                config: self.sink_config,
                metrics: self.metrics,
                dead_letters,
            };
            for (_, spawner) in &self.sinks {
                for &p in &self.partitions {
                    tasks.push(spawner(&sink_ctx, p, shutdown.clone()));
                }
            }
        }
        Ok(RunningPipeline {
            handle: PipelineHandle {
                partitions: self.partitions,
                progress,
                swaps,
            },
            tasks,
        })
    }
}

/// A started pipeline.
#[derive(Debug)]
pub struct RunningPipeline {
    handle: PipelineHandle,
    tasks: Vec<JoinHandle<Result<(), PipelineError>>>,
}

impl RunningPipeline {
    /// What other tasks (the admin API) use to watch and steer the pipeline.
    pub fn handle(&self) -> PipelineHandle {
        self.handle.clone()
    }

    /// Stops every task at once with no final checkpoint or flush: what a
    /// crash does, for recovery tests.
    pub fn abort(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    /// Waits for every task; the first error wins.
    pub async fn join(self) -> Result<(), PipelineError> {
        let mut first = Ok(());
        for t in self.tasks {
            let r = t
                .await
                .map_err(|e| PipelineError::Task(e.to_string()))
                .and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// A cheap, cloneable view of a running pipeline.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    partitions: Vec<u32>,
    progress: Vec<Arc<Progress>>,
    swaps: Vec<(u32, mpsc::Sender<Swap<BoxChain>>)>,
}

impl PipelineHandle {
    /// Each partition's progress (indexed by partition), for ingest
    /// backpressure and readiness.
    pub fn progress(&self) -> Vec<Arc<Progress>> {
        self.progress.clone()
    }

    pub fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    /// True once every owned partition has recovered.
    pub fn is_ready(&self) -> bool {
        self.partitions.iter().all(|&p| {
            self.progress[p as usize]
                .ready
                .load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// Hands a new chain to every processor (`make(partition)`), each
    /// warmed over its state window before it takes over between two
    /// batches. All chains are built first, so a module that fails to load
    /// or initialise changes nothing. Returns the records each partition
    /// replayed to warm its new chain.
    pub async fn swap(
        &self,
        make: impl Fn(u32) -> Result<BoxChain, ChainError>,
    ) -> Result<Vec<(u32, usize)>, SwapError> {
        let mut chains = Vec::with_capacity(self.swaps.len());
        for (p, _) in &self.swaps {
            chains.push(make(*p).map_err(SwapError::Rejected)?);
        }
        let mut waiting = Vec::new();
        for ((p, tx), chain) in self.swaps.iter().zip(chains) {
            let (done, answer) = oneshot::channel();
            tx.send(Swap { chain, done })
                .await
                .map_err(|_| SwapError::Stopped(*p))?;
            waiting.push((*p, answer));
        }
        let mut out = Vec::new();
        for (p, answer) in waiting {
            match answer.await {
                Ok(Ok(warmed)) => out.push((p, warmed)),
                Ok(Err(message)) => {
                    return Err(SwapError::Warm {
                        partition: p,
                        message,
                    });
                }
                Err(_) => return Err(SwapError::Stopped(p)),
            }
        }
        Ok(out)
    }
}

/// Why a hot-swap did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("the new module was rejected: {0}")]
    Rejected(ChainError),
    #[error("partition {partition} could not warm the new chain: {message}")]
    Warm { partition: u32, message: String },
    #[error("the processor of partition {0} has stopped")]
    Stopped(u32),
}
