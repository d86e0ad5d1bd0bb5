//! Chains of SmartModules sharing one store, and their builder.
//!
//! A chain runs a batch through its modules in order, each module's output
//! records being the next one's input, with the batch's base offset and
//! timestamp kept for every module, as `fluvio-smartengine` does. All modules
//! of a chain live in one wasmtime store, so the memory limit is the chain's.
//!
//! After a trap, a deadline or a memory-limit fault a guest's state is
//! undefined (a Rust module may have died holding a lock or mid-update), so
//! the chain answers every later call with [`HostError::Poisoned`]. The
//! builder stays usable: `build()` again gives a fresh chain, and the engine's
//! cache makes that an instantiation, not a compilation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::Lookback;
use wasmtime::{Linker, Module, Store};

use crate::abi::{Guest, HostState, InputFrame, TransformKind, link_copy_records};
use crate::engine::Engine;
use crate::error::HostError;
use crate::limits::GuestLimiter;
use crate::records::{Batch, Output};

/// Limits and options of a chain. The defaults suit Gridwatch's modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// Linear memory all modules of the chain may hold together, in bytes.
    /// Growing past it traps the module that asked.
    pub memory_limit: usize,
    /// Wall time one call may take: a whole batch through all modules, one
    /// `init`, one `look_back`. Past it the running module is interrupted.
    /// The engine's epoch tick is the resolution.
    pub call_timeout: Duration,
    /// Whether the modules' stdout and stderr go to the host's, as in a
    /// Fluvio SPU. Off, their output is discarded.
    pub inherit_stdio: bool,
}

impl ChainConfig {
    /// Refuses limits under which no module could run.
    pub fn validate(&self) -> Result<(), HostError> {
        if self.memory_limit < WASM_PAGE {
            return Err(HostError::Config {
                key: "memory_limit",
                value: self.memory_limit.to_string(),
                allowed: "at least one WebAssembly page (65536 bytes)",
            });
        }
        if self.call_timeout.is_zero() {
            return Err(HostError::Config {
                key: "call_timeout",
                value: format!("{:?}", self.call_timeout),
                allowed: "more than zero",
            });
        }
        Ok(())
    }
}

pub(crate) const WASM_PAGE: usize = 65_536;

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            memory_limit: default_memory_limit(),
            call_timeout: default_call_timeout(),
            inherit_stdio: true,
        }
    }
}

fn default_memory_limit() -> usize {
    512 * 1024 * 1024
}

fn default_call_timeout() -> Duration {
    Duration::from_secs(1)
}

/// Where a module's code comes from.
#[derive(Clone)]
pub enum ModuleSource {
    /// WebAssembly bytes, compiled (once) by the engine.
    Wasm(Arc<[u8]>),
    /// A module already compiled by this host's engine.
    Compiled(Module),
}

impl fmt::Debug for ModuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wasm(bytes) => write!(f, "Wasm({} bytes)", bytes.len()),
            Self::Compiled(_) => write!(f, "Compiled"),
        }
    }
}

/// One module of a chain: its code, name, `init` params and lookback.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    pub name: String,
    pub source: ModuleSource,
    pub params: BTreeMap<String, String>,
    /// The history the module asks for at start; only used by
    /// [`Chain::look_back_with`], and only if the module exports `look_back`.
    pub lookback: Option<Lookback>,
}

impl ModuleSpec {
    pub fn wasm(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::new(name, ModuleSource::Wasm(bytes.into()))
    }

    pub fn compiled(name: impl Into<String>, module: Module) -> Self {
        Self::new(name, ModuleSource::Compiled(module))
    }

    fn new(name: impl Into<String>, source: ModuleSource) -> Self {
        Self {
            name: name.into(),
            source,
            params: BTreeMap::new(),
            lookback: None,
        }
    }

    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    pub fn params(mut self, params: BTreeMap<String, String>) -> Self {
        self.params = params;
        self
    }

    pub fn lookback(mut self, lookback: Lookback) -> Self {
        self.lookback = Some(lookback);
        self
    }
}

/// Collects modules and limits; `build` can be called any number of times.
#[derive(Debug, Clone)]
pub struct ChainBuilder {
    engine: Engine,
    config: ChainConfig,
    modules: Vec<ModuleSpec>,
}

impl ChainBuilder {
    pub fn new(engine: &Engine) -> Self {
        Self {
            engine: engine.clone(),
            config: ChainConfig::default(),
            modules: Vec::new(),
        }
    }

