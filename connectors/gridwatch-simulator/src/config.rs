//! The simulator's settings (`simulator.*` in the pipeline's config), their
//! defaults and their allowed ranges.
//!
//! Defaults are chosen so that `gridwatch run` shows something within a
//! minute: 100 meters at 1,000 events/s is ten times real time, so the
//! detector's 5-minute warm-up passes in 30 s and then a fault or two a
//! second minute show up on the dashboard.

use std::time::{Duration, SystemTime};

use gridwatch_contracts::ConfigError;
use serde::{Deserialize, Serialize};

/// The most meters one simulator runs: memory is about 100 bytes a meter.
pub const MAX_METERS: u32 = 1_000_000;
/// The fastest rate the driver is asked to hold, events per second.
pub const MAX_RATE: f64 = 100_000_000.0;
/// A fault rate above this (per meter-hour or feeder-hour) is a typo.
pub const MAX_FAULT_RATE: f64 = 60.0;
/// The share of a meter's time that fault episodes and their quiet gaps may
/// fill. Above it a meter is mostly faulty, which is not a useful test.
pub const MAX_FAULT_OCCUPANCY: f64 = 0.5;

/// How the driver paces events against the wall clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the sink takes them: load tests and benchmarks.
    FlatOut,
    /// At most this many events per second across all meters.
    Rate(f64),
    /// Each meter reports once per `interval` of wall time, so event time
    /// keeps step with the wall clock (from `start`, by default now).
    RealTime,
}

/// Settings of the simulator source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Run the simulator as the pipeline's source. Default `true`: it is
    /// what a new user sees first.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Number of simulated meters. Default 100, allowed 1 to 1,000,000.
    #[serde(default = "default_meters")]
    pub meters: u32,
    /// Number of feeders the meters are split over (contiguous blocks, ids
    /// `feeder-<k>-meter-<n>`); meters on a feeder sag together under load.
    /// Default 10, allowed 1 to `meters`.
    #[serde(default = "default_feeders")]
    pub feeders: u32,
    /// Event time between two readings of one meter; the meters' readings
    /// are spread evenly over it. Default `1s`, allowed 1ms to 1h in whole
    /// milliseconds. The detector needs at least 10 readings in its 5-minute
    /// window, so intervals above 30s leave it nothing to score.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Events per second across all meters; `0` or `null` runs flat out.
    /// Default 1000. Faster than `meters / interval` runs event time ahead
    /// of the wall clock (validate refuses readings more than a day ahead,
    /// so a long fast run should set `start` in the past).
    #[serde(default = "default_rate")]
    pub rate: Option<f64>,
    /// Pace by event time instead of `rate`: each meter reports once per
    /// `interval` of wall time. Default `false`.
    #[serde(default)]
    pub realtime: bool,
    /// Event time of the first reading (RFC 3339, e.g.
    /// `2026-01-01T00:00:00Z`); `null` is the wall clock when the simulator
    /// starts. Default `null`. The output is reproducible only with a fixed
    /// start, because the load curve follows the time of day.
    #[serde(default, with = "humantime_serde")]
    pub start: Option<SystemTime>,
    /// Seed of every random choice: the same seed, config and start give the
    /// same events, whatever the pacing or batching. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stop after this many events; `null` runs until shut down. Default `null`.
    #[serde(default)]
    pub max_events: Option<u64>,
    /// Nominal supply voltage, V. Default 230, allowed 50 to 500.
    #[serde(default = "default_nominal_voltage")]
    pub nominal_voltage: f64,
    /// Standard deviation of a meter's reading-to-reading voltage noise, V.
    /// Default 1.0, allowed 0.1 to 20. Surge and sag sizes are multiples of it.
    #[serde(default = "default_voltage_noise")]
    pub voltage_noise: f64,
    /// Injected faults and their ground-truth labels.
    #[serde(default)]
    pub faults: FaultConfig,
}

