//! `gridwatch connector run --config FILE`: one sink as its own process.
//!
//! The same sinks `gridwatch run` attaches in-process (`sinks.*`), run apart
//! so they scale and fail apart from the pipeline, the way Fluvio
//! connectors are deployed. The file is in Fluvio's connector format:
//!
//! ```yaml
//! apiVersion: 0.1.0
//! meta:
//!   version: 0.1.0
//!   name: gridwatch-connector-influxdb
//!   type: gridwatch-influxdb-sink      # gridwatch-{kafka,influxdb,lake,webhook}-sink
//!   topic: anomalies                   # or {meta: {name: anomalies}} (apiVersion 0.2.0)
//!   consumer:                          # optional
//!     id: gridwatch-connector-influxdb # names the checkpoints (default: meta.name)
//!     partition: 0                     # default: every partition
//!     offset: {strategy: auto, start: beginning}
//! influxdb: { url: "http://127.0.0.1:8086", api: v1, database: grid }   # same keys as sinks.influxdb
//! transforms:                          # optional
//!   - uses: gridwatch/severity-filter@0.1.0
//!     with: {min_severity: ERROR}
//! ```
//!
//! Where the topic is read from, by the pipeline config (`backend`):
//! - `fluvio`: the Fluvio cluster of `fluvio.*`, like the pipeline;
//! - `embedded` with `--url` (or `GRIDWATCH_URL`): a running `gridwatch run`
//!   over its admin API, since its data directory is locked by it;
//! - `embedded` without: the data directory itself, which must not be in use.
//!
//! Each topic partition runs under the runtime's [`SinkRunner`]: the shared
//! retry policy, dead letters into the pipeline's `dead-letter` topic, and a
//! checkpoint after every flush, kept under
//! `<data_dir>/connectors/<consumer id>/`, so a restarted connector resumes
//! where it committed and the sink's recovery skips what it already holds.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use gridwatch_connector::{Sink, SinkError, SinkRecord};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, ConfigError, Severity};
use gridwatch_influxdb::{InfluxDbConfig, InfluxDbSink};
use gridwatch_kafka::{KafkaSink, KafkaSinkConfig};
use gridwatch_lake::{LakeConfig, LakeSink};
use gridwatch_runtime::backend::{BackendError, InRecord, OutRecord, TopicBackend, TopicInfo};
use gridwatch_runtime::checkpoint::{Checkpoint, CheckpointStore};
use gridwatch_runtime::metrics::Metrics;
use gridwatch_runtime::processor::now_ms;
use gridwatch_runtime::sink::{DeadLetterTopic, SinkRunner, SinkRunnerConfig};
use gridwatch_runtime::topics::Topics;
use gridwatch_webhook::{WebhookConfig, WebhookSink};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::backend::AnyBackend;
use crate::config::AppConfig;

/// `gridwatch connector …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectorCommand {
    /// Run one sink connector from a Fluvio-format connector file.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The connector file (Fluvio's format: apiVersion, meta, the sink's section, transforms).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// The pipeline's config file, for `backend`, `fluvio.*`, `registry.*`,
    /// `sinks.batch_max` and the checkpoint pacing (default: built-in
    /// defaults and GRIDWATCH_* variables).
    #[arg(long, env = "GRIDWATCH_CONFIG")]
    pub pipeline_config: Option<PathBuf>,
    /// Data directory: the topics (embedded backend without --url) and the
    /// connector's checkpoints.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A running `gridwatch run` to read the topic from (embedded backend).
    #[arg(long, env = "GRIDWATCH_URL")]
    pub url: Option<String>,
    /// Admin token of that instance (default: `admin.token` / `admin.token_file`).
    #[arg(long, env = "GRIDWATCH_ADMIN__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the connector serves /healthz, /readyz and /metrics (overrides `http.listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

pub async fn dispatch(cmd: ConnectorCommand) -> anyhow::Result<()> {
    match cmd {
        ConnectorCommand::Run(args) => run(args).await,
    }
}

// --- The connector file -------------------------------------------------

