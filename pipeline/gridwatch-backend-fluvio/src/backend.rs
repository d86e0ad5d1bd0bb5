//! [`FluvioBackend`]: the runtime's [`TopicBackend`] on a Fluvio cluster.
//!
//! - **Topics** are created through the admin API when missing, with
//!   `fluvio.partitions` (or the runtime's count) and `fluvio.replication`,
//!   and `ensure_topic` returns only once every partition has a leader.
//! - **Appends** go through one fluvio `TopicProducer` per (topic,
//!   partition), which batches with `fluvio.linger` and `fluvio.batch_size`
//!   and asks the SPU to acknowledge only committed records
//!   (`Isolation::ReadCommitted`). `append` pushes a call's records while
//!   holding that partition's lock, so they are contiguous, then waits for
//!   every acknowledgement and returns the offsets the SPU gave them.
//! - **Reads** start at the explicit offset the runtime's checkpoints name.
//!   A read opens a consumer stream at `Offset::absolute(from)`; the stream is
//!   kept, keyed by the next offset it will yield, so the processor's next
//!   `fetch(from = last + 1)` continues it without a new request. The SPU
//!   pushes new records into an open stream, which is how `fetch` waits.
//! - **Offsets** (log start, high watermark) come from the partition's
//!   leader SPU directly (see [`crate::offsets`]).
//!
//! Fluvio stamps records with the producer's clock when they join a batch,
//! so `OutRecord::timestamp_ms` is not stored; `InRecord::timestamp_ms` is
//! that append time. The runtime only uses it as the receive time.

use std::collections::HashMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluvio::consumer::{ConsumerConfigExt, Record, RetryMode};
use fluvio::dataplane::link::ErrorCode;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{
    Fluvio, FluvioAdmin, FluvioClusterConfig, Isolation, Offset, RecordKey,
    TopicProducerConfigBuilder, TopicProducerPool,
};
use futures::{FutureExt, Stream, StreamExt};
use gridwatch_runtime::backend::{BackendError, InRecord, OutRecord, TopicBackend, TopicInfo};

use crate::append_clock::AppendClock;
use crate::config::FluvioConfig;
use crate::error::FluvioBackendError;
use crate::offsets::{PartitionOffsets, SpuOffsets};

/// How long `ensure_topic` waits for a new topic's partitions to get leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Open read streams kept per partition (the processor's, recovery's, a tool's).
const CURSORS_PER_PARTITION: usize = 3;
/// How long a read waits for records the partition is known to hold.
const AVAILABLE_WAIT: Duration = Duration::from_secs(30);
/// Most bytes one SPU response of a read stream carries.
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;

pub(crate) type RecordStream = Pin<Box<dyn Stream<Item = Result<Record, ErrorCode>> + Send>>;

/// An open consumer stream positioned at `next`.
struct Cursor {
    next: u64,
    stream: RecordStream,
}

/// What one attempt at a read gave.
enum Fetched {
    Records(Vec<InRecord>),
    /// The stream skipped the first record asked for.
    GapAtStart {
        expected: u64,
        got: u64,
    },
}

/// One producer per (topic, partition), with a lock so a call's records are contiguous.
struct PartitionProducer {
    producer: TopicProducerPool,
    order: tokio::sync::Mutex<()>,
}

struct Inner {
    fluvio: Fluvio,
    admin: Arc<FluvioAdmin>,
    config: FluvioConfig,
    endpoint: String,
    offsets: SpuOffsets,
    producers: tokio::sync::Mutex<HashMap<(String, u32), Arc<PartitionProducer>>>,
    cursors: std::sync::Mutex<HashMap<(String, u32), Vec<Cursor>>>,
    clock: AppendClock,
}

/// Topics on a Fluvio cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct FluvioBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FluvioBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioBackend")
            .field("endpoint", &self.inner.endpoint)
            .field(
                "platform",
                &self.inner.fluvio.platform_version().to_string(),
            )
            .finish()
    }
}

