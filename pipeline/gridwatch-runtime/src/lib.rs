//! Gridwatch's stream runtime: a small Kafka Streams-style framework.
//!
//! A pipeline reads a keyed, partitioned input topic, runs each partition
//! through a SmartModule chain with per-key state, and branches the results
//! to output topics, with checkpoints that make every output exactly-once
//! across crashes.
//!
//! - [`backend`]: where topics live ([`backend::TopicBackend`]; the embedded log here, Fluvio elsewhere).
//! - [`chain`]: running a SmartModule chain over batches.
//! - [`processor`]: one input partition → chain → outputs, with checkpoints and recovery.
//! - [`ingest`]: the write path for every source: parse, dedup, backpressure, durable append.
//! - [`checkpoint`]: atomic, durable checkpoint files.
//! - [`dedup`]: recognising re-sent readings within a bounded horizon.
//! - [`metrics`]: OpenTelemetry instruments exported for Prometheus.
//! - [`topics`]: topic names and the schema ids records are framed with.

pub mod backend;
pub mod chain;
pub mod checkpoint;
pub mod dedup;
pub mod ingest;
pub mod metrics;
pub mod processor;
pub mod topics;
