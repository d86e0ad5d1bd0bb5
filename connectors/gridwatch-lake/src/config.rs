//! `sinks.lake`: where the lake is and how its files are written.
//!
//! ```yaml
//! sinks:
//!   lake:
//!     url: s3://gridwatch-lake/prod      # or file:///var/lib/gridwatch/lake
//!     endpoint: https://minio.local:9000 # only for S3-compatible servers
//!     region: us-east-1
//!     access_key_id: gridwatch
//!     secret_access_key_file: /run/secrets/lake-key
//!     path_style: true
//!     compression: zstd
//!     tls:
//!       ca_cert: /etc/gridwatch/minio-ca.pem
//! ```
//!
//! Every key is optional. With none, the lake is the folder `lake` in the
//! data directory (see [`LakeConfig::with_data_dir`]).

use std::fmt;
use std::path::{Path, PathBuf};

use gridwatch_contracts::ConfigError;
use serde::{Deserialize, Serialize};

/// The lake sink's configuration (`sinks.lake`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Where the lake lives: `file:///absolute/path` or `s3://bucket/prefix`
    /// (the prefix may be empty). Default: none, meaning the folder `lake`
    /// in the data directory, so the lake is on even when nothing is set.
    #[serde(default)]
    pub url: Option<String>,
    /// The S3 endpoint, for MinIO, Garage, Ceph and other S3-compatible
    /// servers (`http://` is allowed for loopback and private networks).
    /// Default: none, meaning AWS S3 for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The S3 region, which SigV4 signs with. Default `us-east-1`, which
    /// MinIO and most S3-compatible servers accept.
    #[serde(default = "default_region")]
    pub region: String,
    /// S3 access key id. Default: none, meaning the standard
    /// `AWS_ACCESS_KEY_ID` environment variable (or anonymous if unset).
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// A file holding the access key id (trailing newline ignored), for
    /// mounted secrets. Exclusive with `access_key_id`.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// S3 secret access key. Never logged. Default: the standard
    /// `AWS_SECRET_ACCESS_KEY` environment variable.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret access key. Exclusive with
    /// `secret_access_key`.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted
    /// style (`bucket.endpoint/key`). Default `true` when an `endpoint` is
    /// set, because MinIO and most self-hosted servers need it, else `false`
    /// as AWS prefers.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Parquet page compression: `zstd` (default; smaller files, the usual
    /// choice for archives) or `snappy` (faster to write and read).
    #[serde(default)]
    pub compression: Compression,
    /// The most rows one commit holds. Each delivered batch is committed
    /// when it is written (so that a batch the lake cannot take can be
    /// dead-lettered under `retry`); a batch with more rows for one
    /// partition than this is committed in pieces, to bound memory. Files
    /// are cut at source offsets, never by time. Default 200,000; 1 to
    /// 10,000,000.
    #[serde(default = "default_max_buffered_rows")]
    pub max_buffered_rows: usize,
    /// The topic whose records are `ScoredReading`s, archived under
    /// `readings/`. Default `scored`.
    #[serde(default = "default_readings_topic")]
    pub readings_topic: String,
    /// The topic whose records are `AnomalyEvent`s, archived under
    /// `anomalies/`. Default `anomalies`.
    #[serde(default = "default_anomalies_topic")]
    pub anomalies_topic: String,
    /// TLS for an `https://` endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
    /// How a failed commit (S3 down, a disk error) is retried: the shared
    /// sink policy (FR-008), as for `sinks.influxdb.retry` and
    /// `sinks.kafka.retry`. Each delivered batch is committed when it is
    /// written, so after `max_retries` the batch goes to the dead-letter
    /// topic with reason `RETRIES_EXHAUSTED` and the sink moves on instead
    /// of holding its position; `gridwatch dlq replay --stage lake` fills
    /// the gap once the lake is back, exactly once. Default: 100ms doubling
    /// to 30s, 3 retries.
    #[serde(default)]
    pub retry: gridwatch_connector::RetryPolicy,
}

/// TLS settings for the S3 endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of extra root certificates to trust, for servers with a
    /// private CA. Default: none, meaning the system's and webpki roots only.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
}

/// A string that never shows in `Debug`, logs or error messages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for LakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_id_file", &self.access_key_id_file)
            .field("secret_access_key", &self.secret_access_key)
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("path_style", &self.path_style)
            .field("compression", &self.compression)
            .field("max_buffered_rows", &self.max_buffered_rows)
            .field("readings_topic", &self.readings_topic)
            .field("anomalies_topic", &self.anomalies_topic)
            .field("tls", &self.tls)
            .field("retry", &self.retry)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_max_buffered_rows() -> usize {
    200_000
}
fn default_readings_topic() -> String {
    "scored".into()
}
fn default_anomalies_topic() -> String {
    "anomalies".into()
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: None,
            endpoint: None,
            region: default_region(),
            access_key_id: None,
            access_key_id_file: None,
            secret_access_key: None,
            secret_access_key_file: None,
            path_style: None,
            compression: Compression::default(),
            max_buffered_rows: default_max_buffered_rows(),
            readings_topic: default_readings_topic(),
            anomalies_topic: default_anomalies_topic(),
            tls: TlsConfig::default(),
            retry: gridwatch_connector::RetryPolicy::default(),
        }
    }
}

