//! The sink driver: runs one [`Sink`] over one partition of an output topic.
//!
//! The driver owns the sink's position. It fetches from the topic, hands
//! batches to [`deliver`] (the shared retry policy, dead-lettering what the
//! sink cannot take), and every `checkpoint_events` records or
//! `checkpoint_interval` calls [`Sink::flush`] and only then saves the next
//! offset as committed. At start-up it resumes after
//! `max(committed, Sink::recover)`. Together with the sink's half of the
//! contract (see [`gridwatch_connector::sink`]) that makes each output
//! exactly-once across crashes.
//!
//! Each sink runs its own driver, so a slow or failing sink lags on its own:
//! its records wait durably in the topic, and no other sink waits for it.
//!
//! Two cases never go to the dead-letter topic, because the DLQ could not
//! hold them any better than where they are:
//! - a failed [`Sink::flush`]: nothing is committed, so the driver retries
//!   the flush (backing off up to the policy's maximum) until it succeeds;
//! - a sink that reads the dead-letter topic itself: its failures are
//!   retried until they succeed rather than dead-lettered into its own input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridwatch_connector::{RetryPolicy, Sink, SinkError, SinkRecord, deliver};
use tokio::sync::watch;

use crate::backend::{BackendError, InRecord, TopicBackend};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::metrics::Metrics;
use crate::processor::{now_ms, out};

/// How a sink driver paces itself; shared by all sinks of a pipeline.
#[derive(Debug, Clone)]
pub struct SinkRunnerConfig {
    /// Most records handed to the sink at once.
    pub batch_max: usize,
    /// Flush and commit after this many records...
    pub checkpoint_events: u64,
    /// ...or this much time, whichever comes first.
    pub checkpoint_interval: Duration,
    /// How long a fetch waits for new records before checking for shutdown.
    pub fetch_wait: Duration,
    pub retry: RetryPolicy,
}

