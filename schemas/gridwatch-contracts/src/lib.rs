//! Gridwatch's contracts: the records every stage, module and sink agrees on.
//!
//! The `.avsc` files in `schemas/avro/` are the single source of truth. This
//! crate gives them Rust types and one codec, so that the SmartModules (built
//! to WASM), the runtime and the sinks cannot drift apart.
//!
//! - [`model`]: the Rust types that mirror the Avro records.
//! - [`schema`]: the `.avsc` texts and their parsed forms.
//! - [`codec`]: Avro binary encode and decode of those types.
//! - [`framing`]: the Apicurio / Confluent wire framing (magic byte and schema id).
//! - [`json`]: the JSON edge format for readings (ingest API, `fluvio produce`).
//! - [`id`]: deterministic anomaly ids.

pub mod codec;
pub mod framing;
pub mod id;
pub mod json;
pub mod model;
pub mod schema;

pub use codec::CodecError;
pub use model::{
    AnomalyEvent, AnomalyType, ChainRecord, DeadLetter, Disposition, FieldScore, MeterStatus,
    ScoredReading, SensorReading, Severity,
};
