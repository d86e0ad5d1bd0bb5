//! Server-side mode as a [`TopicBackend`]: reading the input topic yields
//! the SPU's chain outputs instead of the raw records.
//!
//! The runtime's processor reads its input partition from explicit offsets,
//! routes one output per input and checkpoints; none of that changes when
//! the chain runs in the SPU. So server-side mode is this backend plus the
//! runtime's [`Passthrough`](gridwatch_runtime::chain::Passthrough) chain:
//! `fetch` of the input topic is served by one [`ServerChainStream`] per
//! partition (opened, or reopened, at whatever offset the processor asks
//! for), and every other call goes to the plain [`FluvioBackend`]. The
//! processor then runs with no replay window: after a restart the SPU
//! warms detect's windows through `look_back`.
//!
//! Give ingest, the dashboard and the sinks the plain backend: they must
//! read raw records.
//!
//! The SPU's output carries no append times, so `fetch` takes them from the
//! plain backend's [`AppendClock`](crate::append_clock::AppendClock) for the
//! readings this process appended; that is what keeps the ingest→detect
//! latency histogram meaningful in server-side mode.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use gridwatch_runtime::backend::{BackendError, InRecord, OutRecord, TopicBackend, TopicInfo};
use tokio::sync::Mutex;

use crate::FluvioBackend;
use crate::server_side::{ServerChainSpec, ServerChainStream};

/// One partition's stream, opened on first read.
type Slot = Arc<Mutex<Option<ServerChainStream>>>;

/// The Fluvio backend with the chain running in the SPU for one input topic.
#[derive(Clone)]
pub struct ServerChainBackend {
    inner: FluvioBackend,
    input: String,
    spec: Arc<std::sync::Mutex<ServerChainSpec>>,
    streams: Arc<Mutex<HashMap<u32, Slot>>>,
}

impl std::fmt::Debug for ServerChainBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerChainBackend")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl ServerChainBackend {
    pub fn new(inner: FluvioBackend, input: impl Into<String>, spec: ServerChainSpec) -> Self {
        Self {
            inner,
            input: input.into(),
            spec: Arc::new(std::sync::Mutex::new(spec)),
            streams: Arc::default(),
        }
    }

    /// The plain backend underneath.
    pub fn inner(&self) -> &FluvioBackend {
        &self.inner
    }

    /// The chain streams open from now on.
    pub fn spec(&self) -> ServerChainSpec {
        self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hot-swap in the SPU: every partition's stream reopens with `spec` at
    /// its current position, so no record is skipped or repeated, and the
    /// new modules warm through `look_back`. Returns the partitions swapped.
    pub async fn replace_chain(&self, spec: ServerChainSpec) -> Result<Vec<u32>, BackendError> {
        *self.spec.lock().unwrap_or_else(|p| p.into_inner()) = spec.clone();
        let streams: Vec<(u32, Slot)> = self
            .streams
            .lock()
            .await
            .iter()
            .map(|(p, s)| (*p, Arc::clone(s)))
            .collect();
        let mut swapped = Vec::new();
        for (p, slot) in streams {
            if let Some(stream) = slot.lock().await.as_mut() {
                stream.replace_chain(spec.clone()).await?;
                swapped.push(p);
            }
        }
        Ok(swapped)
    }

    async fn slot(&self, partition: u32) -> Slot {
        Arc::clone(self.streams.lock().await.entry(partition).or_default())
    }
}

impl TopicBackend for ServerChainBackend {
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<TopicInfo, BackendError> {
        self.inner.ensure_topic(name, partitions).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, BackendError> {
        self.inner.list_topics().await
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> Result<Range<u64>, BackendError> {
        self.inner.append(topic, partition, records).await
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, BackendError> {
        if topic != self.input {
            return self.inner.fetch(topic, partition, from, max, wait).await;
        }
        let slot = self.slot(partition).await;
        let mut slot = slot.lock().await;
        let reusable = slot.as_ref().is_some_and(|s| s.position() == from);
        if !reusable {
            let spec = self.spec();
            *slot = Some(ServerChainStream::open(&self.inner, topic, partition, from, spec).await?);
        }
        let Some(stream) = slot.as_mut() else {
            return Ok(Vec::new());
        };
        match stream.next_batch(max, wait).await {
            Ok(mut batch) => {
                // The SPU's output batches carry no timestamps; give back
                // the append time of readings this process ingested.
                self.inner.append_clock().fill(
                    topic,
                    partition,
                    batch.iter_mut().map(|r| (r.offset, &mut r.timestamp_ms)),
                );
                Ok(batch)
            }
            Err(e) => {
                // The next call reopens at the offset the processor asks for.
                *slot = None;
                Err(e.into())
            }
        }
    }

    async fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        self.inner.high_watermark(topic, partition).await
    }

    async fn log_start(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        self.inner.log_start(topic, partition).await
    }
}
