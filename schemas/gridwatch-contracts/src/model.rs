//! Rust types for the Avro records in `schemas/avro/`.
//!
//! Field names, order and enum symbols match the `.avsc` files exactly; the
//! round-trip tests in [`crate::codec`] check every type against
//! `apache-avro`, an implementation independent of the codec we use.

use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoStaticStr};

/// Gives every contract enum its Avro symbol without allocating.
macro_rules! symbol {
    ($($t:ty),*) => {$(
        impl $t {
            /// The Avro symbol, which is also the JSON and line-protocol spelling.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    )*};
}
symbol!(MeterStatus, AnomalyType, Severity, Disposition);

/// Self-reported device health (`io.gridwatch.MeterStatus`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
)]
#[serde(rename_all = "UPPERCASE")]
#[strum(serialize_all = "UPPERCASE")]
pub enum MeterStatus {
    #[default]
    Ok,
    Degraded,
    Failure,
}

/// One measurement from a smart meter (`io.gridwatch.SensorReading`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorReading {
    pub meter_id: String,
    /// Event time, epoch milliseconds UTC.
    pub timestamp: i64,
    /// Volts.
    pub voltage: f64,
    /// Amperes.
    pub current: f64,
    /// Degrees Celsius.
    pub temperature: f64,
    #[serde(default)]
    pub status: MeterStatus,
}

/// The kind of deviation (`io.gridwatch.AnomalyType`).
///
/// `Unknown` is the enum's Avro default, so that a reader on this version can
/// still read events from a future detector that adds a type.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum AnomalyType {
    VoltageSurge,
    VoltageSag,
    CurrentHigh,
    CurrentLow,
    TemperatureHigh,
    TemperatureLow,
    EquipmentFailure,
    EquipmentDegraded,
    EquipmentRecovered,
    Unknown,
}

/// Operator-facing urgency (`io.gridwatch.Severity`), ordered by urgency.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
)]
#[serde(rename_all = "UPPERCASE")]
#[strum(serialize_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

/// A detected anomaly with its evidence (`io.gridwatch.AnomalyEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    pub anomaly_id: String,
    pub anomaly_type: AnomalyType,
    pub severity: Severity,
    /// Wall-clock time of detection; not part of the id nor of equality checks
    /// between runs (see [`AnomalyEvent::eq_ignoring_detected_at`]).
    pub detected_at: i64,
    pub original_event: SensorReading,
    pub field: Option<String>,
    pub zscore: Option<f64>,
    pub window_mean: Option<f64>,
    pub window_stddev: Option<f64>,
    pub window_count: Option<i32>,
    pub threshold: Option<f64>,
    pub window_ms: Option<i64>,
}

impl AnomalyEvent {
    /// Equality for comparing two runs, where detection happened at different
    /// wall-clock times.
    pub fn eq_ignoring_detected_at(&self, other: &Self) -> bool {
        Self {
            detected_at: other.detected_at,
            ..self.clone()
        } == *other
    }
}

/// An event that could not be processed (`io.gridwatch.DeadLetter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Machine-readable code; see [`reason`] for the ones Gridwatch emits.
    pub reason: String,
    pub message: String,
    /// `ingest`, `validate`, `detect`, or a sink's name.
    pub stage: String,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub original: Vec<u8>,
    pub first_failed_at: i64,
    pub attempts: i32,
}

/// Reason codes carried in [`DeadLetter::reason`].
///
/// A string rather than an Avro enum, so that a new sink can add a code
/// without a schema change that old readers would reject.
pub mod reason {
    /// Bytes that are neither framed Avro nor JSON, or fail to decode.
    pub const UNPARSEABLE: &str = "UNPARSEABLE";
    /// Framed Avro whose schema id the module was not given.
    pub const UNKNOWN_SCHEMA: &str = "UNKNOWN_SCHEMA";
    /// Decodes, but a field has the wrong type or is missing.
    pub const SCHEMA_MISMATCH: &str = "SCHEMA_MISMATCH";
    /// A value that is not a finite number.
    pub const NOT_FINITE: &str = "NOT_FINITE";
    /// A value outside its physically plausible range.
    pub const OUT_OF_RANGE: &str = "OUT_OF_RANGE";
    /// A timestamp before the earliest accepted time or too far in the future.
    pub const TIMESTAMP_OUT_OF_RANGE: &str = "TIMESTAMP_OUT_OF_RANGE";
    /// An empty, oversized or control-character meter id.
    pub const INVALID_METER_ID: &str = "INVALID_METER_ID";
    /// The SmartModule chain failed on this record alone (a trap, its
    /// deadline or its memory limit); the rest of its batch went on.
    pub const CHAIN_FAILED: &str = "CHAIN_FAILED";
    /// A sink gave up after the retry budget.
    pub const RETRIES_EXHAUSTED: &str = "RETRIES_EXHAUSTED";
    /// A sink refused the event for good (4xx other than 429).
    pub const PERMANENT_SINK_ERROR: &str = "PERMANENT_SINK_ERROR";
}

/// The detector's evidence for one scored field (`io.gridwatch.FieldScore`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldScore {
    pub field: String,
    pub value: f64,
    pub window_count: i32,
    pub window_mean: Option<f64>,
    pub window_stddev: Option<f64>,
    /// `None` when the reading was not scored: too few samples or zero variance.
    pub zscore: Option<f64>,
    pub anomalous: bool,
}

/// How the detector treated a reading (`io.gridwatch.Disposition`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Disposition {
    /// Evaluated against its window (each field may still be unscored).
    Scored,
    /// Status FAILURE: measurements untrusted, neither scored nor windowed.
    ExcludedFailure,
    /// Arrived later than the allowed lateness: archived, not scored.
    Late,
    /// A scored field was not finite; defensive, validate rejects these first.
    Invalid,
}

/// Everything detect emits for one reading (`io.gridwatch.ScoredReading`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredReading {
    pub reading: SensorReading,
    pub source_offset: i64,
    pub disposition: Disposition,
    pub scores: Vec<FieldScore>,
    pub anomalies: Vec<AnomalyEvent>,
}

/// The record that passes between SmartModules (`ChainRecord.avsc`, a union).
///
/// validate emits `Reading` or `DeadLetter`; detect turns `Reading` into
/// `Scored` and passes `DeadLetter` through, so the runtime routes by variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChainRecord {
    // serde_avro_fast names union branches by their full Avro name.
    #[serde(rename = "io.gridwatch.SensorReading")]
    Reading(SensorReading),
    #[serde(rename = "io.gridwatch.ScoredReading")]
    Scored(ScoredReading),
    #[serde(rename = "io.gridwatch.DeadLetter")]
    DeadLetter(DeadLetter),
}
