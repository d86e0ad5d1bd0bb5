//! Configuration of the Kafka bridge (sink) and the Kafka source, and its
//! translation to librdkafka properties.
//!
//! Both sit in Gridwatch's layered config (`sinks.kafka`, `sources.kafka`);
//! `validate(prefix)` names keys under that prefix so a user sees exactly
//! which line to fix. Secrets are held in [`Secret`], which neither `Debug`
//! nor `Serialize` reveals, so printing the effective config never leaks them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gridwatch_connector::RetryPolicy;
use gridwatch_contracts::ConfigError;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// A password or other secret: deserialised as a plain string, shown as
/// `<redacted>` by `Debug` and `Serialize`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to the client and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// TLS to the brokers. Present = on (`security.protocol` `ssl`, or
/// `sasl_ssl` with [`SaslConfig`]); every file is PEM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle that signs the brokers' certificates (default: the
    /// system's trust store).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate, for brokers that require mutual TLS (default none;
    /// needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// Private key of `client_cert` (default none).
    pub client_key: Option<PathBuf>,
}

/// SASL mechanisms librdkafka supports without Kerberos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL authentication. Present = on (`sasl_plaintext`, or `sasl_ssl` with
/// [`TlsConfig`]). Give the password inline or, better, in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    pub username: String,
    /// The password; never logged. Exactly one of `password` and
    /// `password_file` must be set.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file whose content (trailing newline trimmed) is the password, so
    /// the secret can come from a Kubernetes secret mount.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// How the bridge compresses produce batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Which replicas must have a record before the broker acknowledges it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    /// Every in-sync replica: required by the idempotent producer, so the
    /// only setting that keeps the bridge exactly-once.
    #[default]
    All,
    /// The leader only: faster, but a leader failover can lose records the
    /// bridge was told were written, and the idempotent producer is off.
    #[serde(rename = "1")]
    Leader,
}