/// A connector file in Fluvio's format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    /// `0.1.0` (topic as a name) or `0.2.0` (topic as `{meta: {name}}`).
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub meta: Meta,
    /// The Kafka bridge's section: the keys of `sinks.kafka`.
    #[serde(default)]
    pub kafka: Option<KafkaSinkConfig>,
    /// The InfluxDB sink's section: the keys of `sinks.influxdb`.
    #[serde(default)]
    pub influxdb: Option<InfluxDbConfig>,
    /// The lake's section: the keys of `sinks.lake`.
    #[serde(default)]
    pub lake: Option<LakeConfig>,
    /// The webhook's section: the keys of `sinks.webhook`.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Record transforms applied before the sink, in order.
    #[serde(default)]
    pub transforms: Vec<TransformStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The connector's version (informational, as in Fluvio).
    pub version: String,
    /// The connector's name: logs, and the checkpoints unless `consumer.id` is set.
    pub name: String,
    /// `gridwatch-kafka-sink`, `gridwatch-influxdb-sink`, `gridwatch-lake-sink`
    /// or `gridwatch-webhook-sink`; the file must hold that sink's section.
    #[serde(rename = "type")]
    pub kind: String,
    /// The topic to consume.
    pub topic: TopicRef,
    /// Consumer settings (Fluvio's `meta.consumer`).
    #[serde(default)]
    pub consumer: Option<ConsumerMeta>,
    /// Accepted for compatibility with Fluvio's files; the sections read
    /// secrets from `*_file` keys instead.
    #[serde(default)]
    #[allow(dead_code)]
    pub secrets: Option<Vec<serde_yaml::Value>>,
}

/// `topic: name` (0.1.0) or `topic: {meta: {name}}` (0.2.0).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TopicRef {
    Name(String),
    Full { meta: TopicMeta },
}

#[derive(Debug, Clone, Deserialize)]
pub struct TopicMeta {
    pub name: String,
}

impl TopicRef {
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) => n,
            Self::Full { meta } => &meta.name,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerMeta {
    /// Names the connector's checkpoints (default: `meta.name`); two
    /// connectors with one id share a position.
    #[serde(default)]
    pub id: Option<String>,
    /// Only this partition (default: all of them).
    #[serde(default)]
    pub partition: Option<u32>,
    /// Largest fetch in bytes (accepted, as in Fluvio; batches are bounded
    /// by `sinks.batch_max` records instead).
    #[serde(default)]
    #[allow(dead_code)]
    pub max_bytes: Option<serde_yaml::Value>,
    #[serde(default)]
    pub offset: Option<OffsetMeta>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetMeta {
    /// `auto` (default) or `manual`: both commit after every flush of the
    /// sink. `none` (never commit) is refused: a restart would duplicate.
    #[serde(default = "auto")]
    pub strategy: String,
    /// Where a consumer without a checkpoint starts: `beginning` (default) or `end`.
    #[serde(default)]
    pub start: Option<String>,
    /// Accepted as in Fluvio; commits follow `sinks.checkpoint_interval`.
    #[serde(default)]
    #[allow(dead_code)]
    pub flush_period: Option<serde_yaml::Value>,
}

fn auto() -> String {
    "auto".into()
}

/// One `transforms` entry: `uses` and its `with` parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformStep {
    pub uses: String,
    #[serde(default)]
    pub with: serde_yaml::Mapping,
}

/// The transforms this binary knows.
pub const KNOWN_TRANSFORMS: &[&str] = &["gridwatch/severity-filter"];

/// Which sink the file configures.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    Kafka(KafkaSinkConfig),
    InfluxDb(InfluxDbConfig),
    Lake(LakeConfig),
    Webhook(WebhookConfig),
}

/// A parsed, checked connector file.
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub version: String,
    pub id: String,
    pub topic: String,
    pub partition: Option<u32>,
    pub start_at_end: bool,
    pub sink: SinkSpec,
    pub min_severity: Option<Severity>,
}

