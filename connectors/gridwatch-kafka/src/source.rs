//! The Kafka source: readings consumed from Kafka topics by a consumer
//! group and handed to Gridwatch's ingest path.
//!
//! Each message is one reading, JSON or Avro with Apicurio v3 framing; the
//! ingest path tells them apart, parses, dedups and dead-letters what is
//! malformed, so the source passes the bytes through untouched with their
//! origin (`kafka:topic/partition@offset`).
//!
//! No loss: a batch's offsets are committed only after
//! [`IngestTarget::ingest`] returned, that is once the readings are durable.
//! A crash before that makes the group re-deliver the batch, and ingest's
//! dedup drops the copies. While ingest reports backpressure or is
//! unavailable the source backs off under its retry policy and tries the
//! same batch again, for as long as it takes: it never drops readings.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gridwatch_connector::{IngestTarget, Payload, SourceError};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSourceConfig;
use crate::error::{Class, KafkaError, classify};
use crate::sink::blocking;

/// What a source run did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Messages handed to ingest (and then committed).
    pub messages: u64,
    /// Batches ingested and committed.
    pub batches: u64,
    /// Readings ingest accepted, rejected as malformed, or dropped as duplicates.
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Ingest attempts refused with backpressure or unavailability, then retried.
    pub ingest_retries: u64,
}

/// The Kafka source. See the module docs.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    config: KafkaSourceConfig,
}

impl KafkaSource {
    pub fn new(config: KafkaSourceConfig) -> Self {
        Self { config }
    }

    /// Consumes until `shutdown` resolves, then returns what it did.
    ///
    /// Stopping while a batch is being ingested abandons that batch without
    /// committing it (it is delivered again on the next run). Fails at once
    /// on a bad config, unreachable brokers or a missing topic, and later
    /// only on errors no retry can cure (authentication, authorisation).
    pub async fn run<T: IngestTarget>(
        self,
        target: &T,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SourceStats, KafkaError> {
        let config = self.config;
        config.validate("sources.kafka")?;
        let client_config = config.client_config().map_err(KafkaError::SecretFile)?;
        let consumer: StreamConsumer = client_config.create().map_err(KafkaError::Client)?;
        let consumer = Arc::new(consumer);
        check_topics(&consumer, &config).await?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(KafkaError::Consumer)?;
        tracing::info!(
            brokers = %config.brokers.join(","),
            topics = ?config.topics,
            group_id = %config.group_id,
            "Kafka source subscribed."
        );

        let mut stats = SourceStats::default();
        tokio::pin!(shutdown);
        let mut consumer_errors = 0u32;
        loop {
            // Wait for the first message of a batch, or shutdown.
            let first = tokio::select! {
                biased;
                () = &mut shutdown => break,
                message = consumer.recv() => message.map(owned),
            };
            let mut batch = match first {
                Ok(message) => vec![message],
                Err(e) => {
                    consumer_error(&e, &mut consumer_errors, &config, &mut shutdown).await?;
                    continue;
                }
            };
            consumer_errors = 0;
            // Fill the batch for at most `batch_wait`.
            let until = tokio::time::Instant::now() + config.batch_wait;
            while batch.len() < config.batch_size {
                match tokio::time::timeout_at(until, consumer.recv()).await {
                    Err(_elapsed) => break,
                    Ok(Ok(message)) => batch.push(owned(message)),
                    Ok(Err(e)) => {
                        // Ingest what we have; the error shows again if it persists.
                        tracing::debug!(error = %e, "Kafka consumer error while filling a batch.");
                        break;
                    }
                }
            }

            // Ingest, retrying backpressure, before anything is committed.
            let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
            let mut payloads = Vec::with_capacity(batch.len());
            for m in batch {
                let next = offsets.entry((m.topic.clone(), m.partition)).or_insert(0);
                *next = (*next).max(m.offset + 1);
                payloads.push(Payload {
                    bytes: m.payload,
                    origin: format!("kafka:{}/{}@{}", m.topic, m.partition, m.offset),
                });
            }
            let count = payloads.len() as u64;
            let mut attempt = 0u32;
            let outcome = loop {
                let ingest = target.ingest(payloads.clone());
                let result = tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        tracing::info!(messages = count, "Kafka source stopped mid-ingest; the batch stays uncommitted.");
                        return Ok(stats);
                    }
                    result = ingest => result,
                };
                match result {
                    Ok(outcome) => break outcome,
                    Err(e) => {
                        let delay = config.retry.delay(attempt.min(30), jitter(attempt));
                        stats.ingest_retries += 1;
                        attempt += 1;
                        tracing::warn!(
                            attempt,
                            retry_in_ms = delay.as_millis() as u64,
                            messages = count,
                            backpressure = matches!(e, SourceError::Backpressure(_)),
                            error = %e,
                            "Ingest refused a Kafka batch; backing off."
                        );
                        tokio::select! {
                            biased;
                            () = &mut shutdown => return Ok(stats),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            };

            // Durable now: commit.
            let mut list = TopicPartitionList::new();
            for ((topic, partition), next) in &offsets {
                list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(KafkaError::Consumer)?;
            }
            let c = Arc::clone(&consumer);
            match blocking(move || c.commit(&list, CommitMode::Sync)).await? {
                Ok(()) => {}
                // The next commit covers these offsets; a crash before it
                // re-delivers a batch that dedup then drops.
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka offset commit failed; the next one covers it.")
                }
            }
            stats.messages += count;
            stats.batches += 1;
            stats.accepted += outcome.accepted;
            stats.rejected += outcome.rejected;
            stats.duplicates += outcome.duplicates;
        }
        tracing::info!(messages = stats.messages, "Kafka source stopped.");
        Ok(stats)
    }
}

/// A consumed message, detached from the consumer's buffers.
struct Owned {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Bytes,
}

fn owned(m: rdkafka::message::BorrowedMessage<'_>) -> Owned {
    Owned {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        // An empty message is still handed over: ingest dead-letters it
        // with a reason rather than the source dropping it silently.
        payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
    }
}

/// Handles a consumer error: transient ones back off and go on, the rest
/// end the run.
async fn consumer_error(
    e: &RdError,
    errors: &mut u32,
    config: &KafkaSourceConfig,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<(), KafkaError> {
    if classify(e) == Class::Permanent {
        return Err(KafkaError::Consumer(e.clone()));
    }
    let delay = config.retry.delay((*errors).min(30), jitter(*errors));
    *errors += 1;
    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Kafka consumer error; backing off.");
    tokio::select! {
        biased;
        () = shutdown.as_mut() => {}
        () = tokio::time::sleep(delay) => {}
    }
    Ok(())
}

/// Fails fast, with the command that fixes it, when a topic is missing.
async fn check_topics(
    consumer: &Arc<StreamConsumer>,
    config: &KafkaSourceConfig,
) -> Result<(), KafkaError> {
    let brokers = config.brokers.join(",");
    for topic in &config.topics {
        let c = Arc::clone(consumer);
        let t = topic.clone();
        let metadata = blocking(move || c.fetch_metadata(Some(&t), Duration::from_secs(15)))
            .await?
            .map_err(|source| KafkaError::Unreachable {
                brokers: brokers.clone(),
                source,
            })?;
        let ok = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !ok {
            return Err(KafkaError::UnknownTopic {
                topic: topic.clone(),
                brokers,
                detail: "not in the brokers' metadata".into(),
            });
        }
    }
    Ok(())
}

fn jitter(salt: u32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // A cheap 64-bit mix (splitmix64's finaliser) of the clock and the attempt.
    let mut z = (u64::from(nanos) << 32 | u64::from(salt)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
