//! The sources `gridwatch run` starts from `sources.*`: MQTT and Kafka.
//!
//! Both feed the same ingest path as `POST /api/v1/readings`: each message
//! is decoded at the edge by [`EdgeDecoder`] (JSON, or Avro with Apicurio
//! framing; anything else is a dead letter with its reason and origin),
//! then deduplicated, held back by backpressure and appended durably by
//! [`Ingest`]. A source acknowledges upstream (MQTT PUBACK, Kafka offset
//! commit) only after that returns, so an acknowledged reading is durable
//! and an unacknowledged one is delivered again and dropped as a duplicate.
//! A source that is not configured (`null`) is off.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gridwatch_connector::source::IngestOutcome;
use gridwatch_connector::{IngestTarget, Payload, SourceError};
use gridwatch_contracts::ConfigError;
use gridwatch_kafka::{KafkaSource, KafkaSourceConfig};
use gridwatch_mqtt::{MqttConfig, MqttSource};
use gridwatch_runtime::backend::TopicBackend;
use gridwatch_runtime::ingest::{Ingest, IngestError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::AppConfig;
use crate::payloads::EdgeDecoder;

/// `sources.*`: where readings come from besides HTTP and the simulator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// Subscribe to an MQTT broker (QoS 1, persistent session).
    pub mqtt: Option<MqttConfig>,
    /// Consume Kafka topics with a consumer group.
    pub kafka: Option<KafkaSourceConfig>,
}

impl SourcesSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(m) = &self.mqtt {
            m.validate("sources.mqtt")?;
        }
        if let Some(k) = &self.kafka {
            k.validate("sources.kafka")?;
        }
        Ok(())
    }
}

/// The ingest path as sources see it.
#[derive(Debug)]
pub struct SourceIngest<B> {
    ingest: Arc<Ingest<B>>,
    decoder: Arc<EdgeDecoder>,
}

impl<B: TopicBackend> SourceIngest<B> {
    pub fn new(ingest: Arc<Ingest<B>>, decoder: Arc<EdgeDecoder>) -> Self {
        Self { ingest, decoder }
    }
}

impl<B: TopicBackend> IngestTarget for SourceIngest<B> {
    async fn ingest(&self, payloads: Vec<Payload>) -> Result<IngestOutcome, SourceError> {
        let mut readings = Vec::with_capacity(payloads.len());
        let mut rejected = Vec::new();
        for p in &payloads {
            match self.decoder.payload(&p.bytes, &p.origin).await {
                Ok(Ok(r)) => readings.push(r),
                Ok(Err(d)) => rejected.push(*d),
                Err(e) => return Err(SourceError::Unavailable(e.to_string())),
            }
        }
        // Readings first, dead letters once they are in: a batch that
        // meets backpressure is retried whole, and its dead letters
        // must not be written once per attempt.
        let got = self
            .ingest
            .ingest(&readings, Vec::new())
            .await
            .map_err(source_error)?;
        let bad = self
            .ingest
            .ingest(&[], rejected)
            .await
            .map_err(source_error)?;
        Ok(IngestOutcome {
            accepted: got.accepted,
            rejected: bad.rejected,
            duplicates: got.duplicates,
        })
    }
}

fn source_error(e: IngestError) -> SourceError {
    match e {
        IngestError::Backpressure { .. } => SourceError::Backpressure(e.to_string()),
        other => SourceError::Unavailable(other.to_string()),
    }
}

/// Starts every configured source; each runs until `shutdown`. A source
/// whose configuration cannot work fails start-up; one whose peer is
/// unreachable keeps retrying with backoff, logging why.
pub fn spawn<B: TopicBackend>(
    config: &AppConfig,
    ingest: Arc<Ingest<B>>,
    decoder: Arc<EdgeDecoder>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let target = Arc::new(SourceIngest::new(ingest, decoder));
    let mut tasks = Vec::new();
    if let Some(mqtt) = &config.sources.mqtt {
        // Built here so a bad password file or TLS file stops start-up.
        MqttSource::new(mqtt.clone()).context("sources.mqtt")?;
        println!(
            "MQTT source on: {} topics {:?} at QoS {}",
            mqtt.url, mqtt.topics, mqtt.qos
        );
        tasks.push(tokio::spawn(run_mqtt(
            mqtt.clone(),
            target.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(kafka) = &config.sources.kafka {
        kafka.validate("sources.kafka")?;
        println!(
            "Kafka source on: {} topics {:?} group {}",
            kafka.brokers.join(","),
            kafka.topics,
            kafka.group_id
        );
        tasks.push(tokio::spawn(run_kafka(kafka.clone(), target, shutdown)));
    }
    Ok(tasks)
}

/// Longest wait between restarts of a source that failed.
const RESTART_MAX: Duration = Duration::from_secs(30);

async fn run_mqtt<B: TopicBackend>(
    config: MqttConfig,
    target: Arc<SourceIngest<B>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = config.reconnect.initial;
    loop {
        let source = match MqttSource::new(config.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "MQTT source stopped: its configuration cannot work.");
                return;
            }
        };
        match source.run(target.clone(), shutdown.clone()).await {
            Ok(()) => return,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT source failed; restarting.");
            }
            Err(e) => {
                tracing::error!(error = %e, "MQTT source stopped; fix the broker or sources.mqtt and restart.");
                return;
            }
        }
        if sleep_or_stop(backoff, &mut shutdown).await {
            return;
        }
        backoff = (backoff * 2).min(RESTART_MAX);
    }
}

async fn run_kafka<B: TopicBackend>(
    config: KafkaSourceConfig,
    target: Arc<SourceIngest<B>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = config.retry.initial_backoff;
    loop {
        let stop = {
            let mut rx = shutdown.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let result = KafkaSource::new(config.clone())
            .run(target.as_ref(), stop)
            .await;
        match result {
            Ok(stats) => {
                tracing::info!(
                    messages = stats.messages,
                    accepted = stats.accepted,
                    rejected = stats.rejected,
                    duplicates = stats.duplicates,
                    "Kafka source stopped."
                );
                return;
            }
            // Brokers down or the topic not created yet: both may change.
            Err(e @ gridwatch_kafka::KafkaError::UnknownTopic { .. }) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "Kafka source waiting for its topic.");
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in = ?backoff, "Kafka source failed; restarting.");
            }
            Err(e) => {
                tracing::error!(error = %e, "Kafka source stopped; fix the cluster or sources.kafka and restart.");
                return;
            }
        }
        if sleep_or_stop(backoff, &mut shutdown).await {
            return;
        }
        backoff = (backoff * 2).min(RESTART_MAX);
    }
}

/// Sleeps; `true` if shutdown came first.
async fn sleep_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
    *shutdown.borrow()
}
