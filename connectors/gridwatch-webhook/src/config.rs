//! `sinks.webhook`: where alerts go, which ones, and in what shape.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gridwatch_connector::RetryPolicy;
use gridwatch_contracts::{ConfigError, Severity};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

/// The alert webhook's settings. Defaults are in the `default_*` functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where alerts are POSTed: an `http://` or `https://` URL (for
    /// Alertmanager, its `/api/v2/alerts`; for PagerDuty,
    /// `https://events.pagerduty.com/v2/enqueue`).
    pub url: Url,
    /// The least severe anomaly that is sent (default `CRITICAL`, US1's
    /// "dispatch a crew"); one of `INFO`, `WARNING`, `ERROR`, `CRITICAL`.
    /// Less severe anomalies are skipped, not dead-lettered.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// The payload shape (default `generic`): `generic`, `slack`,
    /// `pagerduty` or `alertmanager`; see [`Template`].
    #[serde(default)]
    pub template: Template,
    /// PagerDuty: the integration's routing key. Required with `template:
    /// pagerduty`, not allowed otherwise. Never logged.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// Extra request headers, e.g. an API key a receiver wants. Values are
    /// treated as secrets: never logged or printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A bearer token, sent as `Authorization: Bearer …`. Never logged.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the bearer token (surrounding whitespace ignored),
    /// read once at start-up; instead of `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Deadline of one request, connecting included (default `10s`,
    /// allowed 100ms to 10m). A timeout is a transient failure.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of transient failures (no answer, 429, 5xx) before the
    /// anomaly goes to the DLQ; FR-008's defaults.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// Payload shapes of common receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The anomaly as JSON (the `AnomalyEvent` contract's fields, times in
    /// epoch ms) plus `source` {topic, partition, offset}; one POST each.
    #[default]
    Generic,
    /// A Slack incoming webhook: `{"text": "…"}`, one message each.
    Slack,
    /// PagerDuty Events API v2 `trigger` events, `dedup_key` = the anomaly
    /// id, so a re-sent alert does not open a second incident.
    Pagerduty,
    /// Prometheus Alertmanager API v2: one POST per batch with an array of
    /// alerts, labelled so that Alertmanager groups and deduplicates them.
    Alertmanager,
}

fn default_min_severity() -> Severity {
    Severity::Critical
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl WebhookConfig {
    /// A config for `url` with every default.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            min_severity: default_min_severity(),
            template: Template::default(),
            routing_key: None,
            headers: BTreeMap::new(),
            token: None,
            token_file: None,
            timeout: default_timeout(),
            retry: RetryPolicy::default(),
        }
    }

    /// Checks values and their combination; `prefix` is where this section
    /// sits (`sinks.webhook`), so errors name the full key.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !matches!(self.url.scheme(), "http" | "https") || self.url.host_str().is_none() {
            return Err(ConfigError::new(
                key("url"),
                self.url.as_str(),
                "an http:// or https:// URL with a host",
            ));
        }
        match (self.template, &self.routing_key) {
            (Template::Pagerduty, None) => {
                return Err(ConfigError::new(
                    key("routing_key"),
                    "",
                    "the PagerDuty integration's routing key; required with template: pagerduty",
                ));
            }
            (Template::Pagerduty, Some(k)) if k.expose().trim().is_empty() => {
                return Err(ConfigError::new(
                    key("routing_key"),
                    "",
                    "a non-empty routing key",
                ));
            }
            (Template::Pagerduty, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    key("routing_key"),
                    "(set)",
                    "unset unless template is pagerduty",
                ));
            }
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(ConfigError::new(
                key("token_file"),
                self.token_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "unset when token is set (one or the other)",
            ));
        }
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new(
                    key("headers"),
                    name,
                    "header names of letters, digits and -",
                )
            })?;
            if HeaderValue::from_str(value.expose()).is_err() {
                return Err(ConfigError::new(
                    key(&format!("headers.{name}")),
                    "(redacted)",
                    "a header value of visible ASCII",
                ));
            }
            if header == AUTHORIZATION && (self.token.is_some() || self.token_file.is_some()) {
                return Err(ConfigError::new(
                    key("headers"),
                    name,
                    "no Authorization header when token or token_file is set",
                ));
            }
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(600) {
            return Err(ConfigError::new(
                key("timeout"),
                humantime::format_duration(self.timeout),
                "a duration from 100ms to 10m",
            ));
        }
        self.retry.validate(&key("retry"))
    }
}

