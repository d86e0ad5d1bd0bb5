//! Shared fixtures for Gridwatch's end-to-end tests and benchmarks.
//!
//! - [`modules`]: the built `.wasm` SmartModules, rebuilt on demand.
//! - [`golden`]: the golden readings and their expected anomalies.
//! - [`inputs`]: readings encoded as producers encode them, and the modules' params.
//! - [`process`]: the real `gridwatch` binary, started and killed.
//! - [`servers`]: real Kafka (Tansu), InfluxDB and S3 servers, and the Python clients that read them.

pub mod golden;
pub mod inputs;
pub mod modules;
pub mod process;
pub mod servers;