impl ConnectorFile {
    pub fn load(path: &Path) -> anyhow::Result<Connector> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading connector file {}", path.display()))?;
        let file: ConnectorFile = serde_yaml::from_str(&text)
            .with_context(|| format!("connector file {}", path.display()))?;
        file.check()
            .with_context(|| format!("connector file {}", path.display()))
    }

    /// Validates the file and resolves it; errors name the key.
    pub fn check(self) -> Result<Connector, ConfigError> {
        if !matches!(self.api_version.as_str(), "0.1.0" | "0.2.0") {
            return Err(ConfigError::new(
                "apiVersion",
                &self.api_version,
                "0.1.0 or 0.2.0",
            ));
        }
        if self.meta.name.trim().is_empty() {
            return Err(ConfigError::new("meta.name", "\"\"", "a non-empty name"));
        }
        let topic = self.meta.topic.name().to_owned();
        if topic.trim().is_empty() {
            return Err(ConfigError::new("meta.topic", "\"\"", "a topic name"));
        }
        let sections = [
            ("kafka", self.kafka.is_some()),
            ("influxdb", self.influxdb.is_some()),
            ("lake", self.lake.is_some()),
            ("webhook", self.webhook.is_some()),
        ];
        let present: Vec<&str> = sections
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        let wanted = self
            .meta
            .kind
            .strip_prefix("gridwatch-")
            .and_then(|k| k.strip_suffix("-sink"))
            .filter(|k| sections.iter().any(|(n, _)| n == k))
            .ok_or_else(|| {
                ConfigError::new(
                    "meta.type",
                    &self.meta.kind,
                    "gridwatch-kafka-sink, gridwatch-influxdb-sink, gridwatch-lake-sink or gridwatch-webhook-sink",
                )
            })?;
        if present != [wanted] {
            return Err(ConfigError::new(
                "meta.type",
                &self.meta.kind,
                format!(
                    "a type whose section is the only sink section in the file (found: {})",
                    if present.is_empty() {
                        "none".to_owned()
                    } else {
                        present.join(", ")
                    }
                ),
            ));
        }
        // Exactly one section is present, and it is `wanted`'s.
        let sink = if let Some(c) = self.kafka {
            c.validate("kafka")?;
            SinkSpec::Kafka(c)
        } else if let Some(c) = self.influxdb {
            c.validate("influxdb")?;
            SinkSpec::InfluxDb(c)
        } else if let Some(c) = self.lake {
            c.validate("lake")?;
            if topic != c.readings_topic && topic != c.anomalies_topic {
                return Err(ConfigError::new(
                    "meta.topic",
                    &topic,
                    format!(
                        "lake.readings_topic ({}) or lake.anomalies_topic ({}); the lake connector archives both",
                        c.readings_topic, c.anomalies_topic
                    ),
                ));
            }
            SinkSpec::Lake(c)
        } else if let Some(c) = self.webhook {
            c.validate("webhook")?;
            SinkSpec::Webhook(c)
        } else {
            return Err(ConfigError::new(
                "meta.type",
                &self.meta.kind,
                "a type with its section",
            ));
        };
        let consumer = self.meta.consumer.unwrap_or_default();
        let offset = consumer.offset.unwrap_or(OffsetMeta {
            strategy: auto(),
            start: None,
            flush_period: None,
        });
        if !matches!(offset.strategy.as_str(), "auto" | "manual") {
            return Err(ConfigError::new(
                "meta.consumer.offset.strategy",
                &offset.strategy,
                "auto or manual (the connector commits after every flush; none would duplicate on restart)",
            ));
        }
        let start_at_end = match offset.start.as_deref() {
            None | Some("beginning") => false,
            Some("end") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "meta.consumer.offset.start",
                    other,
                    "beginning or end",
                ));
            }
        };
        let mut min_severity = None;
        for (i, t) in self.transforms.iter().enumerate() {
            let name = t.uses.split('@').next().unwrap_or("");
            match name {
                "gridwatch/severity-filter" => {
                    let key = format!("transforms[{i}].with.min_severity");
                    let value = t
                        .with
                        .get("min_severity")
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| {
                            ConfigError::new(&key, "(missing)", "INFO, WARNING, ERROR or CRITICAL")
                        })?;
                    if let Some(extra) = t
                        .with
                        .keys()
                        .filter_map(|k| k.as_str())
                        .find(|k| *k != "min_severity")
                    {
                        return Err(ConfigError::new(
                            format!("transforms[{i}].with.{extra}"),
                            "(set)",
                            "only min_severity",
                        ));
                    }
                    min_severity = Some(parse_severity(value).ok_or_else(|| {
                        ConfigError::new(&key, value, "INFO, WARNING, ERROR or CRITICAL")
                    })?);
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("transforms[{i}].uses"),
                        &t.uses,
                        format!("a known transform: {}", KNOWN_TRANSFORMS.join(", ")),
                    ));
                }
            }
        }
        Ok(Connector {
            id: consumer.id.unwrap_or_else(|| self.meta.name.clone()),
            name: self.meta.name,
            version: self.meta.version,
            topic,
            partition: consumer.partition,
            start_at_end,
            sink,
            min_severity,
        })
    }
}

fn parse_severity(s: &str) -> Option<Severity> {
    Some(match s {
        "INFO" => Severity::Info,
        "WARNING" => Severity::Warning,
        "ERROR" => Severity::Error,
        "CRITICAL" => Severity::Critical,
        _ => return None,
    })
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Error => 2,
        Severity::Critical => 3,
    }
}