    pub fn with_config(mut self, config: ChainConfig) -> Self {
        self.config = config;
        self
    }

    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.config.memory_limit = bytes;
        self
    }

    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    pub fn inherit_stdio(mut self, inherit: bool) -> Self {
        self.config.inherit_stdio = inherit;
        self
    }

    /// Appends a module; records flow through modules in the order added.
    pub fn module(mut self, spec: ModuleSpec) -> Self {
        self.modules.push(spec);
        self
    }

    pub fn add_module(&mut self, spec: ModuleSpec) -> &mut Self {
        self.modules.push(spec);
        self
    }

    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The modules, e.g. to swap one in place before the next `build`.
    pub fn modules_mut(&mut self) -> &mut Vec<ModuleSpec> {
        &mut self.modules
    }

    /// Compiles (or takes from the cache), instantiates and initialises
    /// every module, in order. An `init` that rejects its params fails the
    /// build with the module's own message.
    pub fn build(&self) -> Result<Chain, HostError> {
        self.config.validate()?;
        let wasm = self.engine.wasmtime();
        let timeout = self.config.call_timeout;
        let mut store = Store::new(
            wasm,
            HostState {
                wasi: wasi_ctx(self.config.inherit_stdio),
                limiter: GuestLimiter::new(self.config.memory_limit),
                handoff: None,
                timeout,
            },
        );
        store.limiter(|state| &mut state.limiter);
        let deadline_ticks = deadline_ticks(timeout, self.engine.epoch_tick());

        let mut linker = Linker::new(wasm);
        linker.allow_shadowing(true);
        wasi_common::sync::add_to_linker(&mut linker, |state: &mut HostState| &mut state.wasi)
            .map_err(|e| HostError::Engine {
                reason: format!("linking WASI: {e:#}"),
            })?;

        let mut guests = Vec::with_capacity(self.modules.len());
        for spec in &self.modules {
            let module = match &spec.source {
                ModuleSource::Wasm(bytes) => self.engine.compile(&spec.name, bytes)?,
                ModuleSource::Compiled(module) => {
                    if !wasmtime::Engine::same(module.engine(), wasm) {
                        return Err(HostError::ForeignModule {
                            module: spec.name.clone(),
                        });
                    }
                    module.clone()
                }
            };
            link_copy_records(&mut linker, &module, &spec.name)?;
            store.set_epoch_deadline(deadline_ticks);
            let guest = Guest::instantiate(
                &mut store,
                &linker,
                &module,
                &spec.name,
                spec.lookback.clone(),
            )?;
            store.set_epoch_deadline(deadline_ticks);
            guest.init(&mut store, &spec.params)?;
            guests.push(guest);
        }
        Ok(Chain {
            engine: self.engine.clone(),
            store,
            guests,
            deadline_ticks,
            frame: InputFrame::default(),
            relay: Vec::new(),
            spare: Vec::new(),
            input: Batch::new(),
            poisoned: None,
        })
    }
}

fn wasi_ctx(inherit_stdio: bool) -> wasi_common::WasiCtx {
    let mut builder = wasi_common::sync::WasiCtxBuilder::new();
    if inherit_stdio {
        builder.inherit_stdout().inherit_stderr();
    }
    builder.build()
}

/// Ticks to wait so that at least `timeout` passes: the first tick can come
/// at once, so one more than the quotient.
fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(ticks)
        .unwrap_or(u64::MAX / 2)
        .saturating_add(1)
}

/// A module of a chain, as the chain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo<'a> {
    pub name: &'a str,
    pub kind: TransformKind,
    /// Its linear memory now, in bytes.
    pub memory_bytes: usize,
    /// Whether it exports `look_back`.
    pub has_look_back: bool,
    pub lookback: Option<&'a Lookback>,
}

/// A module's request for history, for [`Chain::look_back_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookbackRequest {
    /// The module's position in the chain.
    pub index: usize,
    pub module: String,
    pub lookback: Lookback,
}

/// The linear memories of a chain's modules, in chain order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub memories: Vec<Vec<u8>>,
}

