//! Running the validate → detect SmartModule chain over batches of records.
//!
//! [`Chain`] is what a processor needs from a chain: one output record per
//! input record, in order, plus a way to warm state without output.
//!
//! - [`WasmChain`], the default: the modules on our own wasmtime host
//!   (`gridwatch-wasm-host`), which keeps Fluvio's SmartModule ABI but frees
//!   what the guest hands over, so memory stays flat however long it runs,
//!   and enforces memory and time limits.
//! - [`SmartEngineChain`]: the same modules in `fluvio-smartengine`, the
//!   engine Fluvio's SPU runs. That engine never frees the guest's output
//!   buffers, so this chain rebuilds itself before it nears the store limit
//!   and re-warms from the records of the last window (kept in a bounded
//!   ring). It is kept as the reference the host is compared against.

use std::collections::VecDeque;

use bytes::Bytes;
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance,
    SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;

use crate::backend::InRecord;

/// Why a chain could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("SmartModule {module} failed to initialise: {message}")]
    Init { module: String, message: String },
    #[error("SmartModule chain failed at offset {offset}: {message}")]
    Process { offset: u64, message: String },
    #[error(
        "SmartModule chain returned {got} records for {want} inputs; a map chain must return one per input"
    )]
    Cardinality { want: usize, got: usize },
    #[error("this chain cannot {what}")]
    Unsupported { what: &'static str },
    #[error("restoring the chain's state snapshot failed: {message}")]
    Restore { message: String },
}

/// A chain's whole state between batches, and which chain it belongs to.
///
/// The processor writes one beside each checkpoint so that recovery
/// restores state in one read instead of replaying a window of input
/// (SR-005's RTO with many meters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSnapshot {
    /// Identifies the modules and params; a snapshot only fits a chain with
    /// the same fingerprint (a hot-swap makes older snapshots useless).
    pub fingerprint: String,
    /// Opaque images, one per module for [`WasmChain`].
    pub images: Vec<Vec<u8>>,
}

impl ChainSnapshot {
    /// Bytes held, for logs and metrics.
    pub fn len(&self) -> usize {
        self.images.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A module of the chain: its name, bytes and init params.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    pub name: String,
    pub wasm: Bytes,
    pub params: Vec<(String, String)>,
}

/// What a processor needs from a chain.
pub trait Chain: Send {
    /// Processes records in offset order; returns one output per input.
    fn process(&mut self, records: &[InRecord], now_ms: i64) -> Result<Vec<Bytes>, ChainError>;

    /// Feeds records through for their effect on state only (recovery warm-up).
    fn warm(&mut self, records: &[InRecord], now_ms: i64) -> Result<(), ChainError> {
        self.process(records, now_ms).map(|_| ())
    }

    /// Returns the chain to the state it was built in. After a failed batch
    /// the processor resets the chain and rebuilds its state, then finds the
    /// record that fails alone; a chain that cannot reset stops its
    /// processor on the first failure instead.
    fn reset(&mut self) -> Result<(), ChainError> {
        Err(ChainError::Unsupported { what: "reset" })
    }

    /// The chain's state, if it can be captured; `None` when the chain has
    /// no snapshots (state is then rebuilt by replay alone).
    fn snapshot(&self) -> Option<Result<ChainSnapshot, ChainError>> {
        None
    }

    /// Puts a snapshot back. `Ok(false)` when it belongs to another chain
    /// (other modules or params) and was left alone.
    fn restore(&mut self, snapshot: &ChainSnapshot) -> Result<bool, ChainError> {
        let _ = snapshot;
        Ok(false)
    }

    /// How much state the chain holds, for the detector-state gauges; `None`
    /// when it cannot tell.
    fn state_size(&mut self) -> Option<StateSize> {
        None
    }
}

/// What [`Chain::state_size`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSize {
    /// Meters whose windows the chain holds, where its modules say.
    pub meters: Option<u64>,
    /// Bytes the state takes (a WASM chain: its modules' linear memory).
    pub bytes: u64,
}

/// A chain that returns its inputs: for when the records a processor reads
/// are already the chain's outputs (Fluvio's server-side mode, where the
/// SPU runs the SmartModules as it hands records out).
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough;

impl Chain for Passthrough {
    fn process(&mut self, records: &[InRecord], _now_ms: i64) -> Result<Vec<Bytes>, ChainError> {
        Ok(records.iter().map(|r| r.value.clone()).collect())
    }

    fn warm(&mut self, _records: &[InRecord], _now_ms: i64) -> Result<(), ChainError> {
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ChainError> {
        Ok(())
    }
}

/// The chain on Gridwatch's wasmtime host: flat memory, limits, reused buffers.
pub struct WasmChain {
    builder: gridwatch_wasm_host::ChainBuilder,
    fingerprint: String,
    chain: gridwatch_wasm_host::Chain,
    batch: gridwatch_wasm_host::Batch,
    output: gridwatch_wasm_host::Output,
}

impl std::fmt::Debug for WasmChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmChain")
            .field("memory", &self.chain.memory_size())
            .finish()
    }
}