// --- The transform ------------------------------------------------------

/// A sink behind the `gridwatch/severity-filter` transform: anomalies
/// below `min` are passed over (counted as handled, never dead-lettered);
/// records that are not anomalies go to the sink unchanged.
pub struct SeverityFilter<S> {
    inner: S,
    min: Severity,
}

impl<S: Sink> Sink for SeverityFilter<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn recover(&mut self, topic: &str, partition: u32) -> Result<Option<u64>, SinkError> {
        self.inner.recover(topic, partition).await
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        let kept: Vec<SinkRecord> = batch
            .iter()
            .filter(|r| {
                framing::parse(&r.value, IdWidth::ContentId4)
                    .ok()
                    .and_then(|f| AnomalyEvent::from_avro(f.datum).ok())
                    .is_none_or(|a| rank(a.severity) >= rank(self.min))
            })
            .cloned()
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        self.inner.write(&kept).await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

// --- Where the topic is read from ----------------------------------------

/// The connector's topic source: a backend of its own, or a running
/// instance's admin API.
pub enum Source {
    Local(AnyBackend),
    Remote(Remote),
}

/// A running `gridwatch run`, read through its admin API.
pub struct Remote {
    client: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct WireFetch {
    high_watermark: u64,
    log_start: u64,
    records: Vec<WireRecord>,
}

#[derive(Serialize, Deserialize)]
struct WireRecord {
    #[serde(default)]
    offset: u64,
    timestamp_ms: i64,
    key: Option<String>,
    value: String,
}

fn remote_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Task(format!("remote gridwatch: {e}"))
}

impl Remote {
    async fn get(
        &self,
        topic: &str,
        partition: u32,
        query: &str,
    ) -> Result<WireFetch, BackendError> {
        let url = format!(
            "{}/api/v1/topics/{topic}/partitions/{partition}/records?{query}",
            self.base
        );
        let r = self.client.get(url).send().await.map_err(remote_err)?;
        match r.status() {
            StatusCode::NOT_FOUND => Err(BackendError::NoSuchTopic {
                topic: topic.into(),
            }),
            s if !s.is_success() => Err(remote_err(format!(
                "{s}: {}",
                r.text().await.unwrap_or_default()
            ))),
            _ => r.json().await.map_err(remote_err),
        }
    }
}

macro_rules! on_source {
    ($self:ident, $local:ident => $l:expr, $remote:ident => $r:expr) => {
        match $self {
            Source::Local($local) => $l.await,
            Source::Remote($remote) => $r,
        }
    };
}

impl TopicBackend for Source {
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<TopicInfo, BackendError> {
        on_source!(self, b => b.ensure_topic(name, partitions), r => {
            let all = self.list_topics().await?;
            let _ = r;
            all.into_iter().find(|t| t.name == name).ok_or(BackendError::NoSuchTopic { topic: name.into() })
        })
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, BackendError> {
        on_source!(self, b => b.list_topics(), r => {
            #[derive(Deserialize)]
            struct T { name: String, partitions: u32 }
            let url = format!("{}/api/v1/topics", r.base);
            let resp = r.client.get(url).send().await.map_err(remote_err)?;
            if !resp.status().is_success() {
                return Err(remote_err(resp.status()));
            }
            let ts: Vec<T> = resp.json().await.map_err(remote_err)?;
            Ok(ts.into_iter().map(|t| TopicInfo { name: t.name, partitions: t.partitions }).collect())
        })
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> Result<std::ops::Range<u64>, BackendError> {
        on_source!(self, b => b.append(topic, partition, records), r => {
            let body = AppendRequest::encode(&records);
            let url = format!("{}/api/v1/topics/{topic}/partitions/{partition}/records", r.base);
            let resp = r.client.post(url).json(&body).send().await.map_err(remote_err)?;
            if !resp.status().is_success() {
                return Err(remote_err(format!("{}: {}", resp.status(), resp.text().await.unwrap_or_default())));
            }
            let range: AppendResponse = resp.json().await.map_err(remote_err)?;
            Ok(range.first..range.end)
        })
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, BackendError> {
        on_source!(self, b => b.fetch(topic, partition, from, max, wait), r => {
            let got = r.get(topic, partition, &format!("offset={from}&max={max}&wait_ms={}", wait.as_millis())).await?;
            if from < got.log_start {
                return Err(BackendError::OffsetOutOfRange { topic: topic.into(), partition, offset: from });
            }
            let b64 = base64::engine::general_purpose::STANDARD;
            got.records.into_iter().map(|w| Ok(InRecord {
                offset: w.offset,
                timestamp_ms: w.timestamp_ms,
                key: w.key.map(|k| b64.decode(k).map(Bytes::from)).transpose().map_err(remote_err)?,
                value: Bytes::from(b64.decode(w.value).map_err(remote_err)?),
            })).collect()
        })
    }

    async fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        on_source!(self, b => b.high_watermark(topic, partition),
            r => Ok(r.get(topic, partition, "max=1").await?.high_watermark))
    }

    async fn log_start(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        on_source!(self, b => b.log_start(topic, partition),
            r => Ok(r.get(topic, partition, "max=1").await?.log_start))
    }
}

// --- The admin API's side: dead letters from a remote connector -----------

/// Records appended over HTTP (the DLQ route here, replay's output route),
/// keys and values in base64.
#[derive(Serialize, Deserialize)]
pub struct AppendRequest {
    records: Vec<WireRecord>,
}

impl AppendRequest {
    pub(crate) fn encode(records: &[OutRecord]) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Self {
            records: records
                .iter()
                .map(|o| WireRecord {
                    offset: 0,
                    timestamp_ms: o.timestamp_ms,
                    key: o.key.as_ref().map(|k| b64.encode(k)),
                    value: b64.encode(&o.value),
                })
                .collect(),
        }
    }

    /// The records, or which field is not base64 (for a 400 answer).
    pub(crate) fn decode(self) -> Result<Vec<OutRecord>, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut records = Vec::with_capacity(self.records.len());
        for w in self.records {
            let key = match w.key.map(|k| b64.decode(k)).transpose() {
                Ok(k) => k.map(Bytes::from),
                Err(e) => return Err(format!("key is not base64: {e}")),
            };
            let value = match b64.decode(w.value) {
                Ok(v) => Bytes::from(v),
                Err(e) => return Err(format!("value is not base64: {e}")),
            };
            records.push(OutRecord {
                key,
                value,
                timestamp_ms: w.timestamp_ms,
            });
        }
        Ok(records)
    }
}

#[derive(Serialize, Deserialize)]
struct AppendResponse {
    first: u64,
    end: u64,
}

/// `POST /api/v1/topics/{topic}/partitions/{p}/records` on `gridwatch run`:
/// a connector running apart appends its dead letters to the pipeline's
/// DLQ, where `gridwatch dlq` finds them. Only the dead-letter topic
/// accepts records this way; readings go through ingest.
pub async fn append_records(
    State(state): State<Arc<crate::http::AppState>>,
    UrlPath((topic, partition)): UrlPath<(String, u32)>,
    Json(req): Json<AppendRequest>,
) -> Response {
    let dead_letter = Topics::default().dead_letter;
    if topic != dead_letter {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": format!("only {dead_letter:?} takes records here; send readings to /api/v1/readings")})),
        )
            .into_response();
    }
    let records = match req.decode() {
        Ok(records) => records,
        Err(message) => return bad_request(message),
    };
    match state.backend.append(&topic, partition, records).await {
        Ok(range) => Json(AppendResponse {
            first: range.start,
            end: range.end,
        })
        .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

pub(crate) fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": message})),
    )
        .into_response()
}

