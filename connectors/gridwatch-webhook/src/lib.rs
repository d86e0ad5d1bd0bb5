//! The alert webhook sink (US1: "dispatch a crew"): anomalies at or above
//! a severity, CRITICAL by default, POSTed as JSON to a receiver.
//!
//! - [`config`]: `sinks.webhook`, the URL, severity floor, template,
//!   headers and credentials, retry.
//! - [`payload`]: the bodies of the templates, `generic`, `slack`,
//!   `pagerduty` (Events API v2) and `alertmanager` (API v2).
//! - [`sink`]: [`WebhookSink`], the [`Sink`](gridwatch_connector::Sink) the
//!   runtime drives under the shared retry policy; at least once, with the
//!   anomaly id in every payload for receivers that deduplicate.

pub mod config;
pub mod payload;
pub mod sink;

use std::path::PathBuf;

pub use config::{Secret, Template, WebhookConfig};
pub use sink::WebhookSink;

/// Why the sink could not be built. Failures while running are
/// [`SinkError`](gridwatch_connector::SinkError)s instead.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("configuration: {0}")]
    Config(#[from] gridwatch_contracts::ConfigError),
    #[error("cannot read token_file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token_file {path} is empty")]
    EmptyTokenFile { path: PathBuf },
    #[error("header {0} is not a valid HTTP header")]
    Header(String),
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
}