/// Which faults are injected, how often and how large.
///
/// Rates count episodes per meter-hour of event time (per feeder-hour for
/// feeder sags), over the whole run after `warmup`: the quiet gaps are
/// accounted for, so 0.3 surges per meter-hour over 100 meters and 10 hours
/// give about 300 surge episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Voltage surges (1 to `spike_max_readings` readings well above the
    /// meter's baseline) per meter-hour. Default 0.3, allowed 0 to 60.
    #[serde(default = "default_spike_rate")]
    pub surge_rate: f64,
    /// Voltage sags on one meter per meter-hour. Default 0.3, allowed 0 to 60.
    #[serde(default = "default_spike_rate")]
    pub sag_rate: f64,
    /// Sags of a whole feeder (every meter on it at once) per feeder-hour.
    /// Default 0.2, allowed 0 to 60.
    #[serde(default = "default_feeder_sag_rate")]
    pub feeder_sag_rate: f64,
    /// Equipment failures (status FAILURE at 0 V for about
    /// `failure_duration`, then recovery) per meter-hour. Default 0.1,
    /// allowed 0 to 60.
    #[serde(default = "default_episode_rate")]
    pub failure_rate: f64,
    /// Degraded episodes (status DEGRADED for about `degraded_duration`)
    /// per meter-hour. Default 0.1, allowed 0 to 60.
    #[serde(default = "default_episode_rate")]
    pub degraded_rate: f64,
    /// Flapping sensors (status toggling FAILURE and OK every 1 to 3
    /// readings, 3 to 6 times) per meter-hour. Default 0.05, allowed 0 to 60.
    #[serde(default = "default_flapping_rate")]
    pub flapping_rate: f64,
    /// Stuck sensors (the same reading repeated for about `stuck_duration`)
    /// per meter-hour. Default 0.1, allowed 0 to 60. The z-score rule cannot
    /// see these; they are labelled as undetectable.
    #[serde(default = "default_episode_rate")]
    pub stuck_rate: f64,
    /// Malformed payloads (bytes that validate must dead-letter, in place of
    /// a reading) per meter-hour. Default 0.1, allowed 0 to 60.
    #[serde(default = "default_episode_rate")]
    pub malformed_rate: f64,
    /// Smallest surge or sag, in standard deviations of the voltage noise.
    /// Default 8, allowed 1 to 100. The detector flags |z| > 2.5; at 6 or
    /// more every spike is caught, below 3 many are not.
    #[serde(default = "default_magnitude_min")]
    pub magnitude_min: f64,
    /// Largest surge or sag, in standard deviations of the voltage noise.
    /// Default 16, allowed `magnitude_min` to 100, and at most half the
    /// nominal voltage in volts so that readings stay plausible.
    #[serde(default = "default_magnitude_max")]
    pub magnitude_max: f64,
    /// Longest surge or sag, in readings (each is labelled). Default 3,
    /// allowed 1 to 10.
    #[serde(default = "default_spike_max_readings")]
    pub spike_max_readings: u32,
    /// Mean length of a failure episode (drawn from half to one and a half
    /// times it). Default `1m`, allowed 1s to 1d. Beyond the detector's
    /// window a meter restarts its baseline and its first scores are noisy.
    #[serde(default = "default_failure_duration", with = "humantime_serde")]
    pub failure_duration: Duration,
    /// Mean length of a degraded episode. Default `2m`, allowed 1s to 1d.
    #[serde(default = "default_degraded_duration", with = "humantime_serde")]
    pub degraded_duration: Duration,
    /// Mean length of a stuck-value episode. Default `30s`, allowed 1s to 1d.
    /// A long one fills the detector's window with one value, and when the
    /// sensor recovers its ordinary noise scores as anomalies.
    #[serde(default = "default_stuck_duration", with = "humantime_serde")]
    pub stuck_duration: Duration,
    /// Quiet time on a meter (and a feeder) after each fault, so that the
    /// next one is scored against a clean baseline. Default `5m` (the
    /// detector's window), allowed 0s to 1d.
    #[serde(default = "default_gap", with = "humantime_serde")]
    pub gap: Duration,
    /// No faults in this first stretch of event time, while the detector
    /// fills its windows. Default `5m`, allowed 0s to 1d.
    #[serde(default = "default_warmup", with = "humantime_serde")]
    pub warmup: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_meters() -> u32 {
    100
}
fn default_feeders() -> u32 {
    10
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_rate() -> Option<f64> {
    Some(1000.0)
}
fn default_seed() -> u64 {
    42
}
fn default_nominal_voltage() -> f64 {
    230.0
}
fn default_voltage_noise() -> f64 {
    1.0
}
fn default_spike_rate() -> f64 {
    0.3
}
fn default_feeder_sag_rate() -> f64 {
    0.2
}
fn default_episode_rate() -> f64 {
    0.1
}
fn default_flapping_rate() -> f64 {
    0.05
}
fn default_magnitude_min() -> f64 {
    8.0
}
fn default_magnitude_max() -> f64 {
    16.0
}
fn default_spike_max_readings() -> u32 {
    3
}
fn default_failure_duration() -> Duration {
    Duration::from_secs(60)
}
fn default_degraded_duration() -> Duration {
    Duration::from_secs(120)
}
fn default_stuck_duration() -> Duration {
    Duration::from_secs(30)
}
fn default_gap() -> Duration {
    Duration::from_secs(300)
}
fn default_warmup() -> Duration {
    Duration::from_secs(300)
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            meters: default_meters(),
            feeders: default_feeders(),
            interval: default_interval(),
            rate: default_rate(),
            realtime: false,
            start: None,
            seed: default_seed(),
            max_events: None,
            nominal_voltage: default_nominal_voltage(),
            voltage_noise: default_voltage_noise(),
            faults: FaultConfig::default(),
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            surge_rate: default_spike_rate(),
            sag_rate: default_spike_rate(),
            feeder_sag_rate: default_feeder_sag_rate(),
            failure_rate: default_episode_rate(),
            degraded_rate: default_episode_rate(),
            flapping_rate: default_flapping_rate(),
            stuck_rate: default_episode_rate(),
            malformed_rate: default_episode_rate(),
            magnitude_min: default_magnitude_min(),
            magnitude_max: default_magnitude_max(),
            spike_max_readings: default_spike_max_readings(),
            failure_duration: default_failure_duration(),
            degraded_duration: default_degraded_duration(),
            stuck_duration: default_stuck_duration(),
            gap: default_gap(),
            warmup: default_warmup(),
        }
    }
}

