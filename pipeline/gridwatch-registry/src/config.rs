//! Registry client configuration: where the registry is, how to authenticate,
//! and how patiently to retry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::model::CompatibilityLevel;

/// How Gridwatch reaches its schema registry.
///
/// ```toml
/// [registry]
/// url = "http://apicurio:8080"
/// group = "gridwatch"
/// auth = { type = "bearer", token = "…" }
/// timeout = "10s"
/// retry = { max_retries = 3, initial_backoff = "100ms", max_backoff = "30s" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Root URL of an external registry, e.g. `http://apicurio:8080` (a URL
    /// that already ends in `/apis/registry/v3` or `/apis/ccompat/v7` is
    /// accepted too). Unset: the registry embedded in the `gridwatch` binary.
    #[serde(default)]
    pub url: Option<Url>,
    /// Which REST API the registry at `url` speaks: `apicurio-v3` (Apicurio
    /// Registry 3) or `ccompat` (Confluent Schema Registry, Karapace, or
    /// Apicurio's Confluent-compatible API).
    #[serde(default)]
    pub api: RegistryApi,
    /// Artifact group that holds Gridwatch's schemas (Apicurio only; the
    /// Confluent API has no groups).
    #[serde(default = "default_group")]
    pub group: String,
    /// Credentials sent with every request; unset sends none.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Limit on one request, connecting included (humantime, e.g. `10s`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Backoff for retryable failures (connect errors, timeouts, 5xx, 429).
    #[serde(default)]
    pub retry: RetryConfig,
    /// `COMPATIBILITY` rule Gridwatch puts on its group at start-up, so that an
    /// incompatible contract change is refused before any record is written
    /// with it. Unset leaves the registry's rules as they are.
    #[serde(default = "default_compatibility")]
    pub compatibility: Option<CompatibilityLevel>,
}

fn default_group() -> String {
    "gridwatch".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_compatibility() -> Option<CompatibilityLevel> {
    Some(CompatibilityLevel::Backward)
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: None,
            api: RegistryApi::default(),
            group: default_group(),
            auth: None,
            timeout: default_timeout(),
            retry: RetryConfig::default(),
            compatibility: default_compatibility(),
        }
    }
}

/// The REST API a registry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryApi {
    /// Apicurio Registry REST API v3 (`/apis/registry/v3`).
    #[default]
    ApicurioV3,
    /// The Confluent Schema Registry API (`/apis/ccompat/v7` on Apicurio).
    Ccompat,
}

/// Credentials for the registry.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`: Apicurio behind OIDC or a gateway.
    Bearer {
        /// The access token.
        token: Secret,
    },
    /// `Authorization: Basic …`: Apicurio basic auth, Confluent Cloud, Karapace.
    Basic {
        /// The user name; must not contain `:`.
        username: String,
        /// The password.
        password: Secret,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer { token } => f.debug_struct("Bearer").field("token", token).finish(),
            Self::Basic { username, password } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", password)
                .finish(),
        }
    }
}

/// A credential that never shows itself in `Debug` output or logs.
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

/// Exponential backoff for retryable failures. The defaults are the
/// pipeline's (FR-008): 100 ms doubling to at most 30 s, three retries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 disables retrying.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each later one.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap on any one wait, including one asked for by `Retry-After`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

fn default_max_retries() -> u32 {
    3
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl RetryConfig {
    /// The wait before retry number `retry` (0-based), before any `Retry-After`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Why a [`RegistryConfig`] cannot be used. The messages are what a user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("registry.url must be http or https, not '{scheme}'")]
    UrlScheme { scheme: String },
    #[error("registry.url must not have a query or fragment: '{url}'")]
    UrlExtras { url: String },
    #[error("registry.url is required when registry.api is 'ccompat'")]
    CcompatNeedsUrl,
    #[error("registry.url is not set; give the URL of an external registry or of the embedded one")]
    MissingUrl,
    #[error("registry.group must not be empty")]
    EmptyGroup,
    #[error("registry.timeout must be greater than zero")]
    ZeroTimeout,
    #[error(
        "registry.retry.initial_backoff ({initial:?}) must not exceed registry.retry.max_backoff ({max:?})"
    )]
    BackoffOrder { initial: Duration, max: Duration },
    #[error("registry.auth.token must not be empty")]
    EmptyToken,
    #[error("registry.auth.username must not be empty or contain ':'")]
    BadUsername,
    #[error("the registry HTTP client cannot be built: {0}")]
    HttpClient(String),
}