// --- Running it -----------------------------------------------------------

async fn open_source(
    config: &AppConfig,
    args: &RunArgs,
) -> anyhow::Result<(Source, Option<std::fs::File>, Option<url::Url>)> {
    match config.backend {
        crate::backend::BackendKind::Fluvio => {
            let fluvio = gridwatch_backend_fluvio::FluvioBackend::connect(&config.fluvio)
                .await
                .context("connecting to the Fluvio cluster (fluvio.profile / fluvio.endpoint)")?;
            Ok((Source::Local(AnyBackend::Fluvio(fluvio)), None, None))
        }
        crate::backend::BackendKind::Embedded => match &args.url {
            Some(url) => {
                let token = match &args.token {
                    Some(t) => Some(t.clone()),
                    None => config.admin.resolve()?.map(|s| s.expose().to_owned()),
                };
                let mut headers = reqwest::header::HeaderMap::new();
                if let Some(t) = token {
                    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                        .context("the admin token is not a valid header value")?;
                    v.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, v);
                }
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .default_headers(headers)
                    .build()?;
                let base = url.trim_end_matches('/').to_owned();
                let registry = url::Url::parse(&format!("{base}/"))
                    .with_context(|| format!("--url {url} is not a URL"))?;
                Ok((
                    Source::Remote(Remote { client, base }),
                    None,
                    Some(registry),
                ))
            }
            None => {
                let lock = crate::app::lock_data_dir(config)?;
                Ok((
                    Source::Local(AnyBackend::Embedded(crate::app::open_backend(config)?)),
                    Some(lock),
                    None,
                ))
            }
        },
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let connector = ConnectorFile::load(&args.config)?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut config = AppConfig::load(args.pipeline_config.as_deref(), &env)?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    config.validate()?;
    let (source, _lock, remote_registry) = open_source(&config, &args).await?;
    let source = Arc::new(source);
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // Our own endpoint: probes and metrics, and the embedded registry when
    // the schemas have no other home.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding http.listen {}", config.http.listen))?;
    let addr = listener.local_addr()?;
    let own_registry = if remote_registry.is_none() && config.registry.url.is_none() {
        Some(
            gridwatch_registry::EmbeddedRegistry::open(config.data_dir.join("registry"))
                .await
                .context("opening the embedded schema registry")?,
        )
    } else {
        None
    };
    let server = {
        let mut router = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/readyz",
                axum::routing::get({
                    let ready = ready.clone();
                    move || async move {
                        if ready.load(Ordering::Acquire) {
                            (StatusCode::OK, "ready")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "starting")
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get({
                    let metrics = metrics.clone();
                    move || async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            metrics.render(now_ms()),
                        )
                    }
                }),
            );
        if let Some(registry) = own_registry {
            router = router.nest(
                gridwatch_registry::V3_BASE_PATH,
                gridwatch_registry::router(registry),
            );
        }
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
        })
    };
    println!(
        "Connector {} {} ({}) HTTP endpoint listening on http://{addr} (/healthz, /readyz, /metrics)",
        connector.name,
        connector.version,
        sink_name(&connector.sink)
    );

    // The dead-letter schema id: from the pipeline's registry.
    let embedded = remote_registry.or_else(|| url::Url::parse(&format!("http://{addr}/")).ok());
    let registry = gridwatch_registry::SchemaRegistry::connect(&config.registry, embedded)?;
    let registered = registry
        .start_up(&config.registry)
        .await
        .context("looking up Gridwatch's schemas in the registry")?;
    let topics = Topics::default();
    let dead_letters = DeadLetterTopic {
        topic: topics.dead_letter.clone(),
        schema_id: registered
            .content_id("io.gridwatch.DeadLetter")
            .context("the registry has no id for io.gridwatch.DeadLetter")?,
    };

    let runner_config = SinkRunnerConfig {
        batch_max: config.sinks.batch_max,
        checkpoint_events: config.sinks.checkpoint_events,
        checkpoint_interval: config.sinks.checkpoint_interval,
        ..SinkRunnerConfig::default()
    };
    let store = CheckpointStore::open(
        config
            .data_dir
            .join("connectors")
            .join(sanitize(&connector.id))
            .join("checkpoints"),
    )?;
    let mut consumed = vec![connector.topic.clone()];
    match &connector.sink {
        SinkSpec::Kafka(k) if k.dlq_topic.is_some() => consumed.push(k.source_dlq_topic.clone()),
        SinkSpec::Lake(l) => {
            for t in [&l.readings_topic, &l.anomalies_topic] {
                consumed.push(t.clone());
            }
        }
        _ => {}
    }
    let consumed: Vec<String> = consumed
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let all_topics = source.list_topics().await?;
    let mut tasks = Vec::new();
    for topic in &consumed {
        let info = all_topics
            .iter()
            .find(|t| t.name == *topic)
            .with_context(|| format!("topic {topic:?} does not exist (meta.topic)"))?;
        let partitions: Vec<u32> = match connector.partition {
            Some(p) if p < info.partitions => vec![p],
            Some(p) => anyhow::bail!(
                "meta.consumer.partition = {p} is not allowed: topic {topic} has partitions 0 to {}",
                info.partitions.saturating_sub(1)
            ),
            None => (0..info.partitions).collect(),
        };
        for p in partitions {
            let name = SinkRunner::<Source, SeverityFilter<InfluxDbSink>>::checkpoint_name(
                sink_name(&connector.sink),
                topic,
                p,
            );
            if connector.start_at_end && store.load(&name)?.is_none() {
                let hw = source.high_watermark(topic, p).await?;
                store.save(
                    &name,
                    &Checkpoint {
                        input_offset: hw,
                        warm_from: hw,
                        taken_at_ms: now_ms(),
                        ..Checkpoint::default()
                    },
                )?;
            }
            let mut cfg = runner_config.clone();
            cfg.retry = retry_of(&connector.sink);
            tasks.push(tokio::spawn(supervise(
                source.clone(),
                connector.clone(),
                config.data_dir.clone(),
                topic.clone(),
                p,
                dead_letters.clone(),
                store.clone(),
                cfg,
                metrics.clone(),
                shutdown_rx.clone(),
            )));
        }
    }
    ready.store(true, Ordering::Release);
    println!(
        "Connector {} consuming {} into {}; checkpoints under {}",
        connector.name,
        consumed.join(", "),
        sink_name(&connector.sink),
        config
            .data_dir
            .join("connectors")
            .join(sanitize(&connector.id))
            .display()
    );

    wait_for_signal().await?;
    println!("Connector stopping: flushing and committing…");
    let _ = shutdown_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = server.await;
    println!("Connector stopped cleanly.");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

