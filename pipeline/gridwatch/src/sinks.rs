//! The sinks `gridwatch run` attaches to the pipeline, from `sinks.*`.
//!
//! Each sink is a connector crate behind the runtime's sink interface,
//! driven over an output topic with its own position, retries and
//! checkpoints. A sink that is not configured is off, except the lake,
//! which archives into the data directory unless told otherwise.

use std::time::Duration;

use crate::backend::AnyBackend;
use gridwatch_contracts::ConfigError;
use gridwatch_influxdb::{InfluxDbConfig, InfluxDbSink};
use gridwatch_kafka::{KafkaSink, KafkaSinkConfig};
use gridwatch_lake::{LakeConfig, LakeSink};
use gridwatch_runtime::pipeline::PipelineBuilder;
use gridwatch_runtime::sink::SinkRunnerConfig;
use gridwatch_runtime::topics::Topics;
use gridwatch_webhook::{WebhookConfig, WebhookSink};
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;

/// `sinks.*`: where anomalies, readings and dead letters go besides the
/// pipeline's own topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksSection {
    /// Most records handed to a sink at once.
    pub batch_max: usize,
    /// Sinks flush and commit after this many records...
    pub checkpoint_events: u64,
    /// ...or this often.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The Kafka bridge (anomalies, and dead letters if `dlq_topic` is set).
    pub kafka: Option<KafkaSinkConfig>,
    /// InfluxDB (anomalies as line protocol).
    pub influxdb: Option<InfluxDbConfig>,
    /// Alert webhook (anomalies at or above a severity).
    pub webhook: Option<WebhookConfig>,
    /// The Parquet lake (every scored reading and every anomaly); on by
    /// default in `<data_dir>/lake`, off when null.
    pub lake: Option<LakeConfig>,
}

impl SinksSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.batch_max) {
            return Err(ConfigError::new(
                "sinks.batch_max",
                self.batch_max,
                "a whole number from 1 to 100000",
            ));
        }
        if !(1..=100_000_000).contains(&self.checkpoint_events) {
            return Err(ConfigError::new(
                "sinks.checkpoint_events",
                self.checkpoint_events,
                "a whole number from 1 to 100000000",
            ));
        }
        if self.checkpoint_interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "sinks.checkpoint_interval",
                humantime::format_duration(self.checkpoint_interval),
                "a duration of at least 100ms",
            ));
        }
        if let Some(k) = &self.kafka {
            k.validate("sinks.kafka")?;
        }
        if let Some(i) = &self.influxdb {
            i.validate("sinks.influxdb")?;
        }
        if let Some(w) = &self.webhook {
            w.validate("sinks.webhook")?;
        }
        if let Some(l) = &self.lake {
            l.validate("sinks.lake")?;
        }
        Ok(())
    }

    fn runner_config(&self) -> SinkRunnerConfig {
        SinkRunnerConfig {
            batch_max: self.batch_max,
            checkpoint_events: self.checkpoint_events,
            checkpoint_interval: self.checkpoint_interval,
            ..SinkRunnerConfig::default()
        }
    }
}

/// Adds every configured sink to the pipeline, and prints which are on and
/// how to turn on the others.
pub fn attach(
    mut pipeline: PipelineBuilder<AnyBackend>,
    config: &AppConfig,
    topics: &Topics,
) -> anyhow::Result<PipelineBuilder<AnyBackend>> {
    let sinks = &config.sinks;
    pipeline = pipeline.sink_config(sinks.runner_config());
    let mut on = vec![format!(
        "topics `{}`, `{}` and `{}` in {}",
        topics.anomalies,
        topics.scored,
        topics.dead_letter,
        config.data_dir.display()
    )];
    let mut off = Vec::new();

    match &sinks.kafka {
        Some(kafka) => {
            let mut bridged = vec![topics.anomalies.clone()];
            if kafka.dlq_topic.is_some() {
                bridged.push(topics.dead_letter.clone());
            }
            for topic in &bridged {
                let kafka = kafka.clone();
                pipeline = pipeline.sink_with_retry(topic, Some(kafka.retry.clone()), move |_| {
                    let kafka = kafka.clone();
                    async move { KafkaSink::connect(&kafka).await }
                });
            }
            on.push(format!(
                "Kafka {} → topic {} ({})",
                kafka.brokers.join(","),
                kafka.topic,
                bridged.join(", ")
            ));
        }
        None => off.push("Kafka: set sinks.kafka.brokers (GRIDWATCH_SINKS__KAFKA__BROKERS)"),
    }
    match &sinks.influxdb {
        Some(influx) => {
            // Fail at start-up on a bad config rather than in the sink task.
            InfluxDbSink::new(influx)?;
            let influx_for_sink = influx.clone();
            pipeline = pipeline.sink_with_retry(
                &topics.anomalies,
                Some(influx.retry.clone()),
                move |_| {
                    let influx = influx_for_sink.clone();
                    async move { InfluxDbSink::new(&influx) }
                },
            );
            on.push(format!("InfluxDB {} ({:?})", influx.url, influx.api));
        }
        None => off.push("InfluxDB: set sinks.influxdb.url (GRIDWATCH_SINKS__INFLUXDB__URL)"),
    }
    match &sinks.webhook {
        Some(hook) => {
            WebhookSink::new(hook)?;
            let hook_for_sink = hook.clone();
            pipeline =
                pipeline.sink_with_retry(&topics.anomalies, Some(hook.retry.clone()), move |_| {
                    let hook = hook_for_sink.clone();
                    async move { WebhookSink::new(&hook) }
                });
            on.push(format!("webhook {}", hook.url));
        }
        None => off.push("alert webhook: set sinks.webhook.url"),
    }
    match &sinks.lake {
        Some(lake) => {
            let lake = lake.clone().with_data_dir(&config.data_dir);
            LakeSink::new(&lake)?;
            for topic in [&topics.scored, &topics.anomalies] {
                let lake = lake.clone();
                let retry = Some(lake.retry.clone());
                pipeline = pipeline.sink_with_retry(topic, retry, move |_| {
                    let lake = lake.clone();
                    async move { LakeSink::new(&lake) }
                });
            }
            on.push(format!(
                "lake {} (readings and anomalies as Parquet)",
                lake.url.as_deref().unwrap_or("")
            ));
        }
        None => off.push("lake: set sinks.lake (it is on by default)"),
    }
    println!("Sinks on: {}", on.join("; "));
    if !off.is_empty() {
        println!("Sinks off: {}", off.join("; "));
    }
    Ok(pipeline)
}
