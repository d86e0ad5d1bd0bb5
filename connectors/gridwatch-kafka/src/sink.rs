//! The Kafka bridge: copies the pipeline's `anomalies` (and, if configured,
//! `dead-letter`) records to a Kafka-compatible cluster, exactly once.
//!
//! # What a record becomes
//!
//! The value is the pipeline record's bytes unchanged (Avro with Apicurio v3
//! framing: magic 0, 4-byte content id, datum), the key is the record's key
//! (the `meter_id`, so a meter's anomalies stay in order on one partition),
//! the timestamp is the record's, and the header [`SOURCE_HEADER`] holds the
//! source position `topic/partition/offset`.
//!
//! # Exactly once
//!
//! By default (any Kafka-compatible broker, Tansu included):
//! - the **idempotent producer** (`enable.idempotence`, `acks=all`) keeps
//!   librdkafka's internal retries from duplicating or reordering records;
//! - [`Sink::recover`] **reads back the tail** of every partition of the
//!   destination topic (at most `recovery_scan` records each) and returns
//!   the highest source offset found in the headers, so the driver resumes
//!   after what is already there rather than after its older checkpoint;
//! - within a run, a batch the retry policy writes again skips the records
//!   whose delivery was already confirmed, and after a failure that may
//!   have left records on the broker unconfirmed (a timeout), the next
//!   attempt reads the tail again to find them.
//!
//! With `transactional = true` each write is one Kafka transaction, so a
//! crash leaves nothing half-written and the read-back uses
//! `read_committed`. Tansu 0.6 accepts the transactional requests but cannot
//! commit them, so this mode is for Apache Kafka, Redpanda and the like.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gridwatch_connector::{Sink, SinkError, SinkRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaSinkConfig;
use crate::error::{Class, KafkaError, classify};

/// Header holding a bridged record's source position, `topic/partition/offset`.
pub const SOURCE_HEADER: &str = "gridwatch-source";

/// How long metadata, watermark and transaction calls may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A source partition: (pipeline topic, partition).
type SourceKey = (String, u32);

/// What the bridge knows about one source partition in this run.
#[derive(Debug, Default)]
struct Progress {
    /// Highest offset handed to `write` so far: a batch at or below it is a
    /// re-delivery (a retry, or a dead letter replayed).
    high: Option<u64>,
    /// Offsets confirmed in Kafka by a write that failed as a whole, or
    /// found by a read-back: a re-delivery skips (and forgets) them.
    confirmed: HashSet<u64>,
    /// A write failed in a way that may have left unconfirmed records in
    /// Kafka (a timeout, a lost connection): re-deliveries read back first.
    uncertain: bool,
    /// First offset of the last failed batch: its immediate retry only
    /// needs a short read-back.
    failed_first: Option<u64>,
}

/// Most confirmed-but-unreplayed offsets remembered per source partition.
const MAX_CONFIRMED: usize = 1_000_000;