impl Default for SinkRunnerConfig {
    fn default() -> Self {
        Self {
            batch_max: 50_000,
            checkpoint_events: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(200),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a sink driver stopped. Sink failures are not among them: those are
/// retried or dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum SinkRunnerError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Where a sink's dead letters go: the pipeline's `dead-letter` topic,
/// framed with its schema id.
#[derive(Debug, Clone)]
pub struct DeadLetterTopic {
    pub topic: String,
    pub schema_id: u64,
}

/// One sink on one topic partition.
pub struct SinkRunner<B, S> {
    backend: Arc<B>,
    sink: S,
    topic: String,
    partition: u32,
    dead_letters: DeadLetterTopic,
    store: CheckpointStore,
    config: SinkRunnerConfig,
    metrics: Metrics,
}

impl<B, S: Sink> std::fmt::Debug for SinkRunner<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRunner")
            .field("sink", &self.sink.name())
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish()
    }
}

impl<B: TopicBackend, S: Sink> SinkRunner<B, S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: Arc<B>,
        sink: S,
        topic: impl Into<String>,
        partition: u32,
        dead_letters: DeadLetterTopic,
        store: CheckpointStore,
        config: SinkRunnerConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            backend,
            sink,
            topic: topic.into(),
            partition,
            dead_letters,
            store,
            config,
            metrics,
        }
    }

    /// The checkpoint name: one per sink, topic and partition.
    pub fn checkpoint_name(sink: &str, topic: &str, partition: u32) -> String {
        format!("sink-{sink}-{topic}-{partition}")
    }

    fn stage(&self) -> String {
        self.sink.name().to_owned()
    }

    /// Runs until `shutdown` turns true; flushes and commits on the way out.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), SinkRunnerError> {
        let p = self.partition;
        let name = Self::checkpoint_name(self.sink.name(), &self.topic, p);
        let committed = self.store.load(&name)?.map_or(0, |c| c.input_offset);
        let recovered = loop {
            match self.sink.recover(&self.topic, p).await {
                Ok(r) => break r,
                Err(e) => {
                    self.metrics.stage_error(&self.stage(), e.is_transient());
                    tracing::warn!(sink = self.sink.name(), topic = %self.topic, partition = p, error = %e, "Sink recovery failed; retrying.");
                    let wait = self.config.retry.max_backoff.min(Duration::from_secs(5));
                    if pause(&mut shutdown, wait).await {
                        return Ok(());
                    }
                }
            }
        };
        let start = self.backend.log_start(&self.topic, p).await?;
        let mut position = committed.max(recovered.map_or(0, |r| r + 1)).max(start);
        tracing::info!(
            sink = self.sink.name(), topic = %self.topic, partition = p,
            committed, recovered = ?recovered, position,
            "Sink resuming."
        );
        let mut since_commit = 0u64;
        let mut last_commit = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let fetched = tokio::select! {
                r = self.backend.fetch(&self.topic, p, position, self.config.batch_max, self.config.fetch_wait) => r?,
                _ = shutdown.changed() => Vec::new(),
            };
            if let Some(last) = fetched.last() {
                let next = last.offset + 1;
                let batch = self.to_sink_records(&fetched);
                if !self.deliver_batch(&batch, &mut shutdown).await? {
                    // Shut down mid-retry: nothing past the last commit counts.
                    return Ok(());
                }
                position = next;
                since_commit += fetched.len() as u64;
            }
            let hw = self.backend.high_watermark(&self.topic, p).await?;
            self.metrics.set_queue_depth(
                &format!("{}/{}/{p}", self.sink.name(), self.topic),
                hw.saturating_sub(position),
            );
            if since_commit >= self.config.checkpoint_events
                || (since_commit > 0 && last_commit.elapsed() >= self.config.checkpoint_interval)
            {
                if !self.commit(&name, position, &mut shutdown).await? {
                    return Ok(());
                }
                since_commit = 0;
                last_commit = Instant::now();
            }
        }
        if since_commit > 0 {
            // One bounded attempt on the way out; if it fails, the records
            // are re-delivered after the restart.
            let (tx, mut never) = watch::channel(true);
            drop(tx);
            let _ = self.commit(&name, position, &mut never).await;
        }
        tracing::info!(sink = self.sink.name(), topic = %self.topic, partition = p, position, "Sink stopped.");
        Ok(())
    }

    fn to_sink_records(&self, records: &[InRecord]) -> Vec<SinkRecord> {
        records
            .iter()
            .map(|r| SinkRecord {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                key: r.key.clone(),
                value: r.value.clone(),
            })
            .collect()
    }

    /// Delivers one batch; false if shutdown interrupted it.
    async fn deliver_batch(
        &mut self,
        batch: &[SinkRecord],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, SinkRunnerError> {
        let stage = self.stage();
        let is_dlq_input = self.topic == self.dead_letters.topic;
        loop {
            let started = Instant::now();
            let delivered = tokio::select! {
                d = deliver(&mut self.sink, batch, &self.config.retry) => d,
                _ = shutdown.changed() => return Ok(false),
            };
            for _ in 0..delivered.retries {
                self.metrics.stage_retry(&stage);
                self.metrics.stage_error(&stage, true);
            }
            self.metrics.stage_batch(
                &stage,
                batch.len() as u64,
                delivered.written as u64,
                started.elapsed(),
            );
            if delivered.dead_letters.is_empty() {
                return Ok(true);
            }
            if is_dlq_input {
                tracing::error!(sink = %stage, records = delivered.dead_letters.len(), "Sink cannot take dead letters; retrying, since they cannot go to the DLQ they came from.");
                if pause(shutdown, self.config.retry.max_backoff).await {
                    return Ok(false);
                }
                continue;
            }
            let mut records = Vec::with_capacity(delivered.dead_letters.len());
            for d in &delivered.dead_letters {
                self.metrics.stage_error(&stage, false);
                self.metrics.dead_letter(&stage, &d.reason);
                let key = batch
                    .iter()
                    .find(|r| Some(r.offset as i64) == d.source_offset)
                    .and_then(|r| r.key.clone());
                records.push(out(key, self.dead_letters.schema_id, d, now_ms()));
            }
            self.backend
                .append(&self.dead_letters.topic, self.partition, records)
                .await?;
            return Ok(true);
        }
    }

    /// Flushes the sink, retrying until it succeeds, then saves `position`
    /// as committed. False if shutdown interrupted it.
    async fn commit(
        &mut self,
        name: &str,
        position: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, SinkRunnerError> {
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            match self.sink.flush().await {
                Ok(()) => break,
                Err(e) => {
                    let stage = self.stage();
                    self.metrics.stage_error(&stage, true);
                    self.metrics.stage_retry(&stage);
                    let delay = self
                        .config
                        .retry
                        .delay(retry.min(30), position ^ u64::from(retry));
                    retry += 1;
                    tracing::warn!(sink = %stage, topic = %self.topic, partition = self.partition, attempt = retry, retry_in_ms = delay.as_millis() as u64, error = %e, "Sink flush failed; nothing committed, retrying.");
                    if matches!(e, SinkError::Permanent(_)) {
                        tracing::error!(sink = %stage, "A flush failed permanently; check the sink's configuration. Records stay in the topic.");
                    }
                    if *shutdown.borrow() || pause(shutdown, delay).await {
                        return Ok(false);
                    }
                }
            }
        }
        let checkpoint = Checkpoint {
            input_offset: position,
            warm_from: position,
            outputs: Default::default(),
            taken_at_ms: now_ms(),
            poisoned: Vec::new(),
        };
        let store = self.store.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || store.save(&name, &checkpoint))
            .await
            .map_err(|e| BackendError::Task(e.to_string()))??;
        tracing::debug!(sink = self.sink.name(), topic = %self.topic, partition = self.partition, position, took_ms = started.elapsed().as_millis() as u64, "Sink committed.");
        Ok(true)
    }
}

