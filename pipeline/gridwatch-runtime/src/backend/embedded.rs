//! The embedded backend: [`gridwatch_log`] in the data directory.
//!
//! The log is synchronous (appends block until fsync), so calls run on
//! tokio's blocking pool; readers wait for new data on a [`Notify`] that the
//! log's commit callback pokes, instead of polling.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gridwatch_log::{Log, LogOptions, Partition, ReadLimits, Record, TopicConfig};
use tokio::sync::Notify;

use super::{BackendError, InRecord, OutRecord, TopicBackend, TopicInfo};

/// Wake-ups for readers, by (topic, partition).
type Notifiers = Arc<Mutex<HashMap<(String, u32), Arc<Notify>>>>;

/// Topics in a local directory.
#[derive(Clone)]
pub struct EmbeddedBackend {
    log: Arc<Log>,
    /// One wake-up per partition, registered once.
    notifiers: Notifiers,
    /// Retention applied to topics this backend creates.
    defaults: TopicConfig,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("dir", &self.log.dir())
            .finish()
    }
}

impl EmbeddedBackend {
    /// Opens (and recovers) the log under `dir`.
    pub fn open(
        dir: &Path,
        options: LogOptions,
        defaults: TopicConfig,
    ) -> Result<Self, BackendError> {
        Ok(Self {
            log: Arc::new(Log::open(dir, options)?),
            notifiers: Arc::default(),
            defaults,
        })
    }

    /// Runs retention on every topic; called periodically by the runtime.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<(), BackendError> {
        self.log.enforce_retention(now_ms)?;
        Ok(())
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, BackendError> {
        self.log.partition(topic, partition).map_err(|e| match e {
            gridwatch_log::LogError::UnknownTopic { .. } => BackendError::NoSuchTopic {
                topic: topic.to_string(),
            },
            gridwatch_log::LogError::UnknownPartition { .. } => BackendError::NoSuchPartition {
                topic: topic.to_string(),
                partition,
            },
            other => BackendError::Log(other),
        })
    }

    fn notifier(&self, topic: &str, partition: u32, log: &Partition) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((topic.to_string(), partition))
            .or_insert_with(|| {
                let notify = Arc::new(Notify::new());
                let poke = Arc::clone(&notify);
                log.on_commit(move |_| poke.notify_waiters());
                notify
            })
            .clone()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Task(e.to_string()))?
}

impl TopicBackend for EmbeddedBackend {
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<TopicInfo, BackendError> {
        if let Ok(topic) = self.log.topic(name) {
            return Ok(TopicInfo {
                name: name.to_string(),
                partitions: topic.partition_count(),
            });
        }
        let config = TopicConfig {
            partitions,
            ..self.defaults.clone()
        };
        let topic = self.log.create_topic(name, config)?;
        Ok(TopicInfo {
            name: name.to_string(),
            partitions: topic.partition_count(),
        })
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, BackendError> {
        let mut out = Vec::new();
        for name in self.log.topic_names() {
            let topic = self.log.topic(&name)?;
            out.push(TopicInfo {
                name,
                partitions: topic.partition_count(),
            });
        }
        Ok(out)
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> Result<Range<u64>, BackendError> {
        let log = self.partition(topic, partition)?;
        if records.is_empty() {
            let hw = log.high_watermark();
            return Ok(hw..hw);
        }
        blocking(move || {
            let batch: Vec<Record<'_>> = records
                .iter()
                .map(|r| Record {
                    key: r.key.as_deref(),
                    value: &r.value,
                    timestamp_ms: r.timestamp_ms,
                })
                .collect();
            Ok(log.append_batch(&batch)?)
        })
        .await
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, BackendError> {
        let log = self.partition(topic, partition)?;
        let notify = self.notifier(topic, partition, &log);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before checking, so a commit in between wakes us.
            let notified = notify.notified();
            if log.high_watermark() > from {
                break;
            }
            if from < log.log_start_offset() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
        if from < log.log_start_offset() {
            return Err(BackendError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset: from,
            });
        }
        let views = log.read(from, ReadLimits::new(max, 16 << 20))?;
        Ok(views
            .into_iter()
            .map(|v| InRecord {
                offset: v.offset,
                timestamp_ms: v.timestamp_ms,
                key: v.key,
                value: v.value,
            })
            .collect())
    }

    async fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        Ok(self.partition(topic, partition)?.high_watermark())
    }

    async fn log_start(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        Ok(self.partition(topic, partition)?.log_start_offset())
    }
}

/// Convenience for tests and tools: a record value with no key.
pub fn value(bytes: impl Into<Bytes>, timestamp_ms: i64) -> OutRecord {
    OutRecord {
        key: None,
        value: bytes.into(),
        timestamp_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path) -> EmbeddedBackend {
        EmbeddedBackend::open(dir, LogOptions::default(), TopicConfig::new(1)).unwrap()
    }

    #[tokio::test]
    async fn append_then_fetch_and_wait_for_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path());
        assert_eq!(b.ensure_topic("t", 2).await.unwrap().partitions, 2);
        assert_eq!(
            b.ensure_topic("t", 5).await.unwrap().partitions,
            2,
            "existing kept"
        );
        let offsets = b
            .append("t", 1, vec![value(&b"a"[..], 1), value(&b"b"[..], 2)])
            .await
            .unwrap();
        assert_eq!(offsets, 0..2);
        let got = b.fetch("t", 1, 1, 10, Duration::ZERO).await.unwrap();
        assert_eq!(
            (got.len(), got[0].offset, &got[0].value[..]),
            (1, 1, &b"b"[..])
        );

        // A waiting fetch wakes when another task appends.
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.fetch("t", 1, 2, 10, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.append("t", 1, vec![value(&b"c"[..], 3)]).await.unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(&got[0].value[..], b"c");

        // An empty fetch times out with nothing.
        assert!(
            b.fetch("t", 0, 0, 10, Duration::from_millis(20))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            b.fetch("nope", 0, 0, 1, Duration::ZERO).await,
            Err(BackendError::NoSuchTopic { .. })
        ));
    }

    #[tokio::test]
    async fn topics_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = backend(dir.path());
            b.ensure_topic("readings", 3).await.unwrap();
            b.append("readings", 2, vec![value(&b"x"[..], 1)])
                .await
                .unwrap();
        }
        let b = backend(dir.path());
        assert_eq!(
            b.list_topics().await.unwrap(),
            vec![TopicInfo {
                name: "readings".into(),
                partitions: 3
            }]
        );
        assert_eq!(b.high_watermark("readings", 2).await.unwrap(), 1);
    }
}