/// Where the lake is, once the URL is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local directory (created if missing).
    Local(PathBuf),
    /// A bucket and a key prefix without leading or trailing `/`.
    S3 { bucket: String, prefix: String },
}

/// The folder name of the default lake inside the data directory.
pub const DEFAULT_LAKE_DIR: &str = "lake";

/// The data directory `gridwatch run` uses when none is configured; the
/// lake's default without [`LakeConfig::with_data_dir`].
pub const DEFAULT_DATA_DIR: &str = "gridwatch-data";

impl LakeConfig {
    /// A config for a local lake at `dir`.
    pub fn local(dir: impl AsRef<Path>) -> Self {
        Self {
            url: Some(file_url(dir.as_ref())),
            ..Self::default()
        }
    }

    /// Fills in the default URL (`<data_dir>/lake`) if none is set, so the
    /// lake is on by default wherever the data directory is.
    pub fn with_data_dir(mut self, data_dir: &Path) -> Self {
        if self.url.is_none() {
            self.url = Some(file_url(&data_dir.join(DEFAULT_LAKE_DIR)));
        }
        self
    }

    /// Checks every key; `prefix` is how the user reaches this section
    /// (`sinks.lake`), so errors name the full key.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        let destination = self.destination(prefix)?;
        if let Some(endpoint) = &self.endpoint {
            let allowed = "an http:// or https:// URL with a host, e.g. http://127.0.0.1:9000";
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return Err(ConfigError::new(key("endpoint"), endpoint, allowed)),
            }
            if matches!(destination, Destination::Local(_)) {
                return Err(ConfigError::new(
                    key("endpoint"),
                    endpoint,
                    "unset when url is a file:// URL (endpoints are for s3:// lakes)",
                ));
            }
        }
        if self.region.trim().is_empty() {
            return Err(ConfigError::new(
                key("region"),
                &self.region,
                "a non-empty region name such as us-east-1",
            ));
        }
        if self.access_key_id.is_some() && self.access_key_id_file.is_some() {
            return Err(ConfigError::new(
                key("access_key_id_file"),
                path_text(self.access_key_id_file.as_deref()),
                "unset when access_key_id is set (one or the other)",
            ));
        }
        if self.secret_access_key.is_some() && self.secret_access_key_file.is_some() {
            return Err(ConfigError::new(
                key("secret_access_key_file"),
                path_text(self.secret_access_key_file.as_deref()),
                "unset when secret_access_key is set (one or the other)",
            ));
        }
        self.retry.validate(&key("retry"))?;
        if !(1..=10_000_000).contains(&self.max_buffered_rows) {
            return Err(ConfigError::new(
                key("max_buffered_rows"),
                self.max_buffered_rows,
                "1 to 10000000",
            ));
        }
        for (k, topic) in [
            ("readings_topic", &self.readings_topic),
            ("anomalies_topic", &self.anomalies_topic),
        ] {
            if topic.trim().is_empty() {
                return Err(ConfigError::new(key(k), topic, "a non-empty topic name"));
            }
        }
        if self.readings_topic == self.anomalies_topic {
            return Err(ConfigError::new(
                key("anomalies_topic"),
                &self.anomalies_topic,
                "a topic other than readings_topic",
            ));
        }
        Ok(())
    }

    /// Parses `url` (or the default) into a [`Destination`].
    pub fn destination(&self, prefix: &str) -> Result<Destination, ConfigError> {
        let key = if prefix.is_empty() {
            "url".to_owned()
        } else {
            format!("{prefix}.url")
        };
        let text = match &self.url {
            Some(u) => u.clone(),
            None => file_url(&Path::new(DEFAULT_DATA_DIR).join(DEFAULT_LAKE_DIR)),
        };
        let allowed = "file:///absolute/path or s3://bucket/prefix";
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(ConfigError::new(key, &text, allowed));
            }
            return Ok(Destination::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket {
                return Err(ConfigError::new(
                    key,
                    &text,
                    "s3://bucket/prefix with a bucket name of 3 to 63 lowercase letters, digits, '-' or '.'",
                ));
            }
            return Ok(Destination::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        Err(ConfigError::new(key, &text, allowed))
    }
}

/// `file://` + an absolute form of `path` (relative paths are taken from
/// the current directory, as the data directory is).
fn file_url(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    };
    format!("file://{}", absolute.display())
}

