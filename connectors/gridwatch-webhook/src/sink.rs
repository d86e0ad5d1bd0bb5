//! [`WebhookSink`]: filter by severity → render the template → POST.
//!
//! # Delivery
//!
//! A webhook receiver cannot say what it already got, so this sink is
//! **at least once**: after a crash the driver re-delivers from the last
//! checkpoint and those alerts are POSTed again. Every payload carries the
//! anomaly id (PagerDuty's `dedup_key`, an Alertmanager label, the generic
//! body's `anomaly_id`) so receivers that deduplicate by it see each
//! anomaly once.
//!
//! Within one batch the sink avoids re-sending on its own retries: when a
//! POST fails transiently it remembers which alerts of the batch already got
//! through, and the retry of the same batch skips them. (If the retries run
//! out, the driver dead-letters the whole batch, those included; a DLQ
//! replay then sends them again.)
//!
//! # Failures
//!
//! - No answer, a timeout, 429 or a 5xx: [`SinkError::Transient`], retried
//!   under the shared policy (`Retry-After` is not consulted; the policy's
//!   backoff applies), then dead-lettered.
//! - Any other 4xx for one alert: that alert is dead-lettered at once
//!   ([`SinkError::Rejected`]); the others are still sent.
//! - A record that is not a framed Avro `AnomalyEvent`: dead-lettered.
//! - Anomalies below `min_severity` are skipped: written as far as the
//!   driver is concerned.

use std::collections::HashSet;
use std::error::Error as _;

use gridwatch_connector::{Sink, SinkError, SinkRecord};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, Severity};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::WebhookError;
use crate::config::{Secret, Template, WebhookConfig};
use crate::payload::{Alert, render};

/// Longest receiver answer kept in an error (and so in a dead letter).
const MAX_MESSAGE: usize = 1000;

/// A batch by (partition, first offset, last offset, length): enough to
/// recognise the driver retrying the same batch.
type BatchId = (u32, u64, u64, usize);

/// POSTs alerts for anomalies at or above a severity. Build with
/// [`WebhookSink::new`].
pub struct WebhookSink {
    http: reqwest::Client,
    url: Url,
    template: Template,
    routing_key: Option<Secret>,
    min_severity: Severity,
    /// Configured headers and the bearer token, all marked sensitive.
    headers: HeaderMap,
    /// The batch being retried, as (partition, first offset, last offset,
    /// length), and the offsets of it already delivered.
    retrying: Option<(BatchId, HashSet<u64>)>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url.as_str())
            .field("template", &self.template)
            .field("min_severity", &self.min_severity)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// Builds the sink: validates `config` (keys named under
    /// `sinks.webhook`), reads `token_file`, prepares the HTTP client.
    /// It does not contact the receiver.
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        config.validate("sinks.webhook")?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| WebhookError::Header(name.clone()))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| WebhookError::Header(name.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let token = match (&config.token, &config.token_file) {
            (Some(t), _) => Some(t.expose().to_owned()),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| WebhookError::TokenFile {
                        path: path.clone(),
                        source,
                    })?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(WebhookError::EmptyTokenFile { path: path.clone() });
                }
                Some(t.to_owned())
            }
            (None, None) => None,
        };
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| WebhookError::Header("Authorization".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("gridwatch-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(chain(&e)))?;
        tracing::info!(
            url = %config.url,
            template = ?config.template,
            min_severity = config.min_severity.as_str(),
            "Webhook sink configured."
        );
        Ok(Self {
            http,
            url: config.url.clone(),
            template: config.template,
            routing_key: config.routing_key.clone(),
            min_severity: config.min_severity,
            headers,
            retrying: None,
        })
    }

    async fn post(&self, body: &serde_json::Value) -> Result<(), SinkError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| SinkError::Permanent(format!("payload does not serialise: {e}")))?;
        let response = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Transient(chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut text = response.text().await.unwrap_or_default();
        if text.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Err(SinkError::from_http_status(status.as_u16(), &text))
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let identity: BatchId = (first.partition, first.offset, last.offset, batch.len());
        let mut delivered = match self.retrying.take() {
            Some((id, done)) if id == identity => done,
            _ => HashSet::new(),
        };

        let mut refused = Vec::new();
        let mut alerts = Vec::new();
        for record in batch {
            let event = framing::parse(&record.value, IdWidth::ContentId4)
                .map_err(|e| e.to_string())
                .and_then(|f| AnomalyEvent::from_avro(f.datum).map_err(|e| e.to_string()));
            match event {
                Ok(event) if event.severity < self.min_severity => {}
                Ok(_) if delivered.contains(&record.offset) => {}
                Ok(event) => alerts.push(Alert { record, event }),
                Err(e) => refused.push((record.offset, format!("not an anomaly record: {e}"))),
            }
        }

        let requests = render(
            self.template,
            self.routing_key.as_ref().map(Secret::expose),
            &alerts,
        );
        for (offsets, body) in requests {
            match self.post(&body).await {
                Ok(()) => delivered.extend(offsets),
                Err(SinkError::Transient(m)) => {
                    self.retrying = Some((identity, delivered));
                    return Err(SinkError::Transient(m));
                }
                Err(e) => refused.extend(offsets.into_iter().map(|o| (o, e.to_string()))),
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            refused.sort_by_key(|(o, _)| *o);
            Err(SinkError::Rejected(refused))
        }
    }
}

fn chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