/// Initialised modules, ready to process batches.
pub struct Chain {
    /// Keeps the epoch ticker running as long as the chain lives.
    engine: Engine,
    store: Store<HostState>,
    guests: Vec<Guest>,
    deadline_ticks: u64,
    frame: InputFrame,
    /// Buffers carrying records from one module to the next, kept between
    /// batches so that a steady stream allocates nothing.
    relay: Vec<u8>,
    spare: Vec<u8>,
    /// Reused by [`Chain::process`] to encode its records.
    input: Batch,
    /// The module whose fault poisoned the chain.
    poisoned: Option<String>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("engine", &self.engine)
            .field("modules", &self.modules().collect::<Vec<_>>())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Runs `fluvio-protocol` records through the chain. The records are
    /// encoded into a buffer the chain keeps.
    pub fn process(
        &mut self,
        records: &[Record],
        base_offset: i64,
        base_timestamp: i64,
    ) -> Result<Output, HostError> {
        let mut input = std::mem::take(&mut self.input);
        input.clear();
        let result = input
            .extend_from_records(records)
            .and_then(|()| self.process_batch(&input, base_offset, base_timestamp));
        self.input = input;
        result
    }

    /// Runs an encoded batch through the chain.
    pub fn process_batch(
        &mut self,
        batch: &Batch,
        base_offset: i64,
        base_timestamp: i64,
    ) -> Result<Output, HostError> {
        let mut out = Output::default();
        self.process_batch_into(batch, base_offset, base_timestamp, &mut out)?;
        Ok(out)
    }

    /// Runs an encoded batch through the chain into `out`, reusing its buffer.
    pub fn process_batch_into(
        &mut self,
        batch: &Batch,
        base_offset: i64,
        base_timestamp: i64,
        out: &mut Output,
    ) -> Result<(), HostError> {
        self.check_usable()?;
        out.reset(base_offset, base_timestamp);
        let Some(last) = self.guests.len().checked_sub(1) else {
            out.buf.clear();
            out.buf.extend_from_slice(batch.encoded());
            out.count = batch.len();
            return Ok(());
        };
        self.frame.set(base_offset, base_timestamp)?;
        self.store.set_epoch_deadline(self.deadline_ticks);
        let mut input_buf = std::mem::take(&mut self.relay);
        let mut output_buf = std::mem::take(&mut self.spare);
        let mut result = Ok(());
        for (i, guest) in self.guests.iter().enumerate() {
            let input: &[u8] = if i == 0 { batch.encoded() } else { &input_buf };
            let dest = if i == last {
                &mut out.buf
            } else {
                &mut output_buf
            };
            match guest.transform(&mut self.store, &self.frame, input, dest) {
                Ok(step) => {
                    if let Some(error) = step.error {
                        // Like smartengine: stop, and return this module's
                        // records with its error.
                        if i != last {
                            out.buf.clear();
                            out.buf.extend_from_slice(&output_buf);
                        }
                        out.count = step.count;
                        out.error = Some((guest.name.clone(), error));
                        break;
                    }
                    out.count = step.count;
                    std::mem::swap(&mut input_buf, &mut output_buf);
                }
                Err(e) => {
                    if e.poisons_chain() {
                        self.poisoned = Some(guest.name.clone());
                    }
                    result = Err(e);
                    break;
                }
            }
        }
        self.relay = input_buf;
        self.spare = output_buf;
        if result.is_err() {
            out.reset(base_offset, base_timestamp);
        }
        result
    }

    /// The modules that asked for history and can take it: a lookback in
    /// their spec and a `look_back` export.
    pub fn lookbacks(&self) -> Vec<LookbackRequest> {
        self.guests
            .iter()
            .enumerate()
            .filter(|(_, g)| g.has_look_back())
            .filter_map(|(index, g)| {
                g.lookback.clone().map(|lookback| LookbackRequest {
                    index,
                    module: g.name.clone(),
                    lookback,
                })
            })
            .collect()
    }

    /// Feeds history to module `index`'s `look_back`, as smartengine does:
    /// base offset and timestamp 0, so the records' deltas are their
    /// positions. A module without `look_back` ignores it.
    pub fn look_back(&mut self, index: usize, records: &[Record]) -> Result<(), HostError> {
        let batch = Batch::from_records(records)?;
        self.look_back_batch(index, &batch, 0, 0)
    }

    /// Feeds an encoded batch of history to module `index`'s `look_back`.
    pub fn look_back_batch(
        &mut self,
        index: usize,
        batch: &Batch,
        base_offset: i64,
        base_timestamp: i64,
    ) -> Result<(), HostError> {
        self.check_usable()?;
        let Some(guest) = self.guests.get(index) else {
            return Err(HostError::NoSuchModule {
                index,
                len: self.guests.len(),
            });
        };
        self.frame.set(base_offset, base_timestamp)?;
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = guest.look_back(&mut self.store, &self.frame, batch.encoded());
        if let Err(e) = &result
            && e.poisons_chain()
        {
            self.poisoned = Some(guest.name.clone());
        }
        result
    }

