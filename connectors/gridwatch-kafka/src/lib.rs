//! Gridwatch's Kafka connectors, on librdkafka (the `rdkafka` crate with its
//! bundled librdkafka built from source; Debian's 2.0.2 cannot talk to Tansu).
//!
//! - [`sink`]: [`KafkaSink`], the bridge that copies the pipeline's
//!   `anomalies` and `dead-letter` records to a Kafka-compatible cluster
//!   exactly once (idempotent producer plus tail read-back, or
//!   transactions where the broker commits them).
//! - [`source`]: [`KafkaSource`], readings consumed by a consumer group and
//!   handed to an [`IngestTarget`](gridwatch_connector::IngestTarget); offsets
//!   are committed only after ingest returned.
//! - [`config`]: [`KafkaSinkConfig`] (`sinks.kafka`) and
//!   [`KafkaSourceConfig`] (`sources.kafka`), with validation.
//! - [`error`]: [`KafkaError`] and the transient/permanent split of
//!   librdkafka's errors that the retry policy relies on.

pub mod config;
pub mod error;
pub mod sink;
pub mod source;

pub use config::{KafkaSinkConfig, KafkaSourceConfig};
pub use error::KafkaError;
pub use sink::{KafkaSink, SOURCE_HEADER};
pub use source::{KafkaSource, SourceStats};
