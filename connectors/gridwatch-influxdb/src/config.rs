//! `sinks.influxdb`: where the anomalies go and how.
//!
//! One struct serves both APIs because operators move between them (a 1.x
//! server today, InfluxDB 2/3 or a compatible store tomorrow) and the
//! rest of the settings do not change. [`InfluxDbConfig::validate`] checks
//! the combination right after parsing, so a v2 config without a bucket
//! stops start-up with the key's name instead of failing on the first write.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gridwatch_connector::RetryPolicy;
use gridwatch_contracts::ConfigError;
use serde::{Deserialize, Serialize};
use url::Url;

/// The InfluxDB sink's settings. Defaults are in the `default_*` functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxDbConfig {
    /// Base URL of the server, `http://host:8086` or `https://…`. A path
    /// is kept as a prefix, for servers behind a reverse proxy.
    pub url: Url,
    /// Which write API to speak: `v2` (`/api/v2/write`, InfluxDB 2.x/3.x,
    /// Cloud and compatible stores; default) or `v1` (`/write`, 1.x).
    #[serde(default)]
    pub api: Api,
    /// v1: the database to write to. Required with `api: v1`.
    #[serde(default)]
    pub database: Option<String>,
    /// v1: the retention policy (`rp=`); the database's default if unset.
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v2: the organisation (name or id). Required with `api: v2`.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: the bucket. Required with `api: v2`.
    #[serde(default)]
    pub bucket: Option<String>,
    /// API token, sent as `Authorization: Token …`. Required with `api: v2`
    /// (or `token_file`); with `v1`, for 1.x-compatible servers that take
    /// tokens. Never logged: it serialises and prints as `***`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the token (surrounding whitespace ignored), for
    /// Kubernetes secrets mounted as files. Read once at start-up.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// v1: user name for HTTP basic auth, when the server has auth enabled.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: password for `username`. Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Measurement the anomalies are written to (default `anomalies`).
    #[serde(default = "default_measurement")]
    pub measurement: String,
    /// Most points in one HTTP request (default 5000, InfluxData's
    /// recommended batch; allowed 1 to 100000). A larger batch from the
    /// driver is split into requests of this size.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Gzip request bodies (default true): line protocol compresses about
    /// 6:1, which matters more than the CPU on a shared link.
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// Deadline of one HTTP request, connecting included (default `10s`,
    /// allowed 100ms to 10m). A timeout is a transient failure.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS for `https://` URLs.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Retries of transient failures before records go to the DLQ
    /// (FR-008's defaults: 100ms doubling to 30s, 3 retries).
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// The write API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST /write?db=&rp=&precision=ms` (InfluxDB 1.x).
    V1,
    /// `POST /api/v2/write?org=&bucket=&precision=ms` (InfluxDB 2.x/3.x).
    #[default]
    V2,
}