/// The Kafka bridge sink. See the module docs.
pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer_config: ClientConfig,
    producer: FutureProducer,
    progress: HashMap<SourceKey, Progress>,
    /// Set after a failure with records in doubt: the next write starts a
    /// new producer (a new producer id) instead of letting librdkafka bump
    /// the old one's epoch, which Tansu 0.6 mishandles after a broker
    /// restart (its storage panics and every later request fails).
    renew_producer: bool,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.config.brokers)
            .field("topic", &self.config.topic)
            .field("dlq_topic", &self.config.dlq_topic)
            .field("transactional", &self.config.transactional)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Validates `config`, connects, and checks that the destination topics
    /// exist. With `transactional`, also initialises transactions (which
    /// fences a previous instance with the same `client_id`).
    pub async fn connect(config: &KafkaSinkConfig) -> Result<Self, KafkaError> {
        config.validate("sinks.kafka")?;
        let producer_config = config.client_config().map_err(KafkaError::SecretFile)?;
        let producer = create_producer(&producer_config, config.transactional).await?;
        let brokers = config.brokers.join(",");
        let mut topics = vec![config.topic.clone()];
        topics.extend(config.dlq_topic.clone());
        for topic in topics {
            let p = producer.clone();
            let t = topic.clone();
            let metadata = blocking(move || p.client().fetch_metadata(Some(&t), ADMIN_TIMEOUT))
                .await?
                .map_err(|source| KafkaError::Unreachable {
                    brokers: brokers.clone(),
                    source,
                })?;
            let missing = metadata.topics().iter().find(|t| t.name() == topic).map_or(
                Some("not in the metadata".to_owned()),
                |t| match t.error() {
                    Some(e) => Some(format!("{:?}", rdkafka::error::RDKafkaErrorCode::from(e))),
                    None if t.partitions().is_empty() => Some("no partitions".to_owned()),
                    None => None,
                },
            );
            if let Some(detail) = missing {
                return Err(KafkaError::UnknownTopic {
                    topic,
                    brokers: brokers.clone(),
                    detail,
                });
            }
        }
        tracing::info!(
            brokers = %brokers,
            topic = %config.topic,
            dlq_topic = ?config.dlq_topic,
            transactional = config.transactional,
            "Kafka bridge connected."
        );
        Ok(Self {
            config: config.clone(),
            producer_config,
            producer,
            progress: HashMap::new(),
            renew_producer: false,
        })
    }

    /// Whether records of the pipeline topic `topic` are bridged: the
    /// runtime drives this sink only on those.
    pub fn bridges(&self, topic: &str) -> bool {
        self.destination(topic).is_some()
    }

    /// The Kafka topic records of the pipeline topic `source` go to.
    fn destination(&self, source: &str) -> Option<&str> {
        if source == self.config.source_dlq_topic {
            self.config.dlq_topic.as_deref()
        } else {
            Some(&self.config.topic)
        }
    }

    /// Reads back the newest `window` records of every partition of
    /// `topic`, returning the source offsets found per source partition.
    async fn read_back(
        &self,
        topic: &str,
        window: u64,
    ) -> Result<HashMap<SourceKey, Vec<u64>>, KafkaError> {
        let mut config = self.producer_config.clone();
        for producer_only in [
            "linger.ms",
            "compression.type",
            "message.timeout.ms",
            "queue.buffering.max.messages",
            "acks",
            "enable.idempotence",
            "transactional.id",
        ] {
            config.remove(producer_only);
        }
        // librdkafka wants a group id even for assign(); this one never
        // joins a group nor commits.
        let group = format!("{}-read-back", self.config.client_id);
        config
            .set("group.id", group)
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let topic = topic.to_owned();
        let timeout = self.config.delivery_timeout;
        blocking(move || scan_tail(&config, &topic, window, timeout)).await?
    }

    /// Before a re-delivery after an uncertain failure: reads the topic's
    /// tail and marks which of `batch`'s positions are already there.
    async fn settle(
        &mut self,
        destination: &str,
        batch: &[SinkRecord],
        window: u64,
    ) -> Result<(), KafkaError> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let source = (first.topic.clone(), first.partition);
        let found = self.read_back(destination, window).await?;
        let wanted: HashSet<u64> = batch.iter().map(|r| r.offset).collect();
        let present: Vec<u64> = found
            .get(&source)
            .map(|offsets| {
                offsets
                    .iter()
                    .copied()
                    .filter(|o| wanted.contains(o))
                    .collect()
            })
            .unwrap_or_default();
        tracing::info!(
            source_topic = %source.0,
            source_partition = source.1,
            records = batch.len(),
            already_in_kafka = present.len(),
            "Read back the Kafka topic before a re-delivery."
        );
        self.progress
            .entry(source)
            .or_default()
            .confirmed
            .extend(present);
        Ok(())
    }

    /// Produces `records` and waits for every delivery report.
    async fn produce(&mut self, records: &[&SinkRecord]) -> Produced {
        let mut pending = Vec::with_capacity(records.len());
        let mut out = Produced::default();
        for record in records {
            let Some(destination) = self.destination(&record.topic) else {
                continue;
            };
            let position = format!("{}/{}/{}", record.topic, record.partition, record.offset);
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: SOURCE_HEADER,
                value: Some(position.as_bytes()),
            });
            let mut next = FutureRecord::to(destination)
                .payload(record.value.as_ref())
                .timestamp(record.timestamp_ms)
                .headers(headers);
            if let Some(key) = &record.key {
                next = next.key(key.as_ref());
            }
            loop {
                match self.producer.send_result(next) {
                    Ok(delivery) => {
                        pending.push((record.offset, delivery));
                        break;
                    }
                    Err((
                        RdError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        // librdkafka's queue is full: let deliveries drain.
                        next = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        out.fail(record.offset, &e);
                        break;
                    }
                }
            }
        }
        for (offset, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => out.delivered.push(offset),
                Ok(Err((e, _))) => out.fail(offset, &e),
                Err(_canceled) => {
                    out.transient
                        .get_or_insert_with(|| "the producer was dropped".to_owned());
                    out.uncertain = true;
                }
            }
        }
        out
    }

    /// Replaces a producer that hit a fatal error (an idempotence sequence
    /// gap, a fenced epoch): the only way librdkafka recovers from one.
    async fn renew_producer_if_fatal(&mut self) -> Result<(), KafkaError> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(?code, %reason, "Kafka producer hit a fatal error; recreating it.");
            self.renew_producer = true;
        }
        if self.renew_producer {
            self.producer =
                create_producer(&self.producer_config, self.config.transactional).await?;
            self.renew_producer = false;
        }
        Ok(())
    }

    async fn txn(&self, what: Txn) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        let timeout = self.config.delivery_timeout;
        blocking(move || match what {
            Txn::Begin => producer.begin_transaction(),
            Txn::Commit => producer.commit_transaction(timeout),
            Txn::Abort => producer.abort_transaction(timeout),
        })
        .await
        .map_err(SinkError::from)?
        .map_err(|e| match classify(&e) {
            Class::Permanent => SinkError::Permanent(format!("Kafka transaction: {e}")),
            _ => SinkError::Transient(format!("Kafka transaction: {e}")),
        })
    }

    async fn write_transactional(
        &mut self,
        todo: &[&SinkRecord],
    ) -> Result<Vec<(u64, String)>, SinkError> {
        let mut todo: Vec<&SinkRecord> = todo.to_vec();
        let mut rejected = Vec::new();
        // At most twice: a second time without the records the broker refused.
        for _ in 0..2 {
            self.txn(Txn::Begin).await?;
            let produced = self.produce(&todo).await;
            if let Some(e) = produced.permanent {
                let _ = self.txn(Txn::Abort).await;
                return Err(SinkError::Permanent(e));
            }
            if let Some(e) = produced.transient {
                let _ = self.txn(Txn::Abort).await;
                return Err(SinkError::Transient(e));
            }
            if produced.rejected.is_empty() {
                if let Err(e) = self.txn(Txn::Commit).await {
                    let _ = self.txn(Txn::Abort).await;
                    return Err(e);
                }
                return Ok(rejected);
            }
            let _ = self.txn(Txn::Abort).await;
            let refused: HashSet<u64> = produced.rejected.iter().map(|(o, _)| *o).collect();
            todo.retain(|r| !refused.contains(&r.offset));
            rejected.extend(produced.rejected);
        }
        Err(SinkError::Transient(
            "the broker refused records twice in one transaction".into(),
        ))
    }
}