/// The cluster config `fluvio` names: a profile, an endpoint, or the current profile.
pub fn cluster_config(config: &FluvioConfig) -> Result<FluvioClusterConfig, FluvioBackendError> {
    use fluvio::config::{TlsConfig, TlsPaths, TlsPolicy};
    if let Some(profile) = &config.profile {
        return FluvioClusterConfig::load_with_profile(profile)
            .map_err(|e| FluvioBackendError::Connect {
                target: format!("profile {profile:?}"),
                message: format!("reading ~/.fluvio/config: {e}"),
            })?
            .ok_or_else(|| {
                FluvioBackendError::Config(gridwatch_contracts::ConfigError::new(
                    "fluvio.profile",
                    profile,
                    "a profile of ~/.fluvio/config (see `fluvio profile list`)",
                ))
            });
    }
    let Some(endpoint) = &config.endpoint else {
        return FluvioClusterConfig::load().map_err(|e| FluvioBackendError::Connect {
            target: "the current profile".into(),
            message: format!(
                "reading ~/.fluvio/config: {e}; set fluvio.endpoint or fluvio.profile"
            ),
        });
    };
    let tls = &config.tls;
    let policy = match (
        tls.enabled,
        &tls.ca_cert,
        &tls.client_cert,
        &tls.client_key,
        &tls.domain,
    ) {
        (false, ..) => TlsPolicy::Disabled,
        (true, Some(ca), Some(cert), Some(key), Some(domain)) => {
            TlsPolicy::Verified(TlsConfig::Files(TlsPaths {
                domain: domain.clone(),
                key: key.clone(),
                cert: cert.clone(),
                ca_cert: ca.clone(),
            }))
        }
        (true, ..) => TlsPolicy::Anonymous,
    };
    Ok(FluvioClusterConfig::new(endpoint.clone()).with_tls(policy))
}

impl FluvioBackend {
    /// Validates `config`, connects to the cluster and checks it answers.
    pub async fn connect(config: &FluvioConfig) -> Result<Self, FluvioBackendError> {
        config.validate()?;
        let cluster = cluster_config(config)?;
        let endpoint = cluster.endpoint.clone();
        let fluvio = Fluvio::connect_with_config(&cluster).await.map_err(|e| {
            FluvioBackendError::Connect {
                target: endpoint.clone(),
                message: format!("{e:#}"),
            }
        })?;
        let admin = Arc::new(fluvio.admin().await);
        // The TLS connector the fluvio client builds for this cluster.
        let connector = TryFrom::try_from(cluster.tls.clone()).map_err(|e: anyhow::Error| {
            FluvioBackendError::Connect {
                target: endpoint.clone(),
                message: format!("TLS setup: {e:#}"),
            }
        })?;
        let mut base = fluvio_socket::ClientConfig::new(
            endpoint.clone(),
            connector,
            cluster.use_spu_local_address,
        );
        if let Some(id) = &cluster.client_id {
            base.set_client_id(id.clone());
        }
        let offsets = SpuOffsets::new(Arc::clone(&admin), base, cluster.use_spu_local_address);
        tracing::info!(%endpoint, platform = %fluvio.platform_version(), "Connected to the Fluvio cluster.");
        Ok(Self {
            inner: Arc::new(Inner {
                fluvio,
                admin,
                config: config.clone(),
                endpoint,
                offsets,
                producers: tokio::sync::Mutex::default(),
                cursors: std::sync::Mutex::default(),
                clock: AppendClock::default(),
            }),
        })
    }

    /// When this process appended recent offsets (see [`crate::append_clock`]).
    pub fn append_clock(&self) -> &AppendClock {
        &self.inner.clock
    }

    /// The fluvio client, for server-side chains ([`crate::server_side`]).
    pub fn client(&self) -> &Fluvio {
        &self.inner.fluvio
    }

    /// The admin client, for module registration ([`crate::modules`]).
    pub fn admin(&self) -> &FluvioAdmin {
        &self.inner.admin
    }

    /// The configuration this backend was connected with.
    pub fn config(&self) -> &FluvioConfig {
        &self.inner.config
    }

