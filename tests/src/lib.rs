//! Shared fixtures for Gridwatch's end-to-end tests and benchmarks.
//!
//! - [`modules`]: the built `.wasm` SmartModules, rebuilt on demand.
//! - [`golden`]: the golden readings and their expected anomalies.

pub mod golden;
pub mod modules;
