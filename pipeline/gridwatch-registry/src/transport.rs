//! One HTTP call with credentials, classified errors and retries: the part
//! the Apicurio and Confluent clients share.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::config::{Auth, ConfigError, RegistryConfig, RetryConfig};
use crate::error::{RegistryError, RuleViolation, is_rule_violation};
use crate::model::{ProblemDetails, RuleType};

/// How error bodies are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// RFC 7807 problem documents.
    Apicurio,
    /// `{"error_code": 40403, "message": "…"}`.
    Confluent,
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) body: Vec<u8>,
}

/// The HTTP client, its credentials and its retry policy.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    auth: Option<Auth>,
    retry: RetryConfig,
    dialect: Dialect,
}

impl Transport {
    pub(crate) fn new(config: &RegistryConfig, dialect: Dialect) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("gridwatch-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(Self {
            http,
            auth: config.auth.clone(),
            retry: config.retry.clone(),
            dialect,
        })
    }

    /// Sends the request, retrying retryable failures with backoff.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<(&'static str, Vec<u8>)>,
        accept: &'static str,
    ) -> Result<Answer, RegistryError> {
        let mut retry = 0;
        loop {
            match self.attempt(&method, url, body.as_ref(), accept).await {
                Ok(answer) => return Ok(answer),
                Err(err) if err.is_retryable() && retry < self.retry.max_retries => {
                    let wait = match &err {
                        RegistryError::Status {
                            retry_after: Some(secs),
                            ..
                        } => Duration::from_secs(*secs).min(self.retry.max_backoff),
                        _ => self.retry.backoff(retry),
                    };
                    tracing::warn!(
                        %method, url = %redact(url), retry = retry + 1, wait_ms = wait.as_millis() as u64, error = %err,
                        "Schema registry call failed; retrying."
                    );
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&(&'static str, Vec<u8>)>,
        accept: &'static str,
    ) -> Result<Answer, RegistryError> {
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, accept);
        if let Some((content_type, bytes)) = body {
            request = request
                .header(CONTENT_TYPE, *content_type)
                .body(bytes.clone());
        }
        request = match &self.auth {
            Some(Auth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(method, url, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(method, url, e))?;
        if status.is_success() {
            return Ok(Answer {
                body: bytes.to_vec(),
            });
        }
        Err(self.status_error(method, url, status, &headers, &bytes))
    }

    fn status_error(
        &self,
        method: &Method,
        url: &Url,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> RegistryError {
        let problem = match self.dialect {
            Dialect::Apicurio => parse_problem(body),
            Dialect::Confluent => parse_confluent_error(body, status),
        };
        let (method, url) = (method.to_string(), redact(url));
        match status.as_u16() {
            404 => RegistryError::NotFound {
                method,
                url,
                problem: problem.map(Box::new),
            },
            409 if problem.as_ref().is_some_and(is_rule_violation) => {
                let problem = problem.unwrap_or_default();
                RegistryError::RuleViolation(Box::new(RuleViolation::from_problem(&problem)))
            }
            code => RegistryError::Status {
                method,
                url,
                status: code,
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
                body: problem
                    .is_none()
                    .then(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
                    .filter(|b| !b.is_empty()),
                problem: problem.map(Box::new),
            },
        }
    }
}

fn transport_error(method: &Method, url: &Url, source: reqwest::Error) -> RegistryError {
    let (method, url) = (method.to_string(), redact(url));
    if source.is_timeout() {
        RegistryError::Timeout { method, url }
    } else if source.is_connect() {
        RegistryError::Connect { url, source }
    } else {
        RegistryError::Transport {
            method,
            url,
            source,
        }
    }
}

/// A URL for messages: without any user-info credentials.
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    url.to_string()
}

fn parse_problem(body: &[u8]) -> Option<ProblemDetails> {
    let problem: ProblemDetails = serde_json::from_slice(body).ok()?;
    let meaningful = problem.title.is_some()
        || problem.detail.is_some()
        || problem.name.is_some()
        || problem.causes.is_some();
    meaningful.then_some(problem)
}

#[derive(Deserialize)]
struct ConfluentError {
    error_code: i64,
    #[serde(default)]
    message: String,
}

fn parse_confluent_error(body: &[u8], status: StatusCode) -> Option<ProblemDetails> {
    let err: ConfluentError = serde_json::from_slice(body).ok()?;
    // Confluent answers 409 only for an incompatible schema.
    let incompatible = status == StatusCode::CONFLICT;
    Some(ProblemDetails {
        title: Some(err.message),
        status: Some(status.as_u16()),
        name: Some(format!("error_code {}", err.error_code)),
        rule_type: incompatible.then_some(RuleType::Compatibility),
        causes: incompatible.then(Vec::new),
        ..ProblemDetails::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_not_repeated_in_errors() {
        let url: Url = "http://user:pw@registry:8080/apis".parse().unwrap();
        assert_eq!(redact(&url), "http://registry:8080/apis");
    }

    #[test]
    fn confluent_conflicts_are_compatibility_violations() {
        let p = parse_confluent_error(
            br#"{"error_code":409,"message":"Schema being registered is incompatible"}"#,
            StatusCode::CONFLICT,
        )
        .unwrap();
        assert!(is_rule_violation(&p));
        assert_eq!(p.rule_type, Some(RuleType::Compatibility));
    }

    #[test]
    fn bodies_that_are_not_problems_are_kept_as_text() {
        assert_eq!(parse_problem(b"<html>bad gateway</html>"), None);
        assert_eq!(parse_problem(b"{}"), None);
    }
}