fn path_text(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LakeConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_are_a_local_folder_in_the_data_directory() {
        let config = parse("{}").unwrap();
        assert_eq!(config, LakeConfig::default());
        config.validate("sinks.lake").unwrap();
        let config = config.with_data_dir(Path::new("/var/lib/gw"));
        assert_eq!(config.url.as_deref(), Some("file:///var/lib/gw/lake"));
        assert_eq!(
            config.destination("sinks.lake").unwrap(),
            Destination::Local("/var/lib/gw/lake".into())
        );
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.readings_topic, "scored");
        assert_eq!(config.anomalies_topic, "anomalies");
    }

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        let config = parse(
            r#"{"url": "s3://grid-lake/prod/v1/", "endpoint": "http://127.0.0.1:9000",
                "access_key_id": "k", "secret_access_key": "s", "path_style": true,
                "compression": "snappy", "tls": {"ca_cert": "/ca.pem"}}"#,
        )
        .unwrap();
        config.validate("sinks.lake").unwrap();
        assert_eq!(
            config.destination("").unwrap(),
            Destination::S3 {
                bucket: "grid-lake".into(),
                prefix: "prod/v1".into()
            }
        );
        let bare = LakeConfig {
            url: Some("s3://grid-lake".into()),
            ..LakeConfig::default()
        };
        assert_eq!(
            bare.destination("").unwrap(),
            Destination::S3 {
                bucket: "grid-lake".into(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn unknown_keys_and_codecs_are_refused() {
        let e = parse(r#"{"bucket": "x"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `bucket`"), "{e}");
        let e = parse(r#"{"compression": "gzip"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown variant `gzip`"), "{e}");
        let e = parse(r#"{"tls": {"verify": false}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `verify`"), "{e}");
    }

    #[test]
    fn errors_name_the_key_the_value_and_what_is_allowed() {
        let cases = [
            (
                r#"{"url": "ftp://x/y"}"#,
                r#"sinks.lake.url = "ftp://x/y" is not allowed: file:///absolute/path or s3://bucket/prefix"#,
            ),
            (
                r#"{"url": "file://relative"}"#,
                r#"sinks.lake.url = "file://relative" is not allowed: file:///absolute/path or s3://bucket/prefix"#,
            ),
            (
                r#"{"url": "s3://Bad_Bucket/p"}"#,
                r#"sinks.lake.url = "s3://Bad_Bucket/p" is not allowed: s3://bucket/prefix with a bucket name of 3 to 63 lowercase letters, digits, '-' or '.'"#,
            ),
            (
                r#"{"url": "s3://bucket", "endpoint": "127.0.0.1:9000"}"#,
                r#"sinks.lake.endpoint = "127.0.0.1:9000" is not allowed: an http:// or https:// URL with a host, e.g. http://127.0.0.1:9000"#,
            ),
            (
                r#"{"url": "file:///tmp/l", "endpoint": "http://h:1"}"#,
                r#"sinks.lake.endpoint = "http://h:1" is not allowed: unset when url is a file:// URL (endpoints are for s3:// lakes)"#,
            ),
            (
                r#"{"max_buffered_rows": 0}"#,
                r#"sinks.lake.max_buffered_rows = "0" is not allowed: 1 to 10000000"#,
            ),
            (
                r#"{"secret_access_key": "s", "secret_access_key_file": "/k"}"#,
                r#"sinks.lake.secret_access_key_file = "/k" is not allowed: unset when secret_access_key is set (one or the other)"#,
            ),
            (
                r#"{"region": " "}"#,
                r#"sinks.lake.region = " " is not allowed: a non-empty region name such as us-east-1"#,
            ),
            (
                r#"{"anomalies_topic": "scored"}"#,
                r#"sinks.lake.anomalies_topic = "scored" is not allowed: a topic other than readings_topic"#,
            ),
        ];
        for (json, want) in cases {
            let e = parse(json).unwrap().validate("sinks.lake").unwrap_err();
            assert_eq!(e.to_string(), want, "{json}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config =
            parse(r#"{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "hunter2"}"#).unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("AKIDEXAMPLE"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn retry_has_the_shared_defaults_and_validation() {
        let c: LakeConfig = serde_json::from_str(r#"{"retry": {"max_retries": 5}}"#).unwrap();
        assert_eq!(c.retry.max_retries, 5);
        assert_eq!(
            c.retry.initial_backoff,
            gridwatch_connector::RetryPolicy::default().initial_backoff
        );
        assert_eq!(
            LakeConfig::default().retry,
            gridwatch_connector::RetryPolicy::default()
        );
        let bad = LakeConfig {
            retry: gridwatch_connector::RetryPolicy {
                max_retries: 1000,
                ..Default::default()
            },
            ..LakeConfig::local("/tmp/lake")
        };
        let e = bad.validate("sinks.lake").unwrap_err();
        assert_eq!(e.key, "sinks.lake.retry.max_retries");
        assert_eq!(e.value, "1000");
        assert!(serde_json::from_str::<LakeConfig>(r#"{"retry": {"tries": 5}}"#).is_err());
    }
}
