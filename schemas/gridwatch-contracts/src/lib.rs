//! Gridwatch's contracts: the records every stage, module and sink agrees on.
//!
//! The `.avsc` files in `schemas/avro/` are the single source of truth. This
//! crate gives them Rust types and one codec, so that the SmartModules (built
//! to WASM), the runtime and the sinks cannot drift apart.
//!
//! - [`model`]: the Rust types that mirror the Avro records.
//! - [`schema`]: the `.avsc` texts and their parsed forms.
//! - [`codec`]: Avro binary encode and decode of those types.
//! - [`fast`]: the same bytes, hand-written, for the chain's per-reading path.
//! - [`framing`]: the Apicurio / Confluent wire framing (magic byte and schema id).
//! - [`json`]: the JSON edge format for readings (ingest API, `fluvio produce`).
//! - [`id`]: deterministic anomaly ids.

pub mod codec;
pub mod fast;
pub mod framing;
pub mod id;
pub mod json;
pub mod model;
pub mod schema;

pub use codec::CodecError;

/// A configuration value or module parameter that is out of range or does
/// not parse. Shared by the runtime's YAML and the SmartModules' `init`
/// params, so a user sees the same message whichever way they configure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value:?} is not allowed: {allowed}")]
pub struct ConfigError {
    /// The full key as the user wrote it, e.g. `detector.threshold` or `threshold`.
    pub key: String,
    pub value: String,
    /// The allowed range or form, in words.
    pub allowed: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}
pub use model::{
    AnomalyEvent, AnomalyType, ChainRecord, DeadLetter, Disposition, FieldScore, MeterStatus,
    ScoredReading, SensorReading, Severity,
};
