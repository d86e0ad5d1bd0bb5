//! `sources.mqtt`: where the broker is, what to subscribe to, and how to
//! keep the session alive across reconnects.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gridwatch_contracts::ConfigError;
use serde::{Deserialize, Serialize};

/// The MQTT source's configuration (`sources.mqtt`).
///
/// The defaults subscribe `meters/+/readings` at QoS 1 on a local broker
/// with a persistent session, which is what makes the source lossless: the
/// broker keeps unacknowledged and queued messages for the fixed client id
/// while Gridwatch is disconnected or restarting.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker address: `mqtt://host[:port]` for plain TCP (default port
    /// 1883) or `mqtts://host[:port]` for TLS (default port 8883).
    /// Default `mqtt://127.0.0.1:1883`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Topic filters to subscribe to; the MQTT wildcards `+` and `#` are
    /// allowed. Each message's topic becomes its payload origin
    /// (`mqtt:meters/m-1/readings`). Default `["meters/+/readings"]`.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Subscription QoS: 1 (default) or 2. QoS 0 is refused because the
    /// broker would neither keep nor redeliver messages, so readings could
    /// be lost across a reconnect.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// MQTT protocol version: `3.1.1` (default; every broker speaks it) or
    /// `5`.
    #[serde(default)]
    pub protocol: Protocol,
    /// The fixed client id that names the persistent session on the broker.
    /// Two Gridwatch instances must not share it, or the broker disconnects
    /// one whenever the other connects. Default `gridwatch`; 1 to 128 bytes.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Interval of keep-alive pings; the broker drops the connection after
    /// 1.5 times this without traffic. Default `30s`; 5s to 18h.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// MQTT 5 only: how long the broker keeps the session (subscriptions
    /// and queued messages) after a disconnect. MQTT 3.1.1 sessions do not
    /// expire unless the broker is configured to. Default `7d`; 1s to
    /// 136 years (`u32::MAX` seconds means never).
    #[serde(default = "default_session_expiry", with = "humantime_serde")]
    pub session_expiry: Duration,
    /// User name for brokers that require authentication. Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, inline. Prefer `password_file`. Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file whose contents (trailing newline removed) are the password,
    /// e.g. a mounted Kubernetes secret. Default: none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS settings, used with an `mqtts://` url.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Most messages handed to ingest at once; they are acknowledged
    /// together once ingest returns. Bigger batches mean fewer durable
    /// appends per message. Default 500; 1 to 65,535.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// MQTT 5 only: the most unacknowledged messages the broker may send
    /// at once (Receive Maximum). For MQTT 3.1.1 the broker's own setting
    /// applies (Mosquitto: `max_inflight_messages`, default 20). Default
    /// 1,000; 1 to 65,535.
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// Backoff between reconnect attempts, and between retries of a batch
    /// that ingest refused (backpressure).
    #[serde(default)]
    pub reconnect: ReconnectConfig,
}

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// MQTT 3.1.1: `clean_session = false` keeps the session.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: `clean_start = false` and a session expiry keep the session.
    #[serde(rename = "5")]
    V5,
}

/// TLS for `mqtts://` (`sources.mqtt.tls`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that signed the broker's
    /// certificate. Default: the system's trusted roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that require client
    /// certificates (`require_certificate true`). Needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// Exponential backoff (`sources.mqtt.reconnect`): each failed attempt
/// doubles the delay, up to `max`; a successful connect resets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First delay. Default `100ms`; 1ms to 60s.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay. Default `30s`; `initial` to 1h.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
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

fn default_url() -> String {
    "mqtt://127.0.0.1:1883".to_owned()
}
fn default_topics() -> Vec<String> {
    vec!["meters/+/readings".to_owned()]
}
fn default_qos() -> u8 {
    1
}
fn default_client_id() -> String {
    "gridwatch".to_owned()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_session_expiry() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_max_batch() -> usize {
    500
}
fn default_receive_maximum() -> u16 {
    1000
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            topics: default_topics(),
            qos: default_qos(),
            protocol: Protocol::default(),
            client_id: default_client_id(),
            keep_alive: default_keep_alive(),
            session_expiry: default_session_expiry(),
            username: None,
            password: None,
            password_file: None,
            tls: TlsConfig::default(),
            max_batch: default_max_batch(),
            receive_maximum: default_receive_maximum(),
            reconnect: ReconnectConfig::default(),
        }
    }
}