/// `sinks.kafka`: the bridge that copies the pipeline's `anomalies` (and
/// optionally `dead-letter`) topic to a Kafka-compatible cluster.
///
/// ```toml
/// [sinks.kafka]
/// brokers = ["127.0.0.1:9092"]
/// topic = "anomalies"
/// dlq_topic = "gridwatch-dead-letter"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` (required, at least one). Prefer
    /// `127.0.0.1` to `localhost` for a local broker: Tansu listens on IPv4.
    pub brokers: Vec<String>,
    /// Kafka topic the anomalies go to (default `anomalies`). It must exist:
    /// the bridge does not create topics.
    #[serde(default = "default_sink_topic")]
    pub topic: String,
    /// Kafka topic for records of the pipeline's dead-letter topic (default
    /// none: dead letters are not bridged).
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Name of the pipeline topic whose records are dead letters and go to
    /// `dlq_topic` (default `dead-letter`).
    #[serde(default = "default_source_dlq_topic")]
    pub source_dlq_topic: String,
    /// Client id the brokers see in their logs and quotas (default
    /// `gridwatch-kafka-bridge`). With `transactional`, it is also the
    /// transactional id, so it must be stable across restarts and unique
    /// per bridge instance.
    #[serde(default = "default_sink_client_id")]
    pub client_id: String,
    /// How long the producer waits to fill a batch (default `5ms`, 0 to 10s).
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// `all` (default, needed for exactly-once) or `1`.
    #[serde(default)]
    pub acks: Acks,
    /// `none`, `gzip`, `snappy`, `lz4` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// How long one write may wait for the brokers' acknowledgement before
    /// it fails as transient and the retry policy takes over (default
    /// `30s`, 1s to 10m).
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Exactly-once by Kafka transactions (one per write, read back with
    /// `read_committed`) instead of the default, the idempotent producer
    /// plus reading back the topic's tail at start-up. Only for brokers that
    /// commit transactions: Tansu 0.6 does not (default `false`).
    #[serde(default)]
    pub transactional: bool,
    /// How many of the newest records per Kafka partition start-up recovery
    /// reads at most, looking for what the bridge already wrote (default
    /// 100000, 1 to 100000000). It must cover everything written since the
    /// last checkpoint; older positions are covered by the checkpoint.
    #[serde(default = "default_recovery_scan")]
    pub recovery_scan: u64,
    /// TLS to the brokers (default off).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// SASL authentication (default off).
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Retry policy for transient failures (FR-008's defaults).
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_sink_topic() -> String {
    "anomalies".into()
}
fn default_source_dlq_topic() -> String {
    "dead-letter".into()
}
fn default_sink_client_id() -> String {
    "gridwatch-kafka-bridge".into()
}
fn default_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_recovery_scan() -> u64 {
    100_000
}

impl KafkaSinkConfig {
    /// A config with every default and these brokers.
    pub fn new(brokers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            brokers: brokers.into_iter().map(Into::into).collect(),
            topic: default_sink_topic(),
            dlq_topic: None,
            source_dlq_topic: default_source_dlq_topic(),
            client_id: default_sink_client_id(),
            linger: default_linger(),
            acks: Acks::default(),
            compression: Compression::default(),
            delivery_timeout: default_delivery_timeout(),
            transactional: false,
            recovery_scan: default_recovery_scan(),
            tls: None,
            sasl: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Checks every key; `prefix` is where the section sits (`sinks.kafka`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        validate_brokers(&self.brokers, &key("brokers"))?;
        validate_topic(&self.topic, &key("topic"))?;
        if let Some(dlq) = &self.dlq_topic {
            validate_topic(dlq, &key("dlq_topic"))?;
            if *dlq == self.topic {
                return Err(ConfigError::new(
                    key("dlq_topic"),
                    dlq,
                    format!("a topic other than {}.topic", prefix),
                ));
            }
        }
        validate_topic(&self.source_dlq_topic, &key("source_dlq_topic"))?;
        validate_client_id(&self.client_id, &key("client_id"))?;
        if self.linger > Duration::from_secs(10) {
            return Err(ConfigError::new(
                key("linger"),
                humantime::format_duration(self.linger),
                "a duration from 0ms to 10s",
            ));
        }
        if self.delivery_timeout < Duration::from_secs(1)
            || self.delivery_timeout > Duration::from_secs(600)
        {
            return Err(ConfigError::new(
                key("delivery_timeout"),
                humantime::format_duration(self.delivery_timeout),
                "a duration from 1s to 10m",
            ));
        }
        if self.delivery_timeout <= self.linger {
            return Err(ConfigError::new(
                key("delivery_timeout"),
                humantime::format_duration(self.delivery_timeout),
                format!("a duration longer than {prefix}.linger"),
            ));
        }
        if self.transactional && self.acks != Acks::All {
            return Err(ConfigError::new(
                key("acks"),
                "1",
                format!("\"all\" when {prefix}.transactional is true"),
            ));
        }
        if !(1..=100_000_000).contains(&self.recovery_scan) {
            return Err(ConfigError::new(
                key("recovery_scan"),
                self.recovery_scan,
                "an integer from 1 to 100000000",
            ));
        }
        validate_security(self.tls.as_ref(), self.sasl.as_ref(), prefix)?;
        self.retry.validate(&key("retry"))
    }

    /// librdkafka producer properties. Reads `sasl.password_file`, hence
    /// the error.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, std::io::Error> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("compression.type", self.compression.as_str())
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            // The bridge awaits every delivery before a write returns, so
            // the queue only needs to hold one batch; keep it roomy.
            .set("queue.buffering.max.messages", "1000000")
            // Keep a broken connection from holding up a write beyond its
            // delivery timeout.
            .set("socket.connection.setup.timeout.ms", "10000");
        match self.acks {
            Acks::All => {
                c.set("acks", "all").set("enable.idempotence", "true");
            }
            Acks::Leader => {
                c.set("acks", "1").set("enable.idempotence", "false");
            }
        }
        if self.transactional {
            c.set("transactional.id", &self.client_id);
        }
        apply_security(&mut c, self.tls.as_ref(), self.sasl.as_ref())?;
        Ok(c)
    }
}

/// `sources.kafka`: readings consumed from Kafka topics by a consumer
/// group, committed only once Gridwatch holds them durably.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port` (required, at least one).
    pub brokers: Vec<String>,
    /// Topics to consume (required, at least one). Each message is one
    /// reading: JSON, or Avro with Apicurio v3 framing.
    pub topics: Vec<String>,
    /// Consumer group; the group's committed offsets are where a restart
    /// resumes (default `gridwatch`).
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// For a group with no committed offset: start at the oldest message
    /// (`true`, default) or only take new ones (`false`).
    #[serde(default = "default_true")]
    pub from_beginning: bool,
    /// Client id the brokers see (default `gridwatch-kafka-source`).
    #[serde(default = "default_source_client_id")]
    pub client_id: String,
    /// Most messages handed to ingest at once (default 500, 1 to 100000).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a batch waits to fill before it is ingested anyway
    /// (default `50ms`, 1ms to 10s).
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Backoff while ingest reports backpressure or is unavailable
    /// (FR-008's defaults; `max_retries` is ignored: a source never drops
    /// readings, it keeps waiting).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// TLS to the brokers (default off).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// SASL authentication (default off).
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
}

fn default_group_id() -> String {
    "gridwatch".into()
}
fn default_true() -> bool {
    true
}
fn default_source_client_id() -> String {
    "gridwatch-kafka-source".into()
}
fn default_batch_size() -> usize {
    500
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(50)
}

impl KafkaSourceConfig {
    /// A config with every default, these brokers and topics.
    pub fn new(
        brokers: impl IntoIterator<Item = impl Into<String>>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            brokers: brokers.into_iter().map(Into::into).collect(),
            topics: topics.into_iter().map(Into::into).collect(),
            group_id: default_group_id(),
            from_beginning: true,
            client_id: default_source_client_id(),
            batch_size: default_batch_size(),
            batch_wait: default_batch_wait(),
            retry: RetryPolicy::default(),
            tls: None,
            sasl: None,
        }
    }

    /// Checks every key; `prefix` is where the section sits (`sources.kafka`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        validate_brokers(&self.brokers, &key("brokers"))?;
        if self.topics.is_empty() {
            return Err(ConfigError::new(
                key("topics"),
                "[]",
                "a list of one or more topic names",
            ));
        }
        for (i, topic) in self.topics.iter().enumerate() {
            validate_topic(topic, &format!("{prefix}.topics[{i}]"))?;
        }
        validate_client_id(&self.group_id, &key("group_id"))?;
        validate_client_id(&self.client_id, &key("client_id"))?;
        if !(1..=100_000).contains(&self.batch_size) {
            return Err(ConfigError::new(
                key("batch_size"),
                self.batch_size,
                "an integer from 1 to 100000",
            ));
        }
        if self.batch_wait < Duration::from_millis(1) || self.batch_wait > Duration::from_secs(10) {
            return Err(ConfigError::new(
                key("batch_wait"),
                humantime::format_duration(self.batch_wait),
                "a duration from 1ms to 10s",
            ));
        }
        validate_security(self.tls.as_ref(), self.sasl.as_ref(), prefix)?;
        self.retry.validate(&key("retry"))
    }

    /// librdkafka consumer properties.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, std::io::Error> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("group.id", &self.group_id)
            // Offsets are committed by hand, after ingest returned.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                if self.from_beginning {
                    "earliest"
                } else {
                    "latest"
                },
            );
        apply_security(&mut c, self.tls.as_ref(), self.sasl.as_ref())?;
        Ok(c)
    }
}