impl RegistryConfig {
    /// Checks what serde cannot: call straight after parsing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::UrlScheme {
                    scheme: url.scheme().to_owned(),
                });
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::UrlExtras {
                    url: url.to_string(),
                });
            }
        } else if self.api == RegistryApi::Ccompat {
            return Err(ConfigError::CcompatNeedsUrl);
        }
        if self.group.trim().is_empty() {
            return Err(ConfigError::EmptyGroup);
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err(ConfigError::BackoffOrder {
                initial: self.retry.initial_backoff,
                max: self.retry.max_backoff,
            });
        }
        match &self.auth {
            Some(Auth::Bearer { token }) if token.expose().is_empty() => {
                Err(ConfigError::EmptyToken)
            }
            Some(Auth::Basic { username, .. }) if username.is_empty() || username.contains(':') => {
                Err(ConfigError::BadUsername)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<RegistryConfig, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_embedded_registry_with_backward_compatibility() {
        let config = parse(serde_json::json!({})).unwrap();
        assert_eq!(config, RegistryConfig::default());
        assert_eq!(config.url, None);
        assert_eq!(config.group, "gridwatch");
        assert_eq!(config.compatibility, Some(CompatibilityLevel::Backward));
        assert_eq!(config.retry.max_retries, 3);
        config.validate().unwrap();
    }

    #[test]
    fn full_config_parses() {
        let config = parse(serde_json::json!({
            "url": "https://registry.example:8443",
            "api": "apicurio-v3",
            "group": "grid",
            "auth": {"type": "basic", "username": "svc", "password": "pw"},
            "timeout": "2s",
            "retry": {"max_retries": 5, "initial_backoff": "10ms", "max_backoff": "1s"},
            "compatibility": "FULL_TRANSITIVE"
        }))
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(
            config.compatibility,
            Some(CompatibilityLevel::FullTransitive)
        );
        assert_eq!(
            config.auth,
            Some(Auth::Basic {
                username: "svc".into(),
                password: Secret::new("pw")
            })
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse(serde_json::json!({"groop": "x"})).unwrap_err();
        assert!(err.starts_with("unknown field `groop`"), "{err}");
        let err = parse(serde_json::json!({"auth": {"type": "bearer", "token": "t", "user": "u"}}))
            .unwrap_err();
        assert!(err.contains("unknown field `user`"), "{err}");
    }

    #[test]
    fn secrets_do_not_leak_into_debug_output() {
        let auth = Auth::Basic {
            username: "svc".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{auth:?}");
        assert_eq!(shown, "Basic { username: \"svc\", password: Secret(***) }");
        let bearer = format!(
            "{:?}",
            Auth::Bearer {
                token: Secret::new("tok-123")
            }
        );
        assert!(!bearer.contains("tok-123"));
    }

    #[test]
    fn validation_messages_are_exact() {
        let cases = [
            (
                serde_json::json!({"url": "ftp://x"}),
                "registry.url must be http or https, not 'ftp'",
            ),
            (
                serde_json::json!({"api": "ccompat"}),
                "registry.url is required when registry.api is 'ccompat'",
            ),
            (
                serde_json::json!({"group": " "}),
                "registry.group must not be empty",
            ),
            (
                serde_json::json!({"timeout": "0s"}),
                "registry.timeout must be greater than zero",
            ),
            (
                serde_json::json!({"retry": {"initial_backoff": "2s", "max_backoff": "1s"}}),
                "registry.retry.initial_backoff (2s) must not exceed registry.retry.max_backoff (1s)",
            ),
            (
                serde_json::json!({"auth": {"type": "bearer", "token": ""}}),
                "registry.auth.token must not be empty",
            ),
            (
                serde_json::json!({"auth": {"type": "basic", "username": "a:b", "password": "p"}}),
                "registry.auth.username must not be empty or contain ':'",
            ),
        ];
        for (json, message) in cases {
            let err = parse(json).unwrap().validate().unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryConfig {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let waits: Vec<_> = (0..6).map(|n| retry.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry.backoff(u32::MAX), Duration::from_secs(1));
    }
}
