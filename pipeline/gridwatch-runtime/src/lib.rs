//! Gridwatch's stream runtime: a small Kafka Streams-style framework.
//!
//! A pipeline reads a keyed, partitioned input topic, runs each partition
//! through a SmartModule chain with per-key state, and branches the results
//! to output topics, with checkpoints that make every output exactly-once
//! across crashes.
//!
//! - [`backend`]: where topics live ([`backend::TopicBackend`]; the embedded log here, Fluvio elsewhere).
//! - [`chain`]: running a SmartModule chain over batches.
//! - [`grid`]: the grid pipeline's topology (scored, anomalies, dead letters).
//! - [`pipeline`]: the builder API that wires processors, sinks and checkpoints.
//! - [`processor`]: one input partition → chain → outputs, with checkpoints and recovery.
//! - [`ingest`]: the write path for every source: parse, dedup, backpressure, durable append.
//! - [`sink`]: the driver that runs a connector's [`Sink`](gridwatch_connector::Sink) over an output topic.
//! - [`checkpoint`]: atomic, durable checkpoint files.
//! - [`dedup`]: recognising re-sent readings within a bounded horizon.
//! - [`metrics`]: OpenTelemetry instruments exported for Prometheus.
//! - [`topics`]: topic names and the schema ids records are framed with.

pub mod backend;
pub mod chain;
pub mod checkpoint;
pub mod dedup;
pub mod grid;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod processor;
pub mod sink;
pub mod topics;
