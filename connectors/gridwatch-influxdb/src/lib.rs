//! The InfluxDB sink: Gridwatch's anomalies as time series, for the
//! operator dashboards (FR-004).
//!
//! - [`config`]: `sinks.influxdb`, both APIs, credentials, TLS, retry.
//! - [`encoder`]: an [`AnomalyEvent`](gridwatch_contracts::AnomalyEvent) as
//!   one line-protocol point, and why that makes writes idempotent.
//! - `service` (private): one HTTP write request and what its answer means.
//! - [`sink`]: [`InfluxDbSink`], the [`Sink`](gridwatch_connector::Sink) the
//!   runtime drives: batch, encode, send, isolate refused lines.
//!
//! The HTTP client is `reqwest` (rustls), already in the workspace, rather
//! than the design card's `influxdb2` crate: `influxdb2` speaks only the v2
//! API, while Gridwatch must also write to 1.x servers, and its errors do
//! not expose the HTTP status the retry policy (FR-008) is defined on.

pub mod config;
pub mod encoder;
mod service;
pub mod sink;

use std::path::PathBuf;

pub use config::{Api, InfluxDbConfig, Secret, TlsConfig};
pub use encoder::{EncodeError, LineEncoder};
pub use sink::InfluxDbSink;

/// Why the sink could not be built. Failures while running are
/// [`SinkError`](gridwatch_connector::SinkError)s instead.
#[derive(Debug, thiserror::Error)]
pub enum InfluxDbError {
    #[error("configuration: {0}")]
    Config(#[from] gridwatch_contracts::ConfigError),
    #[error("cannot read {key} {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token_file {path} is empty")]
    EmptyTokenFile { path: PathBuf },
    #[error("tls.ca_cert {path} holds no PEM certificate")]
    CaCert { path: PathBuf },
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
}