/// Sleeps for `d`; true if shutdown came first.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use bytes::Bytes;
    use gridwatch_connector::testkit::anomaly_record;
    use gridwatch_contracts::DeadLetter;
    use gridwatch_contracts::codec::AvroRecord;
    use gridwatch_contracts::framing::{self, IdWidth};
    use gridwatch_contracts::model::reason;
    use gridwatch_log::{LogOptions, TopicConfig};

    use super::*;
    use crate::backend::OutRecord;
    use crate::backend::embedded::EmbeddedBackend;

    /// What the in-memory destination holds: copies per offset.
    type Held = Arc<Mutex<BTreeMap<u64, usize>>>;

    /// A buffering sink, like the lake: writes land in `pending` and reach
    /// `held` only on flush. `fail` scripts failures.
    struct Buffered {
        held: Held,
        pending: Vec<u64>,
        fail_writes: Arc<Mutex<u32>>,
        fail_flushes: Arc<Mutex<u32>>,
        permanent: bool,
    }

    impl Sink for Buffered {
        fn name(&self) -> &str {
            "buffered"
        }
        async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
            let mut fail = self.fail_writes.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(if self.permanent {
                    SinkError::Permanent("HTTP 400: no".into())
                } else {
                    SinkError::Transient("down".into())
                });
            }
            self.pending.extend(batch.iter().map(|r| r.offset));
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), SinkError> {
            let mut fail = self.fail_flushes.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(SinkError::Transient("flush failed".into()));
            }
            let mut held = self.held.lock().unwrap();
            for o in self.pending.drain(..) {
                *held.entry(o).or_default() += 1;
            }
            Ok(())
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        backend: Arc<EmbeddedBackend>,
        store: CheckpointStore,
        held: Held,
    }

    async fn fixture(records: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(
            EmbeddedBackend::open(
                &dir.path().join("t"),
                LogOptions::default(),
                TopicConfig::new(1),
            )
            .unwrap(),
        );
        backend.ensure_topic("anomalies", 1).await.unwrap();
        backend.ensure_topic("dead-letter", 1).await.unwrap();
        let batch: Vec<OutRecord> = (0..records)
            .map(|o| {
                let r = anomaly_record("anomalies", 0, o, 3);
                OutRecord {
                    key: r.key,
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                }
            })
            .collect();
        backend.append("anomalies", 0, batch).await.unwrap();
        let store = CheckpointStore::open(dir.path().join("cp")).unwrap();
        Fixture {
            _dir: dir,
            backend,
            store,
            held: Held::default(),
        }
    }

    fn config() -> SinkRunnerConfig {
        SinkRunnerConfig {
            batch_max: 30,
            checkpoint_events: 50,
            checkpoint_interval: Duration::from_secs(3600),
            fetch_wait: Duration::from_millis(10),
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
        }
    }

    fn sink(f: &Fixture, fail_writes: u32, fail_flushes: u32, permanent: bool) -> Buffered {
        Buffered {
            held: Arc::clone(&f.held),
            pending: Vec::new(),
            fail_writes: Arc::new(Mutex::new(fail_writes)),
            fail_flushes: Arc::new(Mutex::new(fail_flushes)),
            permanent,
        }
    }

    /// Runs a driver until the sink holds `held` records and the DLQ
    /// `dead` (or 5 s pass), then stops it.
    async fn run_until(f: &Fixture, sink: Buffered, held: usize, dead: u64) {
        let runner = SinkRunner::new(
            Arc::clone(&f.backend),
            sink,
            "anomalies",
            0,
            DeadLetterTopic {
                topic: "dead-letter".into(),
                schema_id: 4,
            },
            f.store.clone(),
            config(),
            Metrics::new(),
        );
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(runner.run(rx));
        for _ in 0..500 {
            let dlq = f.backend.high_watermark("dead-letter", 0).await.unwrap();
            if f.held.lock().unwrap().len() >= held && dlq >= dead {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    async fn dead_letters(f: &Fixture) -> Vec<DeadLetter> {
        f.backend
            .fetch("dead-letter", 0, 0, 10_000, Duration::ZERO)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let framed = framing::parse(&r.value, IdWidth::ContentId4).unwrap();
                assert_eq!(framed.schema_id, 4);
                DeadLetter::from_avro(framed.datum).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn delivers_everything_once_and_resumes_after_the_commit() {
        let f = fixture(120).await;
        run_until(&f, sink(&f, 0, 0, false), 120, 0).await;
        assert_eq!(f.held.lock().unwrap().len(), 120);
        assert!(f.held.lock().unwrap().values().all(|n| *n == 1));
        let committed = f
            .store
            .load(&SinkRunner::<EmbeddedBackend, Buffered>::checkpoint_name(
                "buffered",
                "anomalies",
                0,
            ))
            .unwrap()
            .unwrap();
        assert_eq!(committed.input_offset, 120, "shutdown flushes and commits");

        // More records; a restarted driver starts at the commit.
        let more: Vec<OutRecord> = (120..130)
            .map(|o| {
                let r = anomaly_record("anomalies", 0, o, 3);
                OutRecord {
                    key: r.key,
                    value: r.value,
                    timestamp_ms: 0,
                }
            })
            .collect();
        f.backend.append("anomalies", 0, more).await.unwrap();
        run_until(&f, sink(&f, 0, 0, false), 130, 0).await;
        let held = f.held.lock().unwrap();
        assert_eq!(held.len(), 130);
        assert!(held.values().all(|n| *n == 1), "nothing re-delivered");
    }

    #[tokio::test]
    async fn exhausted_retries_go_to_the_dead_letter_topic_with_their_bytes() {
        let f = fixture(30).await;
        // One batch of 30 fails 4 times: 1 attempt + 3 retries, then the DLQ.
        run_until(&f, sink(&f, 4, 0, false), 0, 30).await;
        let dead = dead_letters(&f).await;
        assert_eq!(dead.len(), 30);
        let original = f
            .backend
            .fetch("anomalies", 0, 7, 1, Duration::ZERO)
            .await
            .unwrap();
        let d = dead.iter().find(|d| d.source_offset == Some(7)).unwrap();
        assert_eq!(d.reason, reason::RETRIES_EXHAUSTED);
        assert_eq!(d.stage, "buffered");
        assert_eq!(d.source_topic.as_deref(), Some("anomalies"));
        assert_eq!(d.attempts, 4);
        assert_eq!(Bytes::from(d.original.clone()), original[0].value);
    }

    #[tokio::test]
    async fn permanent_failures_are_dead_lettered_at_once() {
        let f = fixture(30).await;
        run_until(&f, sink(&f, 1, 0, true), 0, 30).await;
        let dead = dead_letters(&f).await;
        assert_eq!(dead.len(), 30);
        assert!(
            dead.iter()
                .all(|d| d.reason == reason::PERMANENT_SINK_ERROR && d.attempts == 1)
        );
    }

    #[tokio::test]
    async fn a_failed_flush_commits_nothing_and_is_retried() {
        let f = fixture(50).await;
        run_until(&f, sink(&f, 0, 3, false), 50, 0).await;
        {
            let held = f.held.lock().unwrap();
            assert_eq!(held.len(), 50);
            assert!(held.values().all(|n| *n == 1));
        }
        assert!(
            dead_letters(&f).await.is_empty(),
            "flush failures never dead-letter"
        );
    }
}