/// TLS settings for `https://` servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with extra CA certificates to trust (a private CA or a
    /// self-signed server certificate), on top of the system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (default false). For tests only: it
    /// turns TLS into encryption without authentication.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_measurement() -> String {
    "anomalies".to_owned()
}
fn default_batch_size() -> usize {
    5000
}
fn default_gzip() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl InfluxDbConfig {
    /// A v1 config with every default: the shortest way to a working sink.
    pub fn v1(url: Url, database: impl Into<String>) -> Self {
        Self {
            api: Api::V1,
            database: Some(database.into()),
            ..Self::base(url)
        }
    }

    /// A v2 config with every default.
    pub fn v2(
        url: Url,
        org: impl Into<String>,
        bucket: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            api: Api::V2,
            org: Some(org.into()),
            bucket: Some(bucket.into()),
            token: Some(Secret::new(token)),
            ..Self::base(url)
        }
    }

    fn base(url: Url) -> Self {
        Self {
            url,
            api: Api::default(),
            database: None,
            retention_policy: None,
            org: None,
            bucket: None,
            token: None,
            token_file: None,
            username: None,
            password: None,
            measurement: default_measurement(),
            batch_size: default_batch_size(),
            gzip: default_gzip(),
            timeout: default_timeout(),
            tls: TlsConfig::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Checks values and their combination; `prefix` is where this section
    /// sits (`sinks.influxdb`), so errors name the full key.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !matches!(self.url.scheme(), "http" | "https") || self.url.host_str().is_none() {
            return Err(ConfigError::new(
                key("url"),
                self.url.as_str(),
                "an http:// or https:// URL with a host",
            ));
        }
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let required = |k: &str, v: &Option<String>, api: &str| {
            if present(v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key(k),
                    v.as_deref().unwrap_or(""),
                    format!("a non-empty name; required with api: {api}"),
                ))
            }
        };
        let absent = |k: &str, set: bool, api: &str, instead: &str| {
            if set {
                Err(ConfigError::new(
                    key(k),
                    "(set)",
                    format!("unset with api: {api}, which uses {instead}"),
                ))
            } else {
                Ok(())
            }
        };
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
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(ConfigError::new(key("token"), "", "a non-empty token"));
        }
        let has_token = self.token.is_some() || self.token_file.is_some();
        match self.api {
            Api::V1 => {
                required("database", &self.database, "v1")?;
                absent("org", self.org.is_some(), "v1", "database")?;
                absent("bucket", self.bucket.is_some(), "v1", "database")?;
                if self.password.is_some() && !present(&self.username) {
                    return Err(ConfigError::new(
                        key("username"),
                        self.username.as_deref().unwrap_or(""),
                        "a non-empty user name when password is set",
                    ));
                }
                if has_token && self.username.is_some() {
                    return Err(ConfigError::new(
                        key("username"),
                        self.username.as_deref().unwrap_or(""),
                        "unset when a token is set (token or username/password, not both)",
                    ));
                }
            }
            Api::V2 => {
                required("org", &self.org, "v2")?;
                required("bucket", &self.bucket, "v2")?;
                absent("database", self.database.is_some(), "v2", "bucket")?;
                absent(
                    "retention_policy",
                    self.retention_policy.is_some(),
                    "v2",
                    "bucket",
                )?;
                absent("username", self.username.is_some(), "v2", "token")?;
                absent("password", self.password.is_some(), "v2", "token")?;
                if !has_token {
                    return Err(ConfigError::new(
                        key("token"),
                        "",
                        "an API token (token or token_file); required with api: v2",
                    ));
                }
            }
        }
        if self.measurement.is_empty() || self.measurement.chars().any(char::is_control) {
            return Err(ConfigError::new(
                key("measurement"),
                &self.measurement,
                "a non-empty name without control characters",
            ));
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return Err(ConfigError::new(
                key("batch_size"),
                self.batch_size,
                "an integer from 1 to 100000",
            ));
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

    fn parse(json: &str) -> Result<InfluxDbConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_are_documented_ones() {
        let c =
            parse(r#"{"url":"http://127.0.0.1:8086","org":"o","bucket":"b","token":"t"}"#).unwrap();
        assert_eq!(c.api, Api::V2);
        assert_eq!(c.measurement, "anomalies");
        assert_eq!(c.batch_size, 5000);
        assert!(c.gzip);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.tls, TlsConfig::default());
        assert_eq!(c.retry, RetryPolicy::default());
        c.validate("sinks.influxdb").unwrap();
    }

    #[test]
    fn v1_with_database_and_basic_auth_is_valid() {
        let c = parse(
            r#"{"url":"http://h:8086","api":"v1","database":"grid","username":"u",
                "password":"p","timeout":"2s","tls":{"insecure_skip_verify":true}}"#,
        )
        .unwrap();
        c.validate("sinks.influxdb").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(r#"{"url":"http://h","db":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `db`"), "{e}");
        let e = parse(r#"{"url":"http://h","tls":{"verify":false}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `verify`"), "{e}");
    }

    #[test]
    fn errors_name_the_key_the_value_and_what_is_allowed() {
        let check = |json: &str, want: &str| {
            let e = parse(json).unwrap().validate("sinks.influxdb").unwrap_err();
            assert_eq!(e.to_string(), want);
        };
        check(
            r#"{"url":"http://h","api":"v1"}"#,
            r#"sinks.influxdb.database = "" is not allowed: a non-empty name; required with api: v1"#,
        );
        check(
            r#"{"url":"http://h","org":"o","token":"t"}"#,
            r#"sinks.influxdb.bucket = "" is not allowed: a non-empty name; required with api: v2"#,
        );
        check(
            r#"{"url":"http://h","org":"o","bucket":"b"}"#,
            r#"sinks.influxdb.token = "" is not allowed: an API token (token or token_file); required with api: v2"#,
        );
        check(
            r#"{"url":"ftp://h","org":"o","bucket":"b","token":"t"}"#,
            r#"sinks.influxdb.url = "ftp://h/" is not allowed: an http:// or https:// URL with a host"#,
        );
        check(
            r#"{"url":"http://h","org":"o","bucket":"b","token":"t","batch_size":0}"#,
            r#"sinks.influxdb.batch_size = "0" is not allowed: an integer from 1 to 100000"#,
        );
        check(
            r#"{"url":"http://h","org":"o","bucket":"b","token":"t","timeout":"10ms"}"#,
            r#"sinks.influxdb.timeout = "10ms" is not allowed: a duration from 100ms to 10m"#,
        );
        check(
            r#"{"url":"http://h","org":"o","bucket":"b","token":"t","database":"d"}"#,
            r#"sinks.influxdb.database = "(set)" is not allowed: unset with api: v2, which uses bucket"#,
        );
        check(
            r#"{"url":"http://h","org":"o","bucket":"b","token":"t","token_file":"/x"}"#,
            r#"sinks.influxdb.token_file = "/x" is not allowed: unset when token is set (one or the other)"#,
        );
        check(
            r#"{"url":"http://h","api":"v1","database":"d","password":"p"}"#,
            r#"sinks.influxdb.username = "" is not allowed: a non-empty user name when password is set"#,
        );
        check(
            r#"{"url":"http://h","org":"o","bucket":"b","token":"t","retry":{"max_retries":1000}}"#,
            r#"sinks.influxdb.retry.max_retries = "1000" is not allowed: an integer from 0 to 100"#,
        );
    }

    #[test]
    fn secrets_never_print_or_serialise() {
        let c = InfluxDbConfig::v2("http://h".parse().unwrap(), "o", "b", "s3cr3t-token");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("Secret(***)"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
    }
}
