//! The MQTT source: meters (or a head-end) publish readings to an MQTT
//! broker, and Gridwatch subscribes.
//!
//! No reading is lost across reconnects or restarts, because:
//! - the session is persistent (a fixed client id with `clean_session =
//!   false`, or MQTT 5 `clean_start = false` with a session expiry), so the
//!   broker queues messages while Gridwatch is away;
//! - subscriptions are QoS 1 or 2, so the broker redelivers every message
//!   that was not acknowledged;
//! - acknowledgements are manual and sent only after
//!   [`IngestTarget::ingest`](gridwatch_connector::IngestTarget::ingest)
//!   returns, that is once the readings are durable.
//!
//! Redeliveries can duplicate readings; ingest drops them by
//! `(meter_id, timestamp)`. The source does not parse payloads: JSON, framed
//! Avro and garbage alike go to ingest, which dead-letters what is
//! malformed.
//!
//! - [`config`]: `sources.mqtt` and its validation.
//! - [`source`]: [`MqttSource`], the connection and batching loop.

pub mod config;
mod session;
pub mod source;
mod tls;

use std::path::PathBuf;

pub use config::{MqttConfig, Protocol, ReconnectConfig, Secret, TlsConfig};
pub use source::{MqttSource, MqttStats};

/// Why the MQTT source could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A configuration value is out of range; permanent.
    #[error(transparent)]
    Config(#[from] gridwatch_contracts::ConfigError),
    /// A file named in the configuration could not be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TLS files do not make a usable client configuration.
    #[error("{key}: {message}")]
    Tls { key: &'static str, message: String },
    /// The broker refused the connection for a reason that retrying does
    /// not fix (credentials, authorization, client id).
    #[error("the MQTT broker refused the connection: {0}")]
    Refused(String),
    /// The broker refused every topic filter (usually its ACL).
    #[error("the MQTT broker refused every topic filter: {topics:?}")]
    SubscribeRefused { topics: Vec<String> },
    /// An internal task failed.
    #[error("MQTT source task failed: {0}")]
    Task(String),
}

impl MqttError {
    /// Whether restarting the source can help; configuration and refusals
    /// need an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Task(_))
    }
}
