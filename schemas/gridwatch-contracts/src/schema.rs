//! The Avro schemas, embedded from `schemas/avro/` at compile time.
//!
//! Embedding keeps the WASM modules self-contained (a SmartModule cannot read
//! files) while the `.avsc` files stay the one place a schema is written.

use std::sync::LazyLock;

/// `io.gridwatch.SensorReading`, version 1.
pub const SENSOR_READING: &str = include_str!("../../avro/SensorReading.avsc");
/// `io.gridwatch.AnomalyEvent`.
pub const ANOMALY_EVENT: &str = include_str!("../../avro/AnomalyEvent.avsc");
/// `io.gridwatch.DeadLetter`.
pub const DEAD_LETTER: &str = include_str!("../../avro/DeadLetter.avsc");
/// `io.gridwatch.ScoredReading`.
pub const SCORED_READING: &str = include_str!("../../avro/ScoredReading.avsc");
/// The union passed between SmartModules: SensorReading | ScoredReading | DeadLetter.
pub const CHAIN_RECORD: &str = include_str!("../../avro/ChainRecord.avsc");

/// Every schema Gridwatch registers, by artifact id.
pub const ALL: [(&str, &str); 5] = [
    ("io.gridwatch.SensorReading", SENSOR_READING),
    ("io.gridwatch.AnomalyEvent", ANOMALY_EVENT),
    ("io.gridwatch.DeadLetter", DEAD_LETTER),
    ("io.gridwatch.ScoredReading", SCORED_READING),
    ("io.gridwatch.ChainRecord", CHAIN_RECORD),
];

fn parse(text: &str) -> serde_avro_fast::Schema {
    // The texts are compiled in and checked by this crate's tests, so a parse
    // failure is a build defect, not an input error.
    text.parse()
        .unwrap_or_else(|e| panic!("embedded Avro schema does not parse: {e}"))
}

pub(crate) static SENSOR_READING_SCHEMA: LazyLock<serde_avro_fast::Schema> =
    LazyLock::new(|| parse(SENSOR_READING));
pub(crate) static ANOMALY_EVENT_SCHEMA: LazyLock<serde_avro_fast::Schema> =
    LazyLock::new(|| parse(ANOMALY_EVENT));
pub(crate) static DEAD_LETTER_SCHEMA: LazyLock<serde_avro_fast::Schema> =
    LazyLock::new(|| parse(DEAD_LETTER));
pub(crate) static SCORED_READING_SCHEMA: LazyLock<serde_avro_fast::Schema> =
    LazyLock::new(|| parse(SCORED_READING));
pub(crate) static CHAIN_RECORD_SCHEMA: LazyLock<serde_avro_fast::Schema> =
    LazyLock::new(|| parse(CHAIN_RECORD));