impl WasmChain {
    /// Builds and initialises the chain; modules compile once per engine.
    pub fn new(
        engine: &gridwatch_wasm_host::Engine,
        modules: &[ModuleSpec],
    ) -> Result<Self, ChainError> {
        let mut builder = engine.chain();
        for m in modules {
            let mut spec = gridwatch_wasm_host::ModuleSpec::wasm(m.name.clone(), m.wasm.to_vec());
            for (k, v) in &m.params {
                spec = spec.param(k.clone(), v.clone());
            }
            builder = builder.module(spec);
        }
        let chain = build_host(&builder)?;
        Ok(Self {
            builder,
            fingerprint: fingerprint(modules),
            chain,
            batch: gridwatch_wasm_host::Batch::new(),
            output: gridwatch_wasm_host::Output::default(),
        })
    }

    /// Guest memory of the chain's modules, for the state-size metric.
    pub fn memory_size(&self) -> usize {
        self.chain.memory_size()
    }
}

fn build_host(
    builder: &gridwatch_wasm_host::ChainBuilder,
) -> Result<gridwatch_wasm_host::Chain, ChainError> {
    builder.build().map_err(|e| ChainError::Init {
        module: e.module().unwrap_or("chain").to_string(),
        message: e.to_string(),
    })
}

/// What makes two chains the same: module names, bytes and params, in order.
fn fingerprint(modules: &[ModuleSpec]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for m in modules {
        for part in [m.name.as_bytes(), &m.wasm] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        for (k, v) in &m.params {
            for part in [k.as_bytes(), v.as_bytes()] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
    }
    format!("xxh3-128:{:032x}", h.digest128())
}

impl Chain for WasmChain {
    fn reset(&mut self) -> Result<(), ChainError> {
        self.chain = build_host(&self.builder)?;
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<ChainSnapshot, ChainError>> {
        Some(
            self.chain
                .snapshot()
                .map(|s| ChainSnapshot {
                    fingerprint: self.fingerprint.clone(),
                    images: s.memories,
                })
                .map_err(|e| ChainError::Process {
                    offset: 0,
                    message: e.to_string(),
                }),
        )
    }

    fn state_size(&mut self) -> Option<StateSize> {
        // A module that traps answering is already broken; the next batch
        // reports that, the gauge just goes without meters.
        let meters = self.chain.state_meters().ok().flatten();
        Some(StateSize {
            meters,
            bytes: self.chain.memory_size() as u64,
        })
    }

    fn restore(&mut self, snapshot: &ChainSnapshot) -> Result<bool, ChainError> {
        if snapshot.fingerprint != self.fingerprint {
            return Ok(false);
        }
        let image = gridwatch_wasm_host::Snapshot {
            memories: snapshot.images.clone(),
        };
        if let Err(e) = self.chain.restore(&image) {
            // A half-restored chain is neither old nor new state.
            self.reset()?;
            return Err(ChainError::Restore {
                message: e.to_string(),
            });
        }
        Ok(true)
    }

    fn process(&mut self, records: &[InRecord], now_ms: i64) -> Result<Vec<Bytes>, ChainError> {
        let Some(first) = records.first() else {
            return Ok(Vec::new());
        };
        let base = first.offset;
        self.batch.clear();
        for r in records {
            // Offsets are not always ascending within a batch (a replay hands
            // over readings from several partitions); a wrapping delta would
            // panic in debug builds, so the delta is signed.
            let delta = (r.offset as i64).wrapping_sub(base as i64);
            self.batch.push_record(r.key.as_deref(), &r.value, delta, 0);
        }
        self.chain
            .process_batch_into(&self.batch, base as i64, now_ms, &mut self.output)
            .map_err(|e| ChainError::Process {
                offset: base,
                message: e.to_string(),
            })?;
        if let Some((module, err)) = self.output.error() {
            return Err(ChainError::Process {
                offset: base,
                message: format!("{module}: {err:?}"),
            });
        }
        if self.output.len() != records.len() {
            return Err(ChainError::Cardinality {
                want: records.len(),
                got: self.output.len(),
            });
        }
        // One copy of the whole output, which every record's value slices:
        // a reference count per record instead of an allocation and a copy.
        let encoded = self.output.encoded();
        let shared = Bytes::copy_from_slice(encoded);
        let base = encoded.as_ptr() as usize;
        Ok(self
            .output
            .iter()
            .map(|r| {
                let at = r.value.as_ptr() as usize - base;
                shared.slice(at..at + r.value.len())
            })
            .collect())
    }
}

/// The chain hosted in `fluvio-smartengine`, rebuilt before it leaks too far.
pub struct SmartEngineChain {
    engine: SmartEngine,
    modules: Vec<ModuleSpec>,
    instance: SmartModuleChainInstance,
    since_build: u64,
    rebuild_after: u64,
    /// Recent inputs, replayed into a rebuilt chain to restore its state.
    recent: VecDeque<InRecord>,
    recent_window_ms: i64,
    /// How many rebuilds happened; exported as a metric.
    pub rebuilds: u64,
}

impl std::fmt::Debug for SmartEngineChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartEngineChain")
            .field(
                "modules",
                &self.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .field("since_build", &self.since_build)
            .finish()
    }
}

/// Records through one engine chain before it is rebuilt: about 170 bytes
/// leak per record, so 2M records stay far below the 1 GiB store limit.
pub const DEFAULT_REBUILD_AFTER: u64 = 2_000_000;

impl SmartEngineChain {
    /// Builds and initialises the chain; init errors name the module.
    pub fn new(modules: Vec<ModuleSpec>, recent_window_ms: i64) -> Result<Self, ChainError> {
        let engine = SmartEngine::new();
        let instance = build(&engine, &modules)?;
        Ok(Self {
            engine,
            modules,
            instance,
            since_build: 0,
            rebuild_after: DEFAULT_REBUILD_AFTER,
            recent: VecDeque::new(),
            recent_window_ms,
            rebuilds: 0,
        })
    }

    /// Lowers the rebuild threshold (tests exercise the rebuild path with it).
    pub fn with_rebuild_after(mut self, records: u64) -> Self {
        self.rebuild_after = records.max(1);
        self
    }

    fn run(&mut self, records: &[InRecord], now_ms: i64) -> Result<Vec<Bytes>, ChainError> {
        let Some(first) = records.first() else {
            return Ok(Vec::new());
        };
        let base = first.offset;
        let batch: Vec<Record> = records
            .iter()
            .map(|r| {
                let mut rec = Record::new(r.value.to_vec());
                rec.preamble.set_offset_delta((r.offset - base) as i64);
                if let Some(key) = &r.key {
                    rec.key = Some(key.to_vec().into());
                }
                rec
            })
            .collect();
        let mut input = SmartModuleInput::try_from_records(batch, DEFAULT_SMARTENGINE_VERSION)
            .map_err(|e| ChainError::Process {
                offset: base,
                message: e.to_string(),
            })?;
        input.set_base_offset(base as i64);
        input.set_base_timestamp(now_ms);
        let output = self
            .instance
            .process(input)
            .map_err(|e| ChainError::Process {
                offset: base,
                message: format!("{e:#}"),
            })?;
        if let Some(err) = output.error {
            return Err(ChainError::Process {
                offset: base,
                message: format!("{err:?}"),
            });
        }
        if output.successes.len() != records.len() {
            return Err(ChainError::Cardinality {
                want: records.len(),
                got: output.successes.len(),
            });
        }
        self.since_build += records.len() as u64;
        Ok(output
            .successes
            .into_iter()
            .map(|r| Bytes::from(r.value.as_ref().to_vec()))
            .collect())
    }

    fn remember(&mut self, records: &[InRecord]) {
        self.recent.extend(records.iter().cloned());
        if let Some(newest) = self.recent.back().map(|r| r.timestamp_ms) {
            let cutoff = newest - self.recent_window_ms;
            while self.recent.front().is_some_and(|r| r.timestamp_ms < cutoff) {
                self.recent.pop_front();
            }
        }
    }

    fn rebuild(&mut self, now_ms: i64) -> Result<(), ChainError> {
        self.instance = build(&self.engine, &self.modules)?;
        self.since_build = 0;
        self.rebuilds += 1;
        let recent: Vec<InRecord> = self.recent.iter().cloned().collect();
        for chunk in recent.chunks(10_000) {
            self.run(chunk, now_ms)?;
        }
        tracing::info!(
            replayed = recent.len(),
            rebuilds = self.rebuilds,
            "SmartModule chain rebuilt and re-warmed."
        );
        Ok(())
    }
}

impl Chain for SmartEngineChain {
    fn reset(&mut self) -> Result<(), ChainError> {
        self.instance = build(&self.engine, &self.modules)?;
        self.since_build = 0;
        self.recent.clear();
        Ok(())
    }

    fn process(&mut self, records: &[InRecord], now_ms: i64) -> Result<Vec<Bytes>, ChainError> {
        if self.since_build >= self.rebuild_after {
            self.rebuild(now_ms)?;
        }
        let out = self.run(records, now_ms)?;
        self.remember(records);
        Ok(out)
    }
}

fn build(
    engine: &SmartEngine,
    modules: &[ModuleSpec],
) -> Result<SmartModuleChainInstance, ChainError> {
    let mut builder = SmartModuleChainBuilder::default();
    for m in modules {
        let mut config = SmartModuleConfig::builder();
        config.smartmodule_names(vec![m.name.clone()]);
        for (k, v) in &m.params {
            config.param(k.clone(), v.clone());
        }
        let config = config.build().map_err(|e| ChainError::Init {
            module: m.name.clone(),
            message: e.to_string(),
        })?;
        builder.add_smart_module(config, m.wasm.to_vec());
    }
    builder.initialize(engine).map_err(|e| ChainError::Init {
        module: modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
        message: format!("{e:#}"),
    })
}
