//! The connector interface: what the runtime drives and what every
//! connector implements.
//!
//! Gridwatch's outputs are durable topics (`scored`, `anomalies`,
//! `dead-letter`). A sink is a consumer of one of them that copies records
//! to an external system: Kafka, InfluxDB, the Parquet lake, a webhook. That
//! decoupling is what lets a slow InfluxDB lag without holding up the Kafka
//! bridge, and lets each sink run in-process or as its own process.
//!
//! - [`sink`]: the [`Sink`](sink::Sink) trait and its exactly-once contract.
//! - [`retry`]: the one retry policy all sinks share (FR-008).
//! - [`deliver`]: the loop that applies the policy and dead-letters what a
//!   sink cannot take; the runtime and the compliance harness both use it.
//! - [`source`]: what sources hand readings to ([`IngestTarget`](source::IngestTarget)).
//! - `testkit` (feature): the compliance harness every sink's tests run.

pub mod deliver;
pub mod retry;
pub mod sink;
pub mod source;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use deliver::{Delivered, deliver};
pub use retry::RetryPolicy;
pub use sink::{Sink, SinkError, SinkRecord};
pub use source::{IngestTarget, Payload, SourceError};