/// The broker address, split from [`MqttConfig::url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    /// Parses and checks `url`.
    pub fn broker(&self, prefix: &str) -> Result<BrokerAddress, ConfigError> {
        let bad = || {
            ConfigError::new(
                format!("{prefix}.url"),
                &self.url,
                "mqtt://host[:port] or mqtts://host[:port]",
            )
        };
        let url = url::Url::parse(&self.url).map_err(|_| bad())?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => return Err(bad()),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad()),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
            return Err(bad());
        }
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(BrokerAddress { host, port, tls })
    }

    /// Checks every value; `prefix` is where this sits in the config
    /// (`sources.mqtt`), so errors name the full key.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let broker = self.broker(prefix)?;
        if self.topics.is_empty() {
            return Err(ConfigError::new(
                key("topics"),
                "[]",
                "at least one topic filter",
            ));
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if !valid_filter(topic) {
                return Err(ConfigError::new(
                    format!("{prefix}.topics[{i}]"),
                    topic,
                    "an MQTT topic filter: 1 to 65,535 bytes, no NUL, `+` only as a whole \
                     level, `#` only as the last level",
                ));
            }
        }
        if !(1..=2).contains(&self.qos) {
            return Err(ConfigError::new(
                key("qos"),
                self.qos,
                "1 or 2 (QoS 0 could lose readings across a reconnect)",
            ));
        }
        if self.client_id.is_empty()
            || self.client_id.len() > 128
            || self.client_id.chars().any(char::is_control)
        {
            return Err(ConfigError::new(
                key("client_id"),
                &self.client_id,
                "1 to 128 bytes without control characters",
            ));
        }
        if self.keep_alive < Duration::from_secs(5)
            || self.keep_alive > Duration::from_secs(u64::from(u16::MAX))
            || self.keep_alive.subsec_nanos() != 0
        {
            return Err(ConfigError::new(
                key("keep_alive"),
                humantime::format_duration(self.keep_alive),
                "whole seconds from 5s to 65535s",
            ));
        }
        if self.session_expiry < Duration::from_secs(1)
            || self.session_expiry > Duration::from_secs(u64::from(u32::MAX))
        {
            return Err(ConfigError::new(
                key("session_expiry"),
                humantime::format_duration(self.session_expiry),
                "a duration from 1s to 4294967295s",
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(ConfigError::new(
                key("password_file"),
                self.password_file
                    .as_deref()
                    .unwrap_or_else(|| std::path::Path::new(""))
                    .display(),
                "not both `password` and `password_file`",
            ));
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return Err(ConfigError::new(
                key("username"),
                "(none)",
                "a user name whenever a password is set",
            ));
        }
        if self.tls.client_cert.is_some() != self.tls.client_key.is_some() {
            return Err(ConfigError::new(
                key("tls.client_key"),
                if self.tls.client_key.is_some() {
                    "(set)"
                } else {
                    "(none)"
                },
                "`tls.client_cert` and `tls.client_key` together, or neither",
            ));
        }
        let tls_set = self.tls.ca_cert.is_some() || self.tls.client_cert.is_some();
        if tls_set && !broker.tls {
            return Err(ConfigError::new(
                key("url"),
                &self.url,
                "an mqtts:// url when `tls` settings are given",
            ));
        }
        if !(1..=usize::from(u16::MAX)).contains(&self.max_batch) {
            return Err(ConfigError::new(
                key("max_batch"),
                self.max_batch,
                "1 to 65535",
            ));
        }
        if self.receive_maximum == 0 {
            return Err(ConfigError::new(
                key("receive_maximum"),
                self.receive_maximum,
                "1 to 65535",
            ));
        }
        let r = &self.reconnect;
        if r.initial < Duration::from_millis(1) || r.initial > Duration::from_secs(60) {
            return Err(ConfigError::new(
                key("reconnect.initial"),
                humantime::format_duration(r.initial),
                "a duration from 1ms to 60s",
            ));
        }
        if r.max < r.initial || r.max > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                key("reconnect.max"),
                humantime::format_duration(r.max),
                "a duration from reconnect.initial to 1h",
            ));
        }
        Ok(())
    }
}

