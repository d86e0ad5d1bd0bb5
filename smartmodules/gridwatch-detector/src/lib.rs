//! The Gridwatch detection rule, as a plain library.
//!
//! It compiles natively (the runtime, offline scoring, tests) and into the
//! `detect` SmartModule (WASM), so both run exactly the same code.
//!
//! # The rule
//! - Per meter, each scored field (voltage by default) is compared with a
//!   baseline: the same meter's earlier readings with `t − W ≤ ts < t`.
//! - A reading is scored only when the baseline holds at least `min_samples`
//!   readings and their sample standard deviation (n − 1) exceeds 1e-9.
//! - `z = (x − mean) / stddev`; |z| > threshold is an anomaly: a surge (or
//!   HIGH) when z > 0, a sag (or LOW) when z < 0. Severity is CRITICAL above
//!   threshold + 2, ERROR above threshold + 1, WARNING otherwise.
//! - Every valid reading joins its meter's window after being scored. FAILURE
//!   readings are neither scored nor windowed; DEGRADED readings are both.
//! - Status episodes: the first FAILURE after a non-FAILURE reading gives
//!   EQUIPMENT_FAILURE (CRITICAL); the first DEGRADED after a non-DEGRADED one
//!   gives EQUIPMENT_DEGRADED (WARNING); the first OK after a FAILURE
//!   episode gives EQUIPMENT_RECOVERED (INFO), even across DEGRADED readings.
//!
//! # Event time
//! - **Late readings.** A reading older than its meter's newest reading is
//!   late. Within `allowed_lateness` it is scored against the window as it
//!   stands (which may hold up to `allowed_lateness` of newer readings) and
//!   inserted in event-time order; it does not move status episodes, which
//!   follow event time. Beyond `allowed_lateness` it is passed on with
//!   disposition `LATE`: archived, never scored, never windowed. A reading
//!   with the same timestamp as the newest counts as in order (true
//!   duplicates are removed before detection by the runtime's dedup).
//! - **Silent meters.** The detector's clock is the newest event time of any
//!   meter. A meter silent for longer than `window + allowed_lateness` has its
//!   window freed (it could not be part of a future baseline anyway); one
//!   silent for `idle_timeout` is forgotten entirely, episode included. Sweeps
//!   run once per as many readings as there are meters: O(1) amortised.
//!   This assumes meter clocks agree to within the allowed lateness.
//!
//! # Modules
//! - [`config`]: parameters, defaults and validation.
//! - [`detector`]: per-meter state and the rule.
//! - `stats`: O(1) sliding mean and variance with exact zero-variance detection.
//! - `window`: a meter's readings, delta-encoded losslessly in a byte buffer.

pub mod config;
pub mod detector;
mod stats;
mod window;

pub use config::{ConfigError, DetectorConfig};
pub use detector::{Detector, FieldEvidence, Scores, severity};
pub use stats::Moments;

use gridwatch_contracts::{AnomalyType, SensorReading};
use serde::{Deserialize, Serialize};

/// The smallest standard deviation a baseline may have and still score:
/// below it the window is considered flat and z is undefined.
pub const MIN_STDDEV: f64 = 1e-9;

/// A reading field the detector can score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoredField {
    Voltage,
    Current,
    Temperature,
}

impl ScoredField {
    /// Every scoreable field.
    pub const ALL: [ScoredField; 3] = [Self::Voltage, Self::Current, Self::Temperature];

    /// The Avro field name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Voltage => "voltage",
            Self::Current => "current",
            Self::Temperature => "temperature",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn value(self, reading: &SensorReading) -> f64 {
        match self {
            Self::Voltage => reading.voltage,
            Self::Current => reading.current,
            Self::Temperature => reading.temperature,
        }
    }

    pub fn value_of(self, reading: &gridwatch_contracts::fast::ReadingRef<'_>) -> f64 {
        match self {
            Self::Voltage => reading.voltage,
            Self::Current => reading.current,
            Self::Temperature => reading.temperature,
        }
    }

    /// The anomaly type for z > 0.
    pub fn high(self) -> AnomalyType {
        match self {
            Self::Voltage => AnomalyType::VoltageSurge,
            Self::Current => AnomalyType::CurrentHigh,
            Self::Temperature => AnomalyType::TemperatureHigh,
        }
    }

    /// The anomaly type for z < 0.
    pub fn low(self) -> AnomalyType {
        match self {
            Self::Voltage => AnomalyType::VoltageSag,
            Self::Current => AnomalyType::CurrentLow,
            Self::Temperature => AnomalyType::TemperatureLow,
        }
    }
}