impl FaultConfig {
    /// No faults at all: a clean stream, e.g. to measure false positives.
    pub fn none() -> Self {
        Self {
            surge_rate: 0.0,
            sag_rate: 0.0,
            feeder_sag_rate: 0.0,
            failure_rate: 0.0,
            degraded_rate: 0.0,
            flapping_rate: 0.0,
            stuck_rate: 0.0,
            malformed_rate: 0.0,
            ..Self::default()
        }
    }
}

const KEY: &str = "simulator.";

fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn check_duration(
    key: &str,
    d: Duration,
    min: Duration,
    max: Duration,
    allowed: &str,
) -> Result<(), ConfigError> {
    if d < min || d > max {
        return Err(ConfigError::new(
            format!("{KEY}{key}"),
            duration_text(d),
            allowed,
        ));
    }
    Ok(())
}

impl SimulatorConfig {
    /// How the driver should pace this config's events.
    pub fn pace(&self) -> Pace {
        if self.realtime {
            return Pace::RealTime;
        }
        match self.rate {
            Some(r) if r > 0.0 => Pace::Rate(r),
            _ => Pace::FlatOut,
        }
    }

    /// The interval in whole milliseconds (validated to be at least 1).
    pub fn interval_ms(&self) -> u64 {
        u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks every value; errors name the key (`simulator.…`), the value
    /// and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, value: String, allowed: &str| {
            ConfigError::new(format!("{KEY}{key}"), value, allowed)
        };
        if !(1..=MAX_METERS).contains(&self.meters) {
            return Err(err(
                "meters",
                self.meters.to_string(),
                "a whole number from 1 to 1000000",
            ));
        }
        if self.feeders < 1 || self.feeders > self.meters {
            return Err(err(
                "feeders",
                self.feeders.to_string(),
                "a whole number from 1 to the number of meters",
            ));
        }
        if self.interval < Duration::from_millis(1)
            || self.interval > Duration::from_secs(3600)
            || !self.interval.subsec_nanos().is_multiple_of(1_000_000)
        {
            return Err(err(
                "interval",
                duration_text(self.interval),
                "a whole number of milliseconds from 1ms to 1h",
            ));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && (0.0..=MAX_RATE).contains(&rate))
        {
            return Err(err(
                "rate",
                rate.to_string(),
                "events per second from 0 (flat out) to 100000000, or null (flat out)",
            ));
        }
        if let Some(start) = self.start
            && start < SystemTime::UNIX_EPOCH
        {
            return Err(err(
                "start",
                format!("{start:?}"),
                "a time after 1970-01-01T00:00:00Z, or null (now)",
            ));
        }
        if self.max_events == Some(0) {
            return Err(err(
                "max_events",
                "0".into(),
                "a positive number of events, or null (no limit)",
            ));
        }
        if !(self.nominal_voltage.is_finite() && (50.0..=500.0).contains(&self.nominal_voltage)) {
            return Err(err(
                "nominal_voltage",
                self.nominal_voltage.to_string(),
                "volts from 50 to 500",
            ));
        }
        if !(self.voltage_noise.is_finite() && (0.1..=20.0).contains(&self.voltage_noise)) {
            return Err(err(
                "voltage_noise",
                self.voltage_noise.to_string(),
                "volts from 0.1 to 20",
            ));
        }
        self.faults.validate(self)
    }
}