/// An MQTT topic filter (MQTT 3.1.1 §4.7).
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("topics", &self.topics)
            .field("qos", &self.qos)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("keep_alive", &self.keep_alive)
            .field("session_expiry", &self.session_expiry)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("max_batch", &self.max_batch)
            .field("receive_maximum", &self.receive_maximum)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml_json: &str) -> MqttConfig {
        serde_json::from_str(yaml_json).expect("config parses")
    }

    fn err(config: &MqttConfig) -> String {
        config
            .validate("sources.mqtt")
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn defaults_are_valid_and_lossless() {
        let c = parse("{}");
        assert_eq!(c, MqttConfig::default());
        c.validate("sources.mqtt").unwrap();
        assert_eq!(c.qos, 1);
        assert_eq!(
            c.broker("sources.mqtt").unwrap(),
            BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
    }

    #[test]
    fn parses_every_key() {
        let c = parse(
            r#"{"url":"mqtts://broker.example:8884","topics":["a/#","b/+/c"],"qos":2,
                "protocol":"5","client_id":"gw-1","keep_alive":"10s","session_expiry":"1h",
                "username":"u","password_file":"/run/secret","tls":{"ca_cert":"/ca.pem",
                "client_cert":"/c.pem","client_key":"/k.pem"},"max_batch":100,
                "receive_maximum":50,"reconnect":{"initial":"50ms","max":"5s"}}"#,
        );
        c.validate("sources.mqtt").unwrap();
        assert_eq!(c.protocol, Protocol::V5);
        assert_eq!(c.broker("x").unwrap().port, 8884);
        assert!(c.broker("x").unwrap().tls);
        assert_eq!(c.reconnect.initial, Duration::from_millis(50));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_json::from_str::<MqttConfig>(r#"{"topic":"a"}"#).is_err());
        assert!(serde_json::from_str::<MqttConfig>(r#"{"tls":{"ca":"x"}}"#).is_err());
        assert!(serde_json::from_str::<MqttConfig>(r#"{"protocol":"4"}"#).is_err());
    }

    #[test]
    fn errors_name_key_value_and_range() {
        let c = MqttConfig {
            qos: 0,
            ..MqttConfig::default()
        };
        assert_eq!(
            err(&c),
            "sources.mqtt.qos = \"0\" is not allowed: 1 or 2 (QoS 0 could lose readings across a reconnect)"
        );
        let c = MqttConfig {
            url: "http://x".into(),
            ..MqttConfig::default()
        };
        assert_eq!(
            err(&c),
            "sources.mqtt.url = \"http://x\" is not allowed: mqtt://host[:port] or mqtts://host[:port]"
        );
        let c = MqttConfig {
            topics: vec!["ok/#".into(), "bad/#/x".into()],
            ..MqttConfig::default()
        };
        assert!(err(&c).starts_with("sources.mqtt.topics[1] = \"bad/#/x\""));
        let c = MqttConfig {
            topics: vec!["a+/b".into()],
            ..MqttConfig::default()
        };
        assert!(err(&c).starts_with("sources.mqtt.topics[0]"));
        let c = MqttConfig {
            max_batch: 0,
            ..MqttConfig::default()
        };
        assert_eq!(
            err(&c),
            "sources.mqtt.max_batch = \"0\" is not allowed: 1 to 65535"
        );
        let c = MqttConfig {
            keep_alive: Duration::from_secs(1),
            ..MqttConfig::default()
        };
        assert_eq!(
            err(&c),
            "sources.mqtt.keep_alive = \"1s\" is not allowed: whole seconds from 5s to 65535s"
        );
        let c = MqttConfig {
            reconnect: ReconnectConfig {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1),
            },
            ..MqttConfig::default()
        };
        assert_eq!(
            err(&c),
            "sources.mqtt.reconnect.max = \"1s\" is not allowed: a duration from reconnect.initial to 1h"
        );
        let c = MqttConfig {
            password: Some(Secret::new("p")),
            ..MqttConfig::default()
        };
        assert!(err(&c).starts_with("sources.mqtt.username"));
        let c = MqttConfig {
            tls: TlsConfig {
                ca_cert: Some("/ca.pem".into()),
                ..TlsConfig::default()
            },
            ..MqttConfig::default()
        };
        assert_eq!(
            err(&c),
            "sources.mqtt.url = \"mqtt://127.0.0.1:1883\" is not allowed: an mqtts:// url when `tls` settings are given"
        );
    }

    #[test]
    fn passwords_never_show_in_debug() {
        let c = MqttConfig {
            username: Some("u".into()),
            password: Some(Secret::new("hunter2")),
            ..MqttConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