fn validate_brokers(brokers: &[String], key: &str) -> Result<(), ConfigError> {
    if brokers.is_empty() {
        return Err(ConfigError::new(
            key,
            "[]",
            "a list of one or more host:port addresses",
        ));
    }
    for (i, broker) in brokers.iter().enumerate() {
        let ok = broker.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok || broker.contains(',') || broker.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                format!("{key}[{i}]"),
                broker,
                "host:port, e.g. 127.0.0.1:9092",
            ));
        }
    }
    Ok(())
}

/// Kafka's own rule: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn validate_topic(topic: &str, key: &str) -> Result<(), ConfigError> {
    let ok = (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            topic,
            "a Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -",
        ))
    }
}

fn validate_client_id(id: &str, key: &str) -> Result<(), ConfigError> {
    if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
        return Err(ConfigError::new(key, id, "1 to 255 printable characters"));
    }
    Ok(())
}

fn validate_security(
    tls: Option<&TlsConfig>,
    sasl: Option<&SaslConfig>,
    prefix: &str,
) -> Result<(), ConfigError> {
    if let Some(tls) = tls
        && tls.client_cert.is_some() != tls.client_key.is_some()
    {
        let (k, v) = match &tls.client_cert {
            Some(cert) => (
                "client_key",
                format!("unset while client_cert = {}", cert.display()),
            ),
            None => ("client_cert", "unset while client_key is set".to_owned()),
        };
        return Err(ConfigError::new(
            format!("{prefix}.tls.{k}"),
            v,
            "client_cert and client_key set together, or neither",
        ));
    }
    if let Some(sasl) = sasl {
        if sasl.username.is_empty() {
            return Err(ConfigError::new(
                format!("{prefix}.sasl.username"),
                "\"\"",
                "a non-empty user name",
            ));
        }
        match (&sasl.password, &sasl.password_file) {
            (Some(_), None) | (None, Some(_)) => {}
            (Some(_), Some(file)) => {
                return Err(ConfigError::new(
                    format!("{prefix}.sasl.password_file"),
                    file.display(),
                    "unset when sasl.password is set (one of the two)",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    format!("{prefix}.sasl.password"),
                    "unset",
                    "a password, or sasl.password_file naming a file that holds it",
                ));
            }
        }
    }
    Ok(())
}