fn sink_name(s: &SinkSpec) -> &'static str {
    match s {
        SinkSpec::Kafka(_) => "kafka",
        SinkSpec::InfluxDb(_) => "influxdb",
        SinkSpec::Lake(_) => "lake",
        SinkSpec::Webhook(_) => "webhook",
    }
}

fn retry_of(s: &SinkSpec) -> gridwatch_connector::RetryPolicy {
    match s {
        SinkSpec::Kafka(c) => c.retry.clone(),
        SinkSpec::InfluxDb(c) => c.retry.clone(),
        SinkSpec::Webhook(c) => c.retry.clone(),
        SinkSpec::Lake(_) => gridwatch_connector::RetryPolicy::default(),
    }
}

/// A file-name-safe form of the consumer id.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs one topic partition's driver, starting it again (from its
/// checkpoint) when the source fails, until shutdown.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    source: Arc<Source>,
    connector: Connector,
    data_dir: PathBuf,
    topic: String,
    partition: u32,
    dead_letters: DeadLetterTopic,
    store: CheckpointStore,
    config: SinkRunnerConfig,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let outcome = match &connector.sink {
            SinkSpec::Kafka(c) => {
                drive(
                    KafkaSink::connect(c).await,
                    &connector,
                    &source,
                    &topic,
                    partition,
                    &dead_letters,
                    &store,
                    &config,
                    &metrics,
                    &shutdown,
                )
                .await
            }
            SinkSpec::InfluxDb(c) => {
                drive(
                    InfluxDbSink::new(c),
                    &connector,
                    &source,
                    &topic,
                    partition,
                    &dead_letters,
                    &store,
                    &config,
                    &metrics,
                    &shutdown,
                )
                .await
            }
            SinkSpec::Lake(c) => {
                drive(
                    LakeSink::new(&c.clone().with_data_dir(&data_dir)),
                    &connector,
                    &source,
                    &topic,
                    partition,
                    &dead_letters,
                    &store,
                    &config,
                    &metrics,
                    &shutdown,
                )
                .await
            }
            SinkSpec::Webhook(c) => {
                drive(
                    WebhookSink::new(c),
                    &connector,
                    &source,
                    &topic,
                    partition,
                    &dead_letters,
                    &store,
                    &config,
                    &metrics,
                    &shutdown,
                )
                .await
            }
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(connector = %connector.name, %topic, partition, error = %e, "Connector driver stopped; starting it again from its checkpoint.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive<S: Sink, E: std::fmt::Display>(
    sink: Result<S, E>,
    connector: &Connector,
    source: &Arc<Source>,
    topic: &str,
    partition: u32,
    dead_letters: &DeadLetterTopic,
    store: &CheckpointStore,
    config: &SinkRunnerConfig,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let sink = sink.map_err(|e| anyhow::anyhow!("building the sink: {e}"))?;
    let sink = SeverityFilter {
        inner: sink,
        min: connector.min_severity.unwrap_or(Severity::Info),
    };
    SinkRunner::new(
        source.clone(),
        sink,
        topic,
        partition,
        dead_letters.clone(),
        store.clone(),
        config.clone(),
        metrics.clone(),
    )
    .run(shutdown.clone())
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Connector, String> {
        let file: ConnectorFile = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        file.check().map_err(|e| e.to_string())
    }

    const INFLUX: &str = r#"
apiVersion: 0.1.0
meta:
  version: 0.1.0
  name: gw-influx
  type: gridwatch-influxdb-sink
  topic: anomalies
  consumer:
    id: influx-1
    offset: {strategy: auto, start: beginning}
influxdb: {url: "http://127.0.0.1:8086", api: v1, database: grid}
"#;

    #[test]
    fn a_fluvio_format_file_parses() {
        let c = parse(INFLUX).unwrap();
        assert_eq!(c.topic, "anomalies");
        assert_eq!(c.id, "influx-1");
        assert!(matches!(c.sink, SinkSpec::InfluxDb(_)));
        assert!(!c.start_at_end);
        let v2 = INFLUX.replace("topic: anomalies", "topic: {meta: {name: anomalies}}");
        assert_eq!(parse(&v2).unwrap().topic, "anomalies");
    }

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../connectors/examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "one example per sink");
    }

    #[test]
    fn unknown_transforms_are_refused_by_name() {
        let bad = format!("{INFLUX}transforms:\n  - uses: infinyon/jolt@0.4.1\n    with: {{}}\n");
        let e = parse(&bad).unwrap_err();
        assert!(e.contains("transforms[0].uses"), "{e}");
        assert!(e.contains("infinyon/jolt@0.4.1"), "{e}");
        assert!(e.contains("gridwatch/severity-filter"), "{e}");
        let ok = format!(
            "{INFLUX}transforms:\n  - uses: gridwatch/severity-filter@0.1.0\n    with: {{min_severity: ERROR}}\n"
        );
        assert_eq!(parse(&ok).unwrap().min_severity, Some(Severity::Error));
        let bad_value = ok.replace("ERROR", "LOUD");
        assert!(parse(&bad_value).unwrap_err().contains("min_severity"));
    }

    #[test]
    fn type_and_section_must_agree() {
        let e =
            parse(&INFLUX.replace("gridwatch-influxdb-sink", "gridwatch-kafka-sink")).unwrap_err();
        assert!(e.contains("meta.type"), "{e}");
        let e = parse(&INFLUX.replace("gridwatch-influxdb-sink", "http-sink")).unwrap_err();
        assert!(
            e.contains("gridwatch-kafka-sink, gridwatch-influxdb-sink"),
            "{e}"
        );
        let e = parse(&INFLUX.replace("strategy: auto", "strategy: none")).unwrap_err();
        assert!(e.contains("meta.consumer.offset.strategy"), "{e}");
        let e = parse(&INFLUX.replace("database: grid", "database: grid, bogus: 1")).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    fn anomaly_record(offset: u64, severity: Severity) -> SinkRecord {
        let reading = gridwatch_contracts::SensorReading {
            meter_id: format!("m-{offset}"),
            timestamp: 1_767_225_600_000 + offset as i64,
            voltage: 250.0,
            current: 5.0,
            temperature: 20.0,
            status: gridwatch_contracts::MeterStatus::Ok,
        };
        let event = AnomalyEvent {
            anomaly_id: format!("a-{offset}"),
            anomaly_type: gridwatch_contracts::AnomalyType::VoltageSurge,
            severity,
            detected_at: reading.timestamp,
            original_event: reading,
            field: Some("voltage".into()),
            zscore: Some(4.0),
            window_mean: Some(230.0),
            window_stddev: Some(2.0),
            window_count: Some(10),
            threshold: Some(2.5),
            window_ms: Some(300_000),
        };
        let mut value = Vec::new();
        framing::write_header(&mut value, 3, IdWidth::ContentId4);
        event.encode_into(&mut value).unwrap();
        SinkRecord {
            topic: "anomalies".into(),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: Bytes::from(value),
        }
    }

    #[tokio::test]
    async fn the_severity_filter_passes_over_milder_anomalies() {
        struct Held(Vec<u64>);
        impl Sink for Held {
            fn name(&self) -> &str {
                "held"
            }
            async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
                self.0.extend(batch.iter().map(|r| r.offset));
                Ok(())
            }
        }
        let mut sink = SeverityFilter {
            inner: Held(Vec::new()),
            min: Severity::Critical,
        };
        let severities = [
            Severity::Info,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ];
        let batch: Vec<SinkRecord> = (0..40u64)
            .map(|o| anomaly_record(o, severities[o as usize % 4]))
            .collect();
        sink.write(&batch).await.unwrap();
        let critical: Vec<u64> = batch
            .iter()
            .filter(|r| {
                let f = framing::parse(&r.value, IdWidth::ContentId4).unwrap();
                AnomalyEvent::from_avro(f.datum).unwrap().severity == Severity::Critical
            })
            .map(|r| r.offset)
            .collect();
        assert_eq!(sink.inner.0, critical);
    }
}
