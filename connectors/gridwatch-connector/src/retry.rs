//! The retry policy every sink shares (FR-008): exponential backoff with
//! jitter, a bounded number of retries, then the dead-letter queue.

use std::time::Duration;

use gridwatch_contracts::ConfigError;
use serde::{Deserialize, Serialize};

/// How transient sink failures are retried. The defaults are FR-008's:
/// first retry after about 100 ms, doubling to at most 30 s, 3 retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Delay before the first retry (default `100ms`).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound of any single delay (default `30s`).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Retries after the first attempt before the records are dead-lettered
    /// (default 3, so 4 attempts in all).
    pub max_retries: u32,
    /// Growth factor between delays (default 2.0).
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_retries: 3,
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy; `prefix` is where it sits in the config
    /// (`sinks.influxdb.retry`), so errors name the full key.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if self.initial_backoff.is_zero() || self.initial_backoff > Duration::from_secs(60) {
            return Err(ConfigError::new(
                key("initial_backoff"),
                humantime::format_duration(self.initial_backoff),
                "a duration from 1ms to 60s",
            ));
        }
        if self.max_backoff < self.initial_backoff || self.max_backoff > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                key("max_backoff"),
                humantime::format_duration(self.max_backoff),
                "a duration from initial_backoff to 1h",
            ));
        }
        if self.max_retries > 100 {
            return Err(ConfigError::new(
                key("max_retries"),
                self.max_retries,
                "an integer from 0 to 100",
            ));
        }
        if !(1.0..=10.0).contains(&self.multiplier) {
            return Err(ConfigError::new(
                key("multiplier"),
                self.multiplier,
                "a number from 1.0 to 10.0",
            ));
        }
        Ok(())
    }

    /// The delay before retry number `retry` (0-based), with "equal jitter":
    /// half the exponential delay plus a random part of the other half, so
    /// sinks that failed together do not retry in lockstep, yet never wait
    /// less than half the nominal delay.
    pub fn delay(&self, retry: u32, entropy: u64) -> Duration {
        let nominal = self.initial_backoff.as_secs_f64() * self.multiplier.powi(retry as i32);
        let nominal = nominal.min(self.max_backoff.as_secs_f64());
        let unit = (entropy >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(nominal / 2.0 + nominal / 2.0 * unit)
    }
}

/// Entropy for [`RetryPolicy::delay`] without a random-number crate: the
/// clock's nanoseconds hashed with a per-call value.
pub(crate) fn entropy(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    xxhash_rust::xxh3::xxh3_64_with_seed(&nanos.to_le_bytes(), salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fr_008() {
        let p = RetryPolicy::default();
        assert_eq!(p.initial_backoff, Duration::from_millis(100));
        assert_eq!(p.max_backoff, Duration::from_secs(30));
        assert_eq!(p.max_retries, 3);
        p.validate("retry").unwrap();
    }

    #[test]
    fn delays_grow_exponentially_within_jitter_and_cap() {
        let p = RetryPolicy::default();
        for retry in 0..12 {
            let nominal = (0.1 * 2f64.powi(retry as i32)).min(30.0);
            for entropy in [0, u64::MAX / 3, u64::MAX] {
                let d = p.delay(retry, entropy).as_secs_f64();
                assert!(
                    d >= nominal / 2.0 - 1e-9,
                    "retry {retry}: {d} < {nominal}/2"
                );
                assert!(d <= nominal + 1e-9, "retry {retry}: {d} > {nominal}");
            }
        }
        assert!(
            p.delay(0, 0) < p.delay(0, u64::MAX),
            "jitter must vary the delay"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let p = RetryPolicy {
            multiplier: 0.5,
            ..RetryPolicy::default()
        };
        let e = p.validate("sinks.influxdb.retry").unwrap_err();
        assert_eq!(e.key, "sinks.influxdb.retry.multiplier");
        assert_eq!(e.value, "0.5");
        let p = RetryPolicy {
            max_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        };
        assert_eq!(p.validate("r").unwrap_err().key, "r.max_backoff");
    }

    #[test]
    fn parses_humantime_and_rejects_unknown_keys() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"initial_backoff":"250ms","max_retries":5}"#).unwrap();
        assert_eq!(p.initial_backoff, Duration::from_millis(250));
        assert_eq!(p.max_retries, 5);
        assert_eq!(p.max_backoff, Duration::from_secs(30));
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"retries":5}"#).is_err());
    }
}
