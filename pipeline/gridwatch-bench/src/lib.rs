//! Measuring Gridwatch: the end-to-end benchmark, the soak test, and the
//! validate → detect chain alone (WASM against the same crates run natively).
//!
//! Everything here drives the *real* `gridwatch` binary as a child process
//! (`gridwatch run` on a fresh data directory, HTTP on a free loopback
//! port), so what is measured is what ships: ingest, the durable embedded
//! log, the processors running the WASM chain, and the output topics. The
//! figures come from the outside: throughput and lag from `/api/v1/status`,
//! ingest→detect latency from the Prometheus histogram on `/metrics`, CPU
//! time and peak RSS from `/proc/<pid>`.
//!
//! The module map:
//!
//! - [`bench`](mod@bench): [`bench()`], one end-to-end run → [`BenchReport`].
//! - [`soak`](mod@soak): [`soak()`], a long run at a fixed rate sampled over
//!   time, with the no-loss and no-degradation checks → [`SoakReport`].
//! - [`wasm`]: [`wasm_only()`], the chain on one core through
//!   [`gridwatch_runtime::chain::WasmChain`] next to the native crates →
//!   [`WasmReport`].
//! - [`child`]: starting, probing and stopping `gridwatch run`; `/proc` figures.
//! - [`probe`]: the HTTP status, the Prometheus text and histogram quantiles.
//! - [`load`]: the HTTP load generator (simulator readings as NDJSON from
//!   several concurrent clients, paced or flat out).
//! - [`dump`]: simulator readings to an NDJSON file for peer baselines, with
//!   the native detector's anomaly count on them as the reference.
//! - `table`: plain-text tables.
//!
//! ```no_run
//! # fn main() -> Result<(), gridwatch_bench::BenchError> {
//! use std::time::Duration;
//! let mut opts = gridwatch_bench::BenchOptions::new("target/release/gridwatch");
//! opts.duration = Duration::from_secs(30);
//! let report = gridwatch_bench::bench(&opts)?;
//! println!("{}", report.table());
//! println!("{}", serde_json::to_string(&report).unwrap_or_default());
//! # Ok(()) }
//! ```

pub mod bench;
pub mod child;
pub mod dump;
pub mod error;
pub mod load;
pub mod probe;
pub mod soak;
mod table;
pub mod wasm;

pub use bench::{BenchOptions, BenchReport, Source, bench};
pub use child::{ChildOptions, Pipeline, ProcStats};
pub use error::BenchError;
pub use probe::{Histogram, Percentiles};
pub use soak::{SoakOptions, SoakReport, SoakSample, soak};
pub use wasm::{WasmOptions, WasmReport, wasm_only};