/// The result of producing a batch.
#[derive(Debug, Default)]
struct Produced {
    delivered: Vec<u64>,
    rejected: Vec<(u64, String)>,
    transient: Option<String>,
    permanent: Option<String>,
    /// A failure that may have left records on the broker unconfirmed.
    uncertain: bool,
}

impl Produced {
    fn fail(&mut self, offset: u64, error: &RdError) {
        match classify(error) {
            Class::Record => self.rejected.push((offset, error.to_string())),
            Class::Permanent => {
                self.permanent.get_or_insert_with(|| error.to_string());
            }
            Class::Transient => {
                self.transient.get_or_insert_with(|| error.to_string());
                // A timed-out or failed in-flight request may still have
                // been appended; only a read-back can tell.
                self.uncertain = true;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Txn {
    Begin,
    Commit,
    Abort,
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn recover(&mut self, topic: &str, partition: u32) -> Result<Option<u64>, SinkError> {
        let Some(destination) = self.destination(topic).map(str::to_owned) else {
            return Ok(None);
        };
        let found = self
            .read_back(&destination, self.config.recovery_scan)
            .await
            .map_err(SinkError::from)?;
        let key = (topic.to_owned(), partition);
        let highest = found
            .get(&key)
            .and_then(|offsets| offsets.iter().max().copied());
        // Everything up to `highest` was handed to a write (by a previous
        // run): anything the driver sends at or below it is a re-delivery.
        let progress = self.progress.entry(key).or_default();
        progress.high = progress.high.max(highest);
        progress.uncertain = true;
        tracing::info!(
            source_topic = topic,
            source_partition = partition,
            kafka_topic = %destination,
            recovered = ?highest,
            "Kafka bridge recovered its position from the topic's tail."
        );
        Ok(highest)
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let source: SourceKey = (first.topic.clone(), first.partition);
        let Some(destination) = self.destination(&source.0).map(str::to_owned) else {
            tracing::debug!(topic = %source.0, "No dlq_topic configured; dead letters are not bridged.");
            return Ok(());
        };
        self.renew_producer_if_fatal()
            .await
            .map_err(SinkError::from)?;
        let progress = self.progress.entry(source.clone()).or_default();
        let redelivery = progress.high.is_some_and(|high| first.offset <= high);
        if redelivery && progress.uncertain && !self.config.transactional {
            // A retry of the batch that just failed needs only the newest
            // records; a replay of older dead letters needs the full window.
            let window = if progress.failed_first == Some(first.offset) {
                (batch.len() as u64 * 2 + 1000).min(self.config.recovery_scan)
            } else {
                self.config.recovery_scan
            };
            self.settle(&destination, batch, window)
                .await
                .map_err(SinkError::from)?;
        }
        let progress = self.progress.entry(source.clone()).or_default();
        progress.high = progress.high.max(batch.iter().map(|r| r.offset).max());
        let todo: Vec<&SinkRecord> = batch
            .iter()
            .filter(|r| r.topic == source.0 && r.partition == source.1)
            .filter(|r| !progress.confirmed.remove(&r.offset))
            .collect();

        let rejected = if self.config.transactional {
            self.write_transactional(&todo).await
        } else {
            let produced = self.produce(&todo).await;
            let progress = self.progress.entry(source.clone()).or_default();
            if progress.confirmed.len() + produced.delivered.len() > MAX_CONFIRMED {
                progress.confirmed.clear();
            }
            progress.uncertain |= produced.uncertain;
            self.renew_producer |= produced.uncertain;
            if let Some(e) = produced.transient {
                progress.confirmed.extend(produced.delivered);
                progress.failed_first = Some(first.offset);
                Err(SinkError::Transient(e))
            } else if let Some(e) = produced.permanent {
                progress.confirmed.extend(produced.delivered);
                progress.failed_first = Some(first.offset);
                Err(SinkError::Permanent(e))
            } else {
                Ok(produced.rejected)
            }
        };
        let progress = self.progress.entry(source).or_default();
        match rejected {
            Ok(rejected) if rejected.is_empty() => {
                progress.failed_first = None;
                Ok(())
            }
            Ok(rejected) => {
                progress.failed_first = None;
                Err(SinkError::Rejected(rejected))
            }
            Err(e) => {
                progress.failed_first = Some(first.offset);
                Err(e)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        // Every write already awaited its delivery reports (acks=all), so
        // this only drains what a cancelled write may have left queued.
        let producer = self.producer.clone();
        let timeout = self.config.delivery_timeout;
        blocking(move || producer.flush(timeout))
            .await
            .map_err(SinkError::from)?
            .map_err(|e| match classify(&e) {
                Class::Permanent => SinkError::Permanent(format!("Kafka flush: {e}")),
                _ => SinkError::Transient(format!("Kafka flush: {e}")),
            })
    }
}

async fn create_producer(
    config: &ClientConfig,
    transactional: bool,
) -> Result<FutureProducer, KafkaError> {
    let producer: FutureProducer = config.create().map_err(KafkaError::Client)?;
    if transactional {
        let p = producer.clone();
        blocking(move || p.init_transactions(ADMIN_TIMEOUT))
            .await?
            .map_err(KafkaError::Transactions)?;
    }
    Ok(producer)
}

/// Runs a blocking librdkafka call off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KafkaError::Worker(e.to_string()))
}

/// Parses a [`SOURCE_HEADER`] value.
pub fn parse_source(value: &[u8]) -> Option<(String, u32, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    (!topic.is_empty()).then(|| (topic.to_owned(), partition, offset))
}

/// Reads the newest `window` records of each partition of `topic` (a
/// blocking call) and collects the source positions in their headers.
fn scan_tail(
    config: &ClientConfig,
    topic: &str,
    window: u64,
    timeout: Duration,
) -> Result<HashMap<SourceKey, Vec<u64>>, KafkaError> {
    // Each call waits at most `timeout` (the delivery timeout), so a broker
    // that is down fails the read-back as fast as it fails a write.
    let deadline = (timeout * 4).max(Duration::from_secs(20));
    let read_back = |source| KafkaError::ReadBack {
        topic: topic.to_owned(),
        source,
    };
    let consumer: BaseConsumer = config.create().map_err(KafkaError::Client)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(read_back)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut open = HashSet::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(read_back)?;
        if high <= low {
            continue;
        }
        let start = low.max(high - window.min(i64::MAX as u64) as i64);
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(read_back)?;
        open.insert(partition);
    }
    let mut found: HashMap<SourceKey, Vec<u64>> = HashMap::new();
    if open.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment).map_err(read_back)?;
    let started = std::time::Instant::now();
    while !open.is_empty() {
        if started.elapsed() > deadline {
            return Err(read_back(RdError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                let source = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == SOURCE_HEADER)
                        .and_then(|h| h.value)
                        .and_then(parse_source)
                });
                if let Some((t, p, o)) = source {
                    found.entry((t, p)).or_default().push(o);
                }
            }
            Some(Err(RdError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(e)) => return Err(read_back(e)),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_header_round_trips() {
        assert_eq!(
            parse_source(b"anomalies/3/12345"),
            Some(("anomalies".into(), 3, 12345))
        );
        assert_eq!(parse_source(b"a/b/1/2"), Some(("a/b".into(), 1, 2)));
        assert_eq!(parse_source(b"anomalies/x/1"), None);
        assert_eq!(parse_source(b"/1/2"), None);
        assert_eq!(parse_source(b"12"), None);
        assert_eq!(parse_source(&[0xff, b'/', b'1', b'/', b'2']), None);
    }
}
