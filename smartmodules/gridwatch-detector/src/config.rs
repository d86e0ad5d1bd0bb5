//! The rule's parameters, their defaults and their allowed ranges.
//!
//! The same struct is filled from the runtime's YAML (`detector.*`) and from
//! SmartModule `init` params, so both paths reject bad values with one message
//! that names the key, the value and what is allowed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ScoredField;

/// Allowed |z| threshold range, in standard deviations (FR-003).
pub const THRESHOLD_RANGE: (f64, f64) = (1.5, 4.0);

pub use gridwatch_contracts::ConfigError;

/// Parameters of the detection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Length W of the baseline window: a reading at time t is compared with
    /// the same meter's readings in `[t - W, t)`. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// |z| above this flags an anomaly. Default 2.5, allowed 1.5 to 4.0.
    pub threshold: f64,
    /// Readings the baseline needs before a reading is scored. Default 10, at least 2.
    pub min_samples: u32,
    /// Fields scored per meter. Default `[voltage]`.
    pub fields: Vec<ScoredField>,
    /// How far behind a meter's newest reading a reading may arrive and still be
    /// scored. Later readings are archived as `LATE`, not scored. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A meter silent this long (in event time, against the newest reading of
    /// any meter) is forgotten, episode state included. Default `1h`; at
    /// least `window + allowed_lateness`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_threshold() -> f64 {
    2.5
}
fn default_min_samples() -> u32 {
    10
}
fn default_fields() -> Vec<ScoredField> {
    vec![ScoredField::Voltage]
}
fn default_allowed_lateness() -> Duration {
    Duration::from_secs(5)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window: default_window(),
            threshold: default_threshold(),
            min_samples: default_min_samples(),
            fields: default_fields(),
            allowed_lateness: default_allowed_lateness(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl DetectorConfig {
    /// Checks every value; `prefix` is prepended to key names in errors
    /// (`"detector."` for the YAML, `""` for SmartModule params).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let err = |key: &str, value: String, allowed: &str| ConfigError {
            key: format!("{prefix}{key}"),
            value,
            allowed: allowed.to_string(),
        };
        let (lo, hi) = THRESHOLD_RANGE;
        if !(self.threshold >= lo && self.threshold <= hi) {
            return Err(err(
                "threshold",
                self.threshold.to_string(),
                "a number of standard deviations from 1.5 to 4.0",
            ));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(7 * 86_400) {
            return Err(err(
                "window",
                humantime::format_duration(self.window).to_string(),
                "a duration from 1s to 7d",
            ));
        }
        if !(2..=1_000_000).contains(&self.min_samples) {
            return Err(err(
                "min_samples",
                self.min_samples.to_string(),
                "a whole number from 2 to 1000000",
            ));
        }
        if self.fields.is_empty() {
            return Err(err(
                "fields",
                "[]".into(),
                "one or more of voltage, current, temperature",
            ));
        }
        // Each field has one slot in a reading's scores; a repeat would
        // score past them.
        if let Some((_, f)) = self
            .fields
            .iter()
            .enumerate()
            .find(|(i, f)| self.fields[..*i].contains(f))
        {
            return Err(err(
                "fields",
                self.fields
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(","),
                &format!(
                    "each of voltage, current, temperature at most once ({} is repeated)",
                    f.name()
                ),
            ));
        }
        if self.allowed_lateness > self.window {
            return Err(err(
                "allowed_lateness",
                humantime::format_duration(self.allowed_lateness).to_string(),
                "a duration from 0s up to the window",
            ));
        }
        if self.idle_timeout < self.window + self.allowed_lateness {
            return Err(err(
                "idle_timeout",
                humantime::format_duration(self.idle_timeout).to_string(),
                "a duration of at least window + allowed_lateness",
            ));
        }
        Ok(())
    }

    /// Builds a config from string parameters (SmartModule `init` params),
    /// starting from the defaults, then validates it.
    pub fn from_params<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        prefix: &str,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let bad = |key: &str, value: &str, allowed: &str| ConfigError {
            key: format!("{prefix}{key}"),
            value: value.to_string(),
            allowed: allowed.to_string(),
        };
        let duration = |key: &str, value: &str| {
            humantime::parse_duration(value.trim())
                .map_err(|_| bad(key, value, "a duration such as 300ms, 5s, 5m or 1h"))
        };
        if let Some(v) = get("window") {
            config.window = duration("window", v)?;
        }
        if let Some(v) = get("threshold") {
            config.threshold = v
                .trim()
                .parse()
                .map_err(|_| bad("threshold", v, "a number from 1.5 to 4.0"))?;
        }
        if let Some(v) = get("min_samples") {
            config.min_samples = v
                .trim()
                .parse()
                .map_err(|_| bad("min_samples", v, "a whole number from 2 to 1000000"))?;
        }
        if let Some(v) = get("fields") {
            config.fields = v
                .split(',')
                .map(|f| {
                    ScoredField::parse(f.trim()).ok_or_else(|| {
                        bad(
                            "fields",
                            v,
                            "a comma-separated list of voltage, current, temperature",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get("allowed_lateness") {
            config.allowed_lateness = duration("allowed_lateness", v)?;
        }
        if let Some(v) = get("idle_timeout") {
            config.idle_timeout = duration("idle_timeout", v)?;
        }
        config.validate(prefix)?;
        Ok(config)
    }

    /// The parameters as strings, the inverse of [`DetectorConfig::from_params`],
    /// for building a SmartModule chain from the runtime's config.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("window", format!("{}ms", self.window.as_millis())),
            ("threshold", self.threshold.to_string()),
            ("min_samples", self.min_samples.to_string()),
            (
                "fields",
                self.fields
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "allowed_lateness",
                format!("{}ms", self.allowed_lateness.as_millis()),
            ),
            (
                "idle_timeout",
                format!("{}ms", self.idle_timeout.as_millis()),
            ),
        ]
    }

    pub(crate) fn window_ms(&self) -> i64 {
        millis(self.window)
    }
    pub(crate) fn lateness_ms(&self) -> i64 {
        millis(self.allowed_lateness)
    }
    pub(crate) fn idle_ms(&self) -> i64 {
        millis(self.idle_timeout)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_specs() {
        let c = DetectorConfig::default();
        assert_eq!(c.window, Duration::from_secs(300));
        assert_eq!(c.threshold, 2.5);
        assert_eq!(c.min_samples, 10);
        assert_eq!(c.fields, vec![ScoredField::Voltage]);
        c.validate("detector.").unwrap();
    }

    #[test]
    fn threshold_outside_range_names_key_value_and_range() {
        for bad in [1.49, 4.01, f64::NAN, -2.5] {
            let c = DetectorConfig {
                threshold: bad,
                ..Default::default()
            };
            let err = c.validate("detector.").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "detector.threshold = {:?} is not allowed: a number of standard deviations from 1.5 to 4.0",
                    bad.to_string()
                )
            );
        }
        for good in [1.5, 4.0, 3.0] {
            DetectorConfig {
                threshold: good,
                ..Default::default()
            }
            .validate("")
            .unwrap();
        }
    }

    #[test]
    fn params_round_trip_and_reject_bad_values() {
        let c = DetectorConfig {
            window: Duration::from_secs(60),
            threshold: 3.0,
            min_samples: 5,
            fields: vec![ScoredField::Voltage, ScoredField::Temperature],
            allowed_lateness: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(600),
        };
        let params = c.to_params();
        let get = |k: &str| {
            params
                .iter()
                .find(|(p, _)| *p == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(DetectorConfig::from_params(get, "").unwrap(), c);

        let err =
            DetectorConfig::from_params(|k| (k == "window").then_some("five"), "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "window = \"five\" is not allowed: a duration such as 300ms, 5s, 5m or 1h"
        );
        let err = DetectorConfig::from_params(|k| (k == "fields").then_some("voltage,power"), "")
            .unwrap_err();
        assert_eq!(err.key, "fields");
        let err = DetectorConfig::from_params(
            |k| (k == "fields").then_some("voltage,current,voltage,voltage"),
            "",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fields = \"voltage,current,voltage,voltage\" is not allowed: each of voltage, current, temperature at most once (voltage is repeated)"
        );
        let err =
            DetectorConfig::from_params(|k| (k == "min_samples").then_some("1"), "").unwrap_err();
        assert_eq!(err.key, "min_samples");
        let err =
            DetectorConfig::from_params(|k| (k == "idle_timeout").then_some("1m"), "").unwrap_err();
        assert_eq!(err.key, "idle_timeout");
    }

    #[test]
    fn yaml_style_deserialization_rejects_unknown_keys() {
        let c: DetectorConfig = serde_json::from_str(r#"{"window":"2m","threshold":3.5}"#).unwrap();
        assert_eq!(c.window, Duration::from_secs(120));
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"treshold":3.5}"#).is_err());
    }
}