/// A credential that never shows itself in `Debug` output, logs or a
/// serialised config.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serialises redacted, so a dumped config never carries the credential.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<WebhookConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"url":"http://127.0.0.1:9/hook"}"#).unwrap();
        assert_eq!(c.min_severity, Severity::Critical);
        assert_eq!(c.template, Template::Generic);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.retry, RetryPolicy::default());
        assert!(c.headers.is_empty());
        c.validate("sinks.webhook").unwrap();
    }

    #[test]
    fn every_template_and_severity_parses() {
        let c = parse(
            r#"{"url":"https://events.pagerduty.com/v2/enqueue","template":"pagerduty",
                "routing_key":"R0UT1NG","min_severity":"ERROR","headers":{"X-Api-Key":"k3y"}}"#,
        )
        .unwrap();
        c.validate("sinks.webhook").unwrap();
        assert_eq!(c.min_severity, Severity::Error);
        for t in ["generic", "slack", "alertmanager"] {
            let c = parse(&format!(r#"{{"url":"http://h/","template":"{t}"}}"#)).unwrap();
            c.validate("w").unwrap();
        }
        assert!(parse(r#"{"url":"http://h/","template":"teams"}"#).is_err());
        assert!(parse(r#"{"url":"http://h/","min_severity":"HIGH"}"#).is_err());
        assert!(parse(r#"{"url":"http://h/","secret":"x"}"#).is_err());
    }

    #[test]
    fn errors_name_the_key_the_value_and_what_is_allowed() {
        let check = |json: &str, want: &str| {
            let e = parse(json).unwrap().validate("sinks.webhook").unwrap_err();
            assert_eq!(e.to_string(), want);
        };
        check(
            r#"{"url":"http://h/","template":"pagerduty"}"#,
            r#"sinks.webhook.routing_key = "" is not allowed: the PagerDuty integration's routing key; required with template: pagerduty"#,
        );
        check(
            r#"{"url":"http://h/","routing_key":"r"}"#,
            r#"sinks.webhook.routing_key = "(set)" is not allowed: unset unless template is pagerduty"#,
        );
        check(
            r#"{"url":"file:///tmp/x"}"#,
            r#"sinks.webhook.url = "file:///tmp/x" is not allowed: an http:// or https:// URL with a host"#,
        );
        check(
            r#"{"url":"http://h/","headers":{"bad header":"v"}}"#,
            r#"sinks.webhook.headers = "bad header" is not allowed: header names of letters, digits and -"#,
        );
        check(
            r#"{"url":"http://h/","headers":{"X-Key":"line\nbreak"}}"#,
            r#"sinks.webhook.headers.X-Key = "(redacted)" is not allowed: a header value of visible ASCII"#,
        );
        check(
            r#"{"url":"http://h/","token":"t","headers":{"authorization":"Basic x"}}"#,
            r#"sinks.webhook.headers = "authorization" is not allowed: no Authorization header when token or token_file is set"#,
        );
        check(
            r#"{"url":"http://h/","timeout":"11m"}"#,
            r#"sinks.webhook.timeout = "11m" is not allowed: a duration from 100ms to 10m"#,
        );
        check(
            r#"{"url":"http://h/","retry":{"multiplier":0.5}}"#,
            r#"sinks.webhook.retry.multiplier = "0.5" is not allowed: a number from 1.0 to 10.0"#,
        );
    }

    #[test]
    fn secrets_never_print_or_serialise() {
        let c = parse(
            r#"{"url":"http://h/","template":"pagerduty","routing_key":"rk-secret",
                "headers":{"X-Api-Key":"hdr-secret"}}"#,
        )
        .unwrap();
        let shown = format!("{c:?}{}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("X-Api-Key"));
    }
}