    /// Warms every module that asked for history, in chain order, with the
    /// records `read` returns for its request (smartengine's `look_back`).
    pub fn look_back_with<F, E>(&mut self, mut read: F) -> Result<(), HostError>
    where
        F: FnMut(&LookbackRequest) -> Result<Vec<Record>, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        for request in self.lookbacks() {
            let records = read(&request).map_err(|e| HostError::LookBackRead {
                module: request.module.clone(),
                source: e.into(),
            })?;
            self.look_back(request.index, &records)?;
        }
        Ok(())
    }

    /// The modules in chain order.
    pub fn modules(&self) -> impl Iterator<Item = ModuleInfo<'_>> {
        self.guests.iter().map(|g| ModuleInfo {
            name: &g.name,
            kind: g.kind,
            memory_bytes: g.memory_size(&self.store),
            has_look_back: g.has_look_back(),
            lookback: g.lookback.as_ref(),
        })
    }

    /// Linear memory of all modules, in bytes: what the memory limit bounds.
    pub fn memory_size(&self) -> usize {
        self.guests.iter().map(|g| g.memory_size(&self.store)).sum()
    }

    /// Meters the modules hold state for, summed over those that export
    /// `gridwatch_state_meters`; `None` when none does.
    pub fn state_meters(&mut self) -> Result<Option<u64>, HostError> {
        self.check_usable()?;
        self.store.set_epoch_deadline(self.deadline_ticks);
        let mut total = None;
        for guest in &self.guests {
            if let Some(meters) = guest.state_meters(&mut self.store) {
                *total.get_or_insert(0) += meters?;
            }
        }
        Ok(total)
    }

    /// Copies every module's linear memory: the whole state of a chain
    /// between calls. Data, heap and globals the compiler placed in memory
    /// are in it; the one mutable wasm global a Rust module has, its stack
    /// pointer, is back at its base whenever no call is running. Restoring
    /// the image into a chain built from the same modules and params
    /// ([`Chain::restore`]) gives a chain that behaves exactly like this one.
    pub fn snapshot(&self) -> Result<Snapshot, HostError> {
        self.check_usable()?;
        Ok(Snapshot {
            memories: self
                .guests
                .iter()
                .map(|g| g.memory_data(&self.store).to_vec())
                .collect(),
        })
    }

    /// Puts a [`Chain::snapshot`] taken from a chain of the same modules
    /// back. The caller keeps snapshots and modules together (a module
    /// swapped in since makes a snapshot meaningless).
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<(), HostError> {
        self.check_usable()?;
        if snapshot.memories.len() != self.guests.len() {
            return Err(HostError::Snapshot {
                module: "chain".to_string(),
                reason: format!(
                    "it holds {} modules, the chain has {}",
                    snapshot.memories.len(),
                    self.guests.len()
                ),
            });
        }
        for (guest, image) in self.guests.iter().zip(&snapshot.memories) {
            guest.restore_memory(&mut self.store, image)?;
        }
        Ok(())
    }

    /// The module whose fault stopped the chain, if one did.
    pub fn poisoned_by(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn check_usable(&self) -> Result<(), HostError> {
        match &self.poisoned {
            Some(module) => Err(HostError::Poisoned {
                module: module.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_engines_can_move_between_threads() {
        fn send<T: Send>() {}
        fn sync<T: Send + Sync>() {}
        send::<Chain>();
        sync::<Engine>();
        send::<HostError>();
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        let config = ChainConfig {
            memory_limit: 1000,
            ..ChainConfig::default()
        };
        let err = config.validate().expect_err("too small");
        assert_eq!(
            err.to_string(),
            "memory_limit = 1000 is not allowed: at least one WebAssembly page (65536 bytes)"
        );
        let config = ChainConfig {
            call_timeout: Duration::ZERO,
            ..ChainConfig::default()
        };
        assert_eq!(
            config.validate().expect_err("zero").to_string(),
            "call_timeout = 0ns is not allowed: more than zero"
        );
        ChainConfig::default().validate().expect("defaults work");
    }

    #[test]
    fn deadlines_never_come_early() {
        let tick = Duration::from_millis(10);
        assert_eq!(deadline_ticks(Duration::from_secs(1), tick), 101);
        assert_eq!(deadline_ticks(Duration::from_millis(15), tick), 3);
        assert_eq!(deadline_ticks(Duration::ZERO, tick), 1);
    }
}