impl FaultConfig {
    /// The mean length in event time of one episode of each per-meter kind,
    /// weighted by its rate: what occupies a meter between two faults.
    pub(crate) fn mean_episode(&self, interval: Duration) -> (f64, Duration) {
        let total = self.meter_rate();
        if total <= 0.0 {
            return (0.0, Duration::ZERO);
        }
        let spike_readings = f64::from(self.spike_max_readings + 1) / 2.0;
        let spike = interval.mul_f64(spike_readings);
        // A flapping episode is 3 to 6 cycles of 1 to 3 readings each way.
        let flapping = interval.mul_f64(4.5 * 2.0 * 2.0 + 1.0);
        let weighted = spike.mul_f64(self.surge_rate + self.sag_rate)
            + (self.failure_duration + interval).mul_f64(self.failure_rate)
            + self.degraded_duration.mul_f64(self.degraded_rate)
            + flapping.mul_f64(self.flapping_rate)
            + self.stuck_duration.mul_f64(self.stuck_rate);
        (total, weighted.div_f64(total))
    }

    /// Episodes per meter-hour across the per-meter kinds (not feeder sags
    /// nor malformed payloads, which do not occupy a meter).
    pub(crate) fn meter_rate(&self) -> f64 {
        self.surge_rate
            + self.sag_rate
            + self.failure_rate
            + self.degraded_rate
            + self.flapping_rate
            + self.stuck_rate
    }

