//! Runs chains of Fluvio SmartModules on wasmtime, with Fluvio's ABI, without
//! leaking guest memory, and inside memory and time limits.
//!
//! `fluvio-smartengine` never frees the buffer a module hands its output
//! over in, so a long-lived chain grows by its whole output volume (about
//! 83 MB per 500,000 Gridwatch records) until it traps at the store limit.
//! Gridwatch's runtime keeps chains for weeks, so it hosts the very same
//! `.wasm` files here: the same exports and imports, the same
//! `fluvio-protocol` encodings at version 22, byte-identical output, but the
//! host gives every output buffer back with the guest's `dealloc`.
//!
//! The module map:
//!
//! - [`engine`]: [`Engine`], the shared wasmtime engine with its
//!   compiled-module cache (by content hash) and the epoch ticker behind
//!   deadlines.
//! - [`chain`]: [`ChainBuilder`], [`ModuleSpec`], [`ChainConfig`] and
//!   [`Chain`]: build, `process` batches, `look_back`.
//! - [`records`]: [`Batch`] (input) and [`Output`] in Fluvio's wire encoding,
//!   read in place.
//! - [`error`]: [`HostError`], per module and classified.
//! - `abi`: the ABI calls for one module instance (alloc, call, read the
//!   handed-over output, dealloc).
//! - `limits`: the store-wide memory budget.
//!
//! ```no_run
//! # fn main() -> Result<(), gridwatch_wasm_host::HostError> {
//! use gridwatch_wasm_host::{Batch, Engine, ModuleSpec};
//! let engine = Engine::new()?;
//! let validate = std::fs::read("gridwatch_validate.wasm").unwrap_or_default();
//! let builder = engine
//!     .chain()
//!     .module(ModuleSpec::wasm("validate", validate).param("schemas", "{}"));
//! let mut chain = builder.build()?;
//! let mut batch = Batch::new();
//! batch.push(br#"{"meter_id":"m1","timestamp":1767300000000,"voltage":230.0,"current":5.0,"temperature":30.0}"#);
//! let output = chain.process_batch(&batch, 0, 1_767_300_000_000)?;
//! for record in output.iter() {
//!     println!("{} bytes", record.value.len());
//! }
//! # Ok(()) }
//! ```

mod abi;
pub mod chain;
pub mod engine;
pub mod error;
mod limits;
pub mod records;

pub use abi::TransformKind;
pub use chain::{
    Chain, ChainBuilder, ChainConfig, LookbackRequest, ModuleInfo, ModuleSource, ModuleSpec,
    Snapshot,
};
pub use engine::{CacheStats, Engine, EngineConfig};
pub use error::HostError;
pub use records::{Batch, Output, RecordIter, RecordRef};

/// The record type of `fluvio-protocol`, as chains take and give it.
pub use fluvio_smartmodule::Record;
/// A module's request for history, as Fluvio encodes it.
pub use fluvio_smartmodule::dataplane::smartmodule::Lookback;
/// The record error a module reports in its output.
pub use fluvio_smartmodule::dataplane::smartmodule::SmartModuleTransformRuntimeError;

/// The protocol version spoken with the modules (`SMARTMODULE_TIMESTAMPS_VERSION`).
pub const ABI_VERSION: i16 = abi::ABI_VERSION;