fn apply_security(
    c: &mut ClientConfig,
    tls: Option<&TlsConfig>,
    sasl: Option<&SaslConfig>,
) -> Result<(), std::io::Error> {
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol)
        // Reconnect to a restarted broker within a second rather than
        // librdkafka's default of up to 10s, so an outage costs no more
        // retries than it must.
        .set("reconnect.backoff.max.ms", "1000");
    if let Some(tls) = tls {
        if let Some(ca) = &tls.ca_cert {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some(cert) = &tls.client_cert {
            c.set("ssl.certificate.location", cert.display().to_string());
        }
        if let Some(key) = &tls.client_key {
            c.set("ssl.key.location", key.display().to_string());
        }
    }
    if let Some(sasl) = sasl {
        let password = match (&sasl.password, &sasl.password_file) {
            (Some(p), _) => p.expose().to_owned(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, None) => String::new(),
        };
        c.set("sasl.mechanism", sasl.mechanism.as_str())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", password);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(toml_like_json: serde_json::Value) -> Result<KafkaSinkConfig, serde_json::Error> {
        serde_json::from_value(toml_like_json)
    }

    #[test]
    fn sink_defaults() {
        let c = sink(serde_json::json!({"brokers": ["127.0.0.1:9092"]})).unwrap();
        assert_eq!(c, KafkaSinkConfig::new(["127.0.0.1:9092"]));
        assert_eq!(c.topic, "anomalies");
        assert_eq!(c.dlq_topic, None);
        assert_eq!(c.acks, Acks::All);
        assert!(!c.transactional);
        assert_eq!(c.linger, Duration::from_millis(5));
        c.validate("sinks.kafka").unwrap();
        let props = c.client_config().unwrap();
        assert_eq!(props.get("enable.idempotence"), Some("true"));
        assert_eq!(props.get("acks"), Some("all"));
        assert_eq!(props.get("security.protocol"), Some("plaintext"));
        assert_eq!(props.get("transactional.id"), None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = sink(serde_json::json!({"brokers": ["a:1"], "topics": "x"})).unwrap_err();
        assert!(e.to_string().contains("unknown field `topics`"), "{e}");
    }

    #[test]
    fn errors_name_key_value_and_range() {
        let mut c = KafkaSinkConfig::new(["127.0.0.1"]);
        let e = c.validate("sinks.kafka").unwrap_err();
        assert_eq!(e.key, "sinks.kafka.brokers[0]");
        assert_eq!(e.value, "127.0.0.1");
        assert_eq!(e.allowed, "host:port, e.g. 127.0.0.1:9092");

        c.brokers = vec!["127.0.0.1:9092".into()];
        c.topic = "bad topic".into();
        let e = c.validate("sinks.kafka").unwrap_err();
        assert_eq!(e.key, "sinks.kafka.topic");

        c.topic = "anomalies".into();
        c.dlq_topic = Some("anomalies".into());
        let e = c.validate("sinks.kafka").unwrap_err();
        assert_eq!(e.key, "sinks.kafka.dlq_topic");
        assert_eq!(e.allowed, "a topic other than sinks.kafka.topic");

        c.dlq_topic = None;
        c.acks = Acks::Leader;
        c.transactional = true;
        assert_eq!(
            c.validate("sinks.kafka").unwrap_err().key,
            "sinks.kafka.acks"
        );

        c.transactional = false;
        c.retry.max_retries = 1000;
        assert_eq!(
            c.validate("sinks.kafka").unwrap_err().key,
            "sinks.kafka.retry.max_retries"
        );
    }

    #[test]
    fn secrets_are_redacted_and_exclusive() {
        let c = sink(serde_json::json!({
            "brokers": ["10.0.0.1:9093"],
            "tls": {"ca_cert": "/etc/ca.pem"},
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "bridge", "password": "hunter2"},
        }))
        .unwrap();
        c.validate("sinks.kafka").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        let props = c.client_config().unwrap();
        assert_eq!(props.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(props.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(props.get("sasl.password"), Some("hunter2"));

        let mut both = c.clone();
        if let Some(s) = both.sasl.as_mut() {
            s.password_file = Some("/run/secret".into());
        }
        assert_eq!(
            both.validate("sinks.kafka").unwrap_err().key,
            "sinks.kafka.sasl.password_file"
        );
    }

    #[test]
    fn password_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut c = KafkaSourceConfig::new(["127.0.0.1:9092"], ["readings"]);
        c.sasl = Some(SaslConfig {
            mechanism: SaslMechanism::Plain,
            username: "u".into(),
            password: None,
            password_file: Some(file),
        });
        c.validate("sources.kafka").unwrap();
        let props = c.client_config().unwrap();
        assert_eq!(props.get("sasl.password"), Some("s3cret"));
        assert_eq!(props.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(props.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn tls_client_cert_needs_its_key() {
        let mut c = KafkaSourceConfig::new(["127.0.0.1:9092"], ["readings"]);
        c.tls = Some(TlsConfig {
            client_cert: Some("/c.pem".into()),
            ..TlsConfig::default()
        });
        let e = c.validate("sources.kafka").unwrap_err();
        assert_eq!(e.key, "sources.kafka.tls.client_key");
    }

    #[test]
    fn source_defaults_and_ranges() {
        let c: KafkaSourceConfig = serde_json::from_value(
            serde_json::json!({"brokers": ["127.0.0.1:9092"], "topics": ["readings"]}),
        )
        .unwrap();
        assert_eq!(c, KafkaSourceConfig::new(["127.0.0.1:9092"], ["readings"]));
        assert_eq!(c.group_id, "gridwatch");
        assert!(c.from_beginning);
        c.validate("sources.kafka").unwrap();
        let mut bad = c.clone();
        bad.topics.clear();
        assert_eq!(
            bad.validate("sources.kafka").unwrap_err().key,
            "sources.kafka.topics"
        );
        let mut bad = c;
        bad.batch_size = 0;
        let e = bad.validate("sources.kafka").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.value.as_str()),
            ("sources.kafka.batch_size", "0")
        );
    }
}