    /// Log start and high watermark of a partition, from its leader.
    pub async fn offsets(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionOffsets, FluvioBackendError> {
        self.inner.offsets.get(topic, partition).await
    }

    /// Deletes a topic (tests and tools; the pipeline never deletes).
    pub async fn delete_topic(&self, name: &str) -> Result<(), FluvioBackendError> {
        self.inner
            .admin
            .delete::<TopicSpec>(name.to_string())
            .await
            .map_err(|e| FluvioBackendError::cluster("delete topic", name, &e))?;
        self.forget_topic(name).await;
        Ok(())
    }

    async fn forget_topic(&self, name: &str) {
        self.inner
            .producers
            .lock()
            .await
            .retain(|(t, _), _| t != name);
        lock(&self.inner.cursors).retain(|(t, _), _| t != name);
    }

    async fn topic_partitions(&self, name: &str) -> Result<Option<u32>, FluvioBackendError> {
        let found = self
            .inner
            .admin
            .list::<TopicSpec, _>(vec![name.to_string()])
            .await
            .map_err(|e| FluvioBackendError::cluster("list topics", name, &e))?;
        Ok(found
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.spec.partitions()))
    }

    /// Waits until every partition of `name` has a leader that answers an
    /// offsets request (the SC assigns leaders before the SPUs host them).
    async fn wait_ready(&self, name: &str, partitions: u32) -> Result<(), FluvioBackendError> {
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        let mut delay = Duration::from_millis(20);
        loop {
            let listed = self
                .inner
                .admin
                .all::<PartitionSpec>()
                .await
                .map_err(|e| FluvioBackendError::cluster("list partitions", name, &e))?;
            let with_leader = listed
                .iter()
                .filter(|m| {
                    m.name
                        .rsplit_once('-')
                        .is_some_and(|(t, p)| t == name && p.parse::<u32>().is_ok())
                        && m.spec.leader >= 0
                })
                .count() as u32;
            let mut ready = with_leader >= partitions;
            if ready {
                for p in 0..partitions {
                    if self.inner.offsets.get(name, p).await.is_err() {
                        ready = false;
                        break;
                    }
                }
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(FluvioBackendError::Cluster {
                    op: "wait for topic",
                    target: name.to_string(),
                    message: format!(
                        "{with_leader} of {partitions} partitions have a leader after {}s",
                        TOPIC_READY_TIMEOUT.as_secs()
                    ),
                    retryable: true,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    async fn producer(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<PartitionProducer>, FluvioBackendError> {
        let key = (topic.to_string(), partition);
        let mut producers = self.inner.producers.lock().await;
        if let Some(p) = producers.get(&key) {
            return Ok(Arc::clone(p));
        }
        let c = &self.inner.config;
        let target = format!("{topic}/{partition}");
        let config = TopicProducerConfigBuilder::default()
            .linger(c.linger)
            .batch_size(c.batch_size)
            .max_request_size(c.batch_size.max(1024 * 1024))
            .isolation(Isolation::ReadCommitted)
            .set_specific_partitioner(partition)
            .build()
            .map_err(|e| FluvioBackendError::Cluster {
                op: "configure producer",
                target: target.clone(),
                message: e.to_string(),
                retryable: false,
            })?;
        // The client's metadata may not know a just-created topic yet.
        let mut attempt = 0;
        let producer = loop {
            match self
                .inner
                .fluvio
                .topic_producer_with_config(topic, config.clone())
                .await
            {
                Ok(p) => break p,
                Err(e) if attempt < 50 && is_topic_not_found(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) if is_topic_not_found(&e) => {
                    return Err(FluvioBackendError::NoSuchTopic {
                        topic: topic.to_string(),
                    });
                }
                Err(e) => return Err(FluvioBackendError::cluster("create producer", target, &e)),
            }
        };
        let p = Arc::new(PartitionProducer {
            producer,
            order: tokio::sync::Mutex::new(()),
        });
        producers.insert(key, Arc::clone(&p));
        Ok(p)
    }

    async fn drop_producer(&self, topic: &str, partition: u32) {
        let removed = self
            .inner
            .producers
            .lock()
            .await
            .remove(&(topic.to_string(), partition));
        if let Some(p) = removed {
            p.producer.clear_errors().await;
        }
    }

    async fn append_inner(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> Result<Range<u64>, FluvioBackendError> {
        if records.is_empty() {
            let hw = self.offsets(topic, partition).await?.high_watermark;
            return Ok(hw..hw);
        }
        let target = format!("{topic}/{partition}");
        let p = self.producer(topic, partition).await?;
        let count = records.len();
        let sent_ms = now_ms();
        let mut pending = Vec::with_capacity(count);
        {
            let order = p.order.lock().await;
            for r in records {
                let key = match r.key {
                    Some(k) => RecordKey::from(Vec::<u8>::from(k)),
                    None => RecordKey::NULL,
                };
                match p.producer.send(key, Vec::<u8>::from(r.value)).await {
                    Ok(out) => pending.push(out),
                    Err(e) => {
                        drop(order);
                        self.drop_producer(topic, partition).await;
                        return Err(FluvioBackendError::cluster("produce", target, &e));
                    }
                }
            }
        }
        let mut first = None;
        let mut last = 0u64;
        for out in pending {
            let meta = match out.wait().await {
                Ok(m) => m,
                Err(e) => {
                    self.drop_producer(topic, partition).await;
                    let e = anyhow::Error::from(e);
                    return Err(FluvioBackendError::cluster("produce", target, &e));
                }
            };
            let offset = meta.offset().max(0) as u64;
            match first {
                None => first = Some(offset),
                Some(_) if offset != last + 1 => {
                    return Err(FluvioBackendError::Cluster {
                        op: "produce",
                        target,
                        message: format!(
                            "acknowledged offsets are not contiguous: {offset} after {last}"
                        ),
                        retryable: false,
                    });
                }
                Some(_) => {}
            }
            last = offset;
        }
        let first = first.unwrap_or(last);
        self.inner
            .clock
            .note(topic, partition, first..last + 1, sent_ms);
        Ok(first..last + 1)
    }

    fn take_cursor(&self, topic: &str, partition: u32, from: u64) -> Option<Cursor> {
        let mut map = lock(&self.inner.cursors);
        let list = map.get_mut(&(topic.to_string(), partition))?;
        let i = list.iter().position(|c| c.next == from)?;
        Some(list.swap_remove(i))
    }

    fn put_cursor(&self, topic: &str, partition: u32, cursor: Cursor) {
        let mut map = lock(&self.inner.cursors);
        let list = map.entry((topic.to_string(), partition)).or_default();
        list.retain(|c| c.next != cursor.next);
        if list.len() >= CURSORS_PER_PARTITION {
            list.remove(0);
        }
        list.push(cursor);
    }

    async fn open_cursor(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<(Cursor, PartitionOffsets), FluvioBackendError> {
        let o = self.offsets(topic, partition).await?;
        if from < o.log_start || from > o.high_watermark {
            return Err(FluvioBackendError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset: from,
                log_start: o.log_start,
                high_watermark: o.high_watermark,
            });
        }
        let stream = open_stream(&self.inner.fluvio, topic, partition, from, Vec::new()).await?;
        Ok((Cursor { next: from, stream }, o))
    }

    pub(crate) async fn fetch_inner(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, FluvioBackendError> {
        let mut attempts = 0;
        loop {
            match self.fetch_once(topic, partition, from, max, wait).await? {
                Fetched::Records(out) => return Ok(out),
                Fetched::GapAtStart { expected, got } => {
                    // The stream skipped the very records asked for: a new
                    // stream at `from` reads them from the log again.
                    attempts += 1;
                    tracing::debug!(%topic, partition, expected, got, attempts, "Read stream skipped records; reopening it at the first missing offset.");
                    if attempts >= 5 {
                        return Err(FluvioBackendError::Cluster {
                            op: "read",
                            target: format!("{topic}/{partition}"),
                            message: format!(
                                "the SPU's stream keeps skipping offsets {expected}..{got}"
                            ),
                            retryable: true,
                        });
                    }
                }
            }
        }
    }

    async fn fetch_once(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Fetched, FluvioBackendError> {
        let target = format!("{topic}/{partition}");
        let (mut cursor, known) = match self.take_cursor(topic, partition, from) {
            Some(c) => (c, None),
            None => {
                let (c, o) = self.open_cursor(topic, partition, from).await?;
                (c, Some(o))
            }
        };
        let max = max.max(1);
        let mut out = Vec::with_capacity(max.min(1024));
        let mut deadline: Option<tokio::time::Instant> = None;
        // Wait for the first record. If the partition already holds records
        // past `from`, they are on their way: wait for them even when the
        // caller asked not to wait (recovery reads with a zero wait and stops
        // at the first empty answer). The stream yields one record per poll,
        // so a timeout that cancels a pending poll loses nothing.
        while out.is_empty() {
            let item = match cursor.stream.next().now_or_never() {
                Some(item) => item,
                None => {
                    let until = match deadline {
                        Some(d) => d,
                        None => {
                            let hw = match known {
                                Some(o) => o.high_watermark,
                                None => self.offsets(topic, partition).await?.high_watermark,
                            };
                            let wait = if from < hw {
                                wait.max(AVAILABLE_WAIT)
                            } else {
                                wait
                            };
                            *deadline.insert(tokio::time::Instant::now() + wait)
                        }
                    };
                    match tokio::time::timeout_at(until, cursor.stream.next()).await {
                        Ok(item) => item,
                        Err(_) => {
                            self.put_cursor(topic, partition, cursor);
                            return Ok(Fetched::Records(out));
                        }
                    }
                }
            };
            if let Step::Gap { expected, got } = take(item, &cursor, &mut out, &target)? {
                return Ok(Fetched::GapAtStart { expected, got });
            }
        }
        // Then everything already here, up to `max`, without waiting.
        while out.len() < max {
            let Some(item) = cursor.stream.next().now_or_never() else {
                break;
            };
            match take(item, &cursor, &mut out, &target) {
                Ok(Step::Took) => {}
                Ok(Step::Gap { expected, got }) => {
                    // Hand out what is contiguous; the cursor is dropped, so
                    // the next read opens a stream at the first missing offset.
                    tracing::debug!(%topic, partition, expected, got, "Read stream skipped records; the next read reopens it.");
                    return Ok(Fetched::Records(out));
                }
                Err(e) => {
                    // Hand out what arrived; the next call reopens and meets the error.
                    tracing::warn!(%topic, partition, error = %e, "Read stream failed after some records; it will be reopened.");
                    return Ok(Fetched::Records(out));
                }
            }
        }
        if let Some(last) = out.last() {
            cursor.next = last.offset + 1;
        }
        self.put_cursor(topic, partition, cursor);
        Ok(Fetched::Records(out))
    }
}

/// What one stream item did to a read.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The record was the next one (or an earlier one, skipped).
    Took,
    /// The stream jumped past `expected`: records are missing from it.
    Gap { expected: u64, got: u64 },
}

/// Moves one stream item into `out`, skipping records before the cursor and
/// reporting a jump. Fluvio 0.50's SPU cuts a plain stream's response at
/// `max_bytes` even inside a batch, and the client then acknowledges the
/// whole batch, so the stream silently skips the cut-off records; a read
/// that sees the jump reopens at the first missing offset.
fn take(
    item: Option<Result<Record, ErrorCode>>,
    cursor: &Cursor,
    out: &mut Vec<InRecord>,
    target: &str,
) -> Result<Step, FluvioBackendError> {
    match item {
        None => Err(FluvioBackendError::Cluster {
            op: "read",
            target: target.to_string(),
            message: "the SPU closed the read stream".into(),
            retryable: true,
        }),
        Some(Err(code)) => Err(FluvioBackendError::code("read", target, &code)),
        Some(Ok(record)) => {
            let r = in_record(record);
            let expected = out.last().map_or(cursor.next, |l| l.offset + 1);
            if r.offset > expected {
                return Ok(Step::Gap {
                    expected,
                    got: r.offset,
                });
            }
            if r.offset == expected {
                out.push(r);
            }
            Ok(Step::Took)
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, as record timestamps are.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A consumer record as the runtime sees it.
pub(crate) fn in_record(record: Record) -> InRecord {
    let offset = record.offset.max(0) as u64;
    let timestamp_ms = record.timestamp();
    let inner = record.into_inner();
    let key = inner.key().map(|k| Bytes::clone(k));
    let value = Bytes::clone(inner.value());
    InRecord {
        offset,
        timestamp_ms,
        key,
        value,
    }
}

/// Opens a read stream on one partition from an absolute offset, with an
/// optional SmartModule chain. No automatic retry: the caller decides where
/// to resume, because a retry inside the client would re-run `look_back`.
pub(crate) async fn open_stream(
    fluvio: &Fluvio,
    topic: &str,
    partition: u32,
    from: u64,
    smartmodules: Vec<fluvio::consumer::SmartModuleInvocation>,
) -> Result<RecordStream, FluvioBackendError> {
    let target = format!("{topic}/{partition}");
    let offset = Offset::absolute(from as i64).map_err(|e| FluvioBackendError::Cluster {
        op: "open read stream",
        target: target.clone(),
        message: e.to_string(),
        retryable: false,
    })?;
    let config = ConsumerConfigExt::builder()
        .topic(topic.to_string())
        .partition(partition)
        .offset_start(offset)
        .isolation(Isolation::ReadCommitted)
        .max_bytes(FETCH_MAX_BYTES)
        .retry_mode(RetryMode::Disabled)
        .smartmodule(smartmodules)
        .build()
        .map_err(|e| FluvioBackendError::Cluster {
            op: "open read stream",
            target: target.clone(),
            message: e.to_string(),
            retryable: false,
        })?;
    let stream = fluvio.consumer_with_config(config).await.map_err(|e| {
        if is_topic_not_found(&e) {
            FluvioBackendError::NoSuchTopic {
                topic: topic.to_string(),
            }
        } else {
            FluvioBackendError::cluster("open read stream", &target, &e)
        }
    })?;
    Ok(Box::pin(stream))
}

fn is_topic_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<fluvio::FluvioError>(),
            Some(fluvio::FluvioError::TopicNotFound(_))
        ) || matches!(
            c.downcast_ref::<ErrorCode>(),
            Some(ErrorCode::TopicNotFound)
        )
    })
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TopicBackend for FluvioBackend {
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<TopicInfo, BackendError> {
        if let Some(existing) = self.topic_partitions(name).await? {
            self.wait_ready(name, existing).await?;
            return Ok(TopicInfo {
                name: name.to_string(),
                partitions: existing,
            });
        }
        let count = self.inner.config.partitions_for(partitions);
        let spec = TopicSpec::new_computed(count, self.inner.config.replication, None);
        if let Err(e) = self.inner.admin.create(name.to_string(), false, spec).await {
            // Another instance may have created it first.
            match self.topic_partitions(name).await? {
                Some(_) => {}
                None => return Err(FluvioBackendError::cluster("create topic", name, &e).into()),
            }
        } else {
            tracing::info!(
                topic = name,
                partitions = count,
                replication = self.inner.config.replication,
                "Fluvio topic created."
            );
        }
        let actual = self.topic_partitions(name).await?.unwrap_or(count);
        self.wait_ready(name, actual).await?;
        Ok(TopicInfo {
            name: name.to_string(),
            partitions: actual,
        })
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, BackendError> {
        let all = self
            .inner
            .admin
            .all::<TopicSpec>()
            .await
            .map_err(|e| FluvioBackendError::cluster("list topics", "all", &e))?;
        let mut out: Vec<TopicInfo> = all
            .into_iter()
            .filter(|m| !m.spec.is_system())
            .map(|m| TopicInfo {
                partitions: m.spec.partitions(),
                name: m.name,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> Result<Range<u64>, BackendError> {
        Ok(self.append_inner(topic, partition, records).await?)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, BackendError> {
        Ok(self.fetch_inner(topic, partition, from, max, wait).await?)
    }

    async fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        Ok(self.offsets(topic, partition).await?.high_watermark)
    }

    async fn log_start(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        Ok(self.offsets(topic, partition).await?.log_start)
    }
}