    fn validate(&self, sim: &SimulatorConfig) -> Result<(), ConfigError> {
        let err = |key: &str, value: String, allowed: &str| {
            ConfigError::new(format!("{KEY}faults.{key}"), value, allowed)
        };
        for (key, rate) in [
            ("surge_rate", self.surge_rate),
            ("sag_rate", self.sag_rate),
            ("feeder_sag_rate", self.feeder_sag_rate),
            ("failure_rate", self.failure_rate),
            ("degraded_rate", self.degraded_rate),
            ("flapping_rate", self.flapping_rate),
            ("stuck_rate", self.stuck_rate),
            ("malformed_rate", self.malformed_rate),
        ] {
            if !(rate.is_finite() && (0.0..=MAX_FAULT_RATE).contains(&rate)) {
                return Err(err(
                    key,
                    rate.to_string(),
                    "episodes per meter-hour (feeder-hour for feeder_sag_rate) from 0 to 60",
                ));
            }
        }
        if !(self.magnitude_min.is_finite() && (1.0..=100.0).contains(&self.magnitude_min)) {
            return Err(err(
                "magnitude_min",
                self.magnitude_min.to_string(),
                "standard deviations of the voltage noise from 1 to 100",
            ));
        }
        if !(self.magnitude_max.is_finite()
            && self.magnitude_max >= self.magnitude_min
            && self.magnitude_max <= 100.0
            && self.magnitude_max * sim.voltage_noise <= sim.nominal_voltage / 2.0)
        {
            return Err(err(
                "magnitude_max",
                self.magnitude_max.to_string(),
                "standard deviations from magnitude_min to 100, \
                 with magnitude_max × voltage_noise at most half the nominal voltage",
            ));
        }
        if !(1..=10).contains(&self.spike_max_readings) {
            return Err(err(
                "spike_max_readings",
                self.spike_max_readings.to_string(),
                "a whole number of readings from 1 to 10",
            ));
        }
        let second = Duration::from_secs(1);
        let day = Duration::from_secs(86_400);
        let prefix = "faults.";
        check_duration(
            &format!("{prefix}failure_duration"),
            self.failure_duration,
            second,
            day,
            "a duration from 1s to 1d",
        )?;
        check_duration(
            &format!("{prefix}degraded_duration"),
            self.degraded_duration,
            second,
            day,
            "a duration from 1s to 1d",
        )?;
        check_duration(
            &format!("{prefix}stuck_duration"),
            self.stuck_duration,
            second,
            day,
            "a duration from 1s to 1d",
        )?;
        check_duration(
            &format!("{prefix}gap"),
            self.gap,
            Duration::ZERO,
            day,
            "a duration from 0s to 1d",
        )?;
        check_duration(
            &format!("{prefix}warmup"),
            self.warmup,
            Duration::ZERO,
            day,
            "a duration from 0s to 1d",
        )?;
        let sag = sim
            .interval
            .mul_f64(f64::from(self.spike_max_readings + 1) / 2.0);
        let feeder_occupancy = self.feeder_sag_rate * (sag + self.gap).as_secs_f64() / 3600.0;
        if feeder_occupancy > MAX_FAULT_OCCUPANCY {
            return Err(err(
                "feeder_sag_rate",
                self.feeder_sag_rate.to_string(),
                "a rate whose sags and gaps fill at most half of a feeder's time: \
                 lower it or the gap",
            ));
        }
        let (rate, mean) = self.mean_episode(sim.interval);
        let occupancy = rate * (mean + self.gap).as_secs_f64() / 3600.0;
        if occupancy > MAX_FAULT_OCCUPANCY {
            return Err(ConfigError::new(
                format!("{KEY}faults"),
                format!(
                    "{rate} episodes per meter-hour of about {} each plus a {} gap",
                    duration_text(Duration::from_secs(mean.as_secs())),
                    duration_text(self.gap)
                ),
                "rates whose episodes and gaps fill at most half of a meter's time: \
                 lower the rates, the durations or the gap",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_an_empty_document() {
        let parsed: SimulatorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, SimulatorConfig::default());
        parsed.validate().unwrap();
        assert_eq!(parsed.pace(), Pace::Rate(1000.0));
    }

    #[test]
    fn parses_durations_times_and_nested_faults() {
        let c: SimulatorConfig = serde_json::from_str(
            r#"{"meters": 1000, "interval": "500ms", "rate": null,
                "start": "2026-01-01T00:00:00Z",
                "faults": {"surge_rate": 1.5, "gap": "2m"}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.interval_ms(), 500);
        assert_eq!(c.pace(), Pace::FlatOut);
        assert_eq!(
            c.start.unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
        );
        assert_eq!(c.faults.surge_rate, 1.5);
        assert_eq!(c.faults.gap, Duration::from_secs(120));
        assert_eq!(c.faults.sag_rate, 0.3);
    }

    #[test]
    fn zero_rate_is_flat_out_and_realtime_overrides_rate() {
        let mut c = SimulatorConfig {
            rate: Some(0.0),
            ..Default::default()
        };
        assert_eq!(c.pace(), Pace::FlatOut);
        c.realtime = true;
        assert_eq!(c.pace(), Pace::RealTime);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<SimulatorConfig>(r#"{"meter": 10}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `meter`"), "{e}");
        let e =
            serde_json::from_str::<SimulatorConfig>(r#"{"faults": {"surges": 1}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `surges`"), "{e}");
    }

    fn message(c: SimulatorConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_the_value_and_the_range() {
        let base = SimulatorConfig::default;
        assert_eq!(
            message(SimulatorConfig {
                meters: 0,
                ..base()
            }),
            r#"simulator.meters = "0" is not allowed: a whole number from 1 to 1000000"#
        );
        assert_eq!(
            message(SimulatorConfig {
                meters: 2_000_000,
                ..base()
            }),
            r#"simulator.meters = "2000000" is not allowed: a whole number from 1 to 1000000"#
        );
        assert_eq!(
            message(SimulatorConfig {
                feeders: 101,
                ..base()
            }),
            r#"simulator.feeders = "101" is not allowed: a whole number from 1 to the number of meters"#
        );
        assert_eq!(
            message(SimulatorConfig {
                interval: Duration::from_micros(1500),
                ..base()
            }),
            r#"simulator.interval = "1ms 500us" is not allowed: a whole number of milliseconds from 1ms to 1h"#
        );
        assert_eq!(
            message(SimulatorConfig {
                rate: Some(-5.0),
                ..base()
            }),
            r#"simulator.rate = "-5" is not allowed: events per second from 0 (flat out) to 100000000, or null (flat out)"#
        );
        assert_eq!(
            message(SimulatorConfig {
                voltage_noise: 0.0,
                ..base()
            }),
            r#"simulator.voltage_noise = "0" is not allowed: volts from 0.1 to 20"#
        );
        let faults = |f: FaultConfig| SimulatorConfig {
            faults: f,
            ..base()
        };
        assert_eq!(
            message(faults(FaultConfig {
                sag_rate: f64::NAN,
                ..Default::default()
            })),
            r#"simulator.faults.sag_rate = "NaN" is not allowed: episodes per meter-hour (feeder-hour for feeder_sag_rate) from 0 to 60"#
        );
        assert_eq!(
            message(faults(FaultConfig {
                magnitude_max: 4.0,
                ..Default::default()
            })),
            "simulator.faults.magnitude_max = \"4\" is not allowed: standard deviations from \
             magnitude_min to 100, with magnitude_max × voltage_noise at most half the nominal voltage"
        );
        assert_eq!(
            message(faults(FaultConfig {
                stuck_duration: Duration::ZERO,
                ..Default::default()
            })),
            r#"simulator.faults.stuck_duration = "0s" is not allowed: a duration from 1s to 1d"#
        );
    }

    #[test]
    fn fault_rates_that_leave_no_quiet_time_are_refused() {
        let c = SimulatorConfig {
            faults: FaultConfig {
                failure_rate: 10.0,
                failure_duration: Duration::from_secs(600),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "simulator.faults");
        assert!(e.allowed.contains("at most half"), "{e}");
        let c = SimulatorConfig {
            faults: FaultConfig {
                feeder_sag_rate: 7.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "simulator.faults.feeder_sag_rate");
    }
}
