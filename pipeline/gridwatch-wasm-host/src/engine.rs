//! The shared wasmtime engine: compiled-module cache and epoch ticker.
//!
//! Compiling a SmartModule takes far longer than instantiating it, so the
//! engine keeps compiled modules by content hash: rebuilding a chain after a
//! fault, or hot-swapping one module, only compiles what changed.
//!
//! Deadlines use epoch interruption rather than fuel: the generated code
//! only compares a counter at loop heads and function entries, where fuel
//! accounting adds work to every basic block. A ticker thread advances the
//! epoch; a chain keeps its engine (and so the ticker) alive.

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Module;
use xxhash_rust::xxh3::xxh3_128;

use crate::chain::ChainBuilder;
use crate::error::HostError;

/// How the engine is set up. The defaults suit Gridwatch's chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How often the epoch advances; the resolution of every deadline.
    pub epoch_tick: Duration,
    /// How many distinct compiled modules the cache keeps; the least
    /// recently used goes first.
    pub module_cache_capacity: usize,
    /// A directory where compiled modules are kept across restarts
    /// (wasmtime's own cache, keyed by module bytes, engine settings and
    /// wasmtime version), so a restart instantiates instead of compiling.
    /// `None` compiles on every start.
    pub disk_cache: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick: default_epoch_tick(),
            module_cache_capacity: default_module_cache_capacity(),
            disk_cache: None,
        }
    }
}

fn default_epoch_tick() -> Duration {
    Duration::from_millis(10)
}

fn default_module_cache_capacity() -> usize {
    32
}

/// wasmtime's compiled-module cache in `dir`.
fn disk_cache(dir: &std::path::Path) -> Result<wasmtime::Cache, HostError> {
    let fail = |e: String| HostError::Engine {
        reason: format!("module cache in {}: {e}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let dir = dir.canonicalize().map_err(|e| fail(e.to_string()))?;
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(dir.join("modules"));
    wasmtime::Cache::new(config).map_err(|e| fail(format!("{e:#}")))
}

/// Counters of the module cache, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub compiled: u64,
    pub hits: u64,
    pub cached: usize,
}

/// A wasmtime engine set up for SmartModules, with its module cache and
/// epoch ticker. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasm: wasmtime::Engine,
    config: EngineConfig,
    cache: Mutex<Cache>,
    _ticker: Ticker,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with the default config.
    pub fn new() -> Result<Self, HostError> {
        Self::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Result<Self, HostError> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config.epoch_interruption(true);
        // `GRIDWATCH_WASM_PERFMAP=1` names the modules' compiled functions
        // in /tmp/perf-<pid>.map, so `perf report` attributes guest time.
        if std::env::var_os("GRIDWATCH_WASM_PERFMAP").is_some_and(|v| v == "1") {
            wasm_config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = &config.disk_cache {
            wasm_config.cache(Some(disk_cache(dir)?));
        }
        let wasm = wasmtime::Engine::new(&wasm_config).map_err(|e| HostError::Engine {
            reason: format!("{e:#}"),
        })?;
        let ticker = Ticker::start(
            wasm.clone(),
            config.epoch_tick.max(Duration::from_millis(1)),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                wasm,
                cache: Mutex::new(Cache::new(config.module_cache_capacity)),
                config,
                _ticker: ticker,
            }),
        })
    }

    /// A builder for a chain on this engine.
    pub fn chain(&self) -> ChainBuilder {
        ChainBuilder::new(self)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The underlying wasmtime engine, e.g. to precompile modules.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasm
    }

    /// Compiles `wasm` (binary, or text through wasmtime's `wat` support),
    /// or returns the cached module for the same bytes. `name` only labels
    /// errors.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<Module, HostError> {
        let hash = xxh3_128(wasm);
        if let Some(module) = self.cache().get(hash, wasm) {
            return Ok(module);
        }
        // Compile outside the lock: it takes long, and other chains may be
        // building from modules that are already cached.
        let module = Module::new(&self.inner.wasm, wasm).map_err(|e| HostError::Compile {
            module: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        self.cache().insert(hash, wasm, module.clone());
        Ok(module)
    }

    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache();
        CacheStats {
            compiled: cache.compiled,
            hits: cache.hits,
            cached: cache.entries.len(),
        }
    }

    pub(crate) fn epoch_tick(&self) -> Duration {
        self.inner.config.epoch_tick.max(Duration::from_millis(1))
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic elsewhere could break.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Compiled modules by content hash. The bytes are kept and compared on a
/// hit, because xxh3 is fast but not collision-resistant, and running the
/// wrong code is not a risk worth a memcmp.
struct Cache {
    entries: HashMap<u128, CacheEntry>,
    capacity: usize,
    clock: u64,
    compiled: u64,
    hits: u64,
}

struct CacheEntry {
    bytes: Box<[u8]>,
    module: Module,
    last_used: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            clock: 0,
            compiled: 0,
            hits: 0,
        }
    }

    fn get(&mut self, hash: u128, wasm: &[u8]) -> Option<Module> {
        self.clock += 1;
        let entry = self.entries.get_mut(&hash)?;
        if *entry.bytes != *wasm {
            return None;
        }
        entry.last_used = self.clock;
        self.hits += 1;
        Some(entry.module.clone())
    }

    fn insert(&mut self, hash: u128, wasm: &[u8], module: Module) {
        self.compiled += 1;
        if self.capacity == 0 {
            return;
        }
        if self.entries.get(&hash).is_some_and(|e| *e.bytes != *wasm) {
            // A hash collision: keep the first, compile the other each time.
            return;
        }
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&hash) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(h, _)| *h);
            match oldest {
                Some(h) => self.entries.remove(&h),
                None => break,
            };
        }
        self.clock += 1;
        self.entries.insert(
            hash,
            CacheEntry {
                bytes: wasm.into(),
                module,
                last_used: self.clock,
            },
        );
    }
}

/// The thread that advances the epoch. Dropping it closes the channel, which
/// wakes and ends the thread at once.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> Result<Self, HostError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("gridwatch-wasm-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|source| HostError::Ticker { source })?;
        Ok(Self {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "(module)";

    #[test]
    fn the_same_bytes_compile_once_and_the_cache_is_bounded() {
        let engine = Engine::with_config(EngineConfig {
            module_cache_capacity: 2,
            ..EngineConfig::default()
        })
        .expect("engine");
        engine.compile("a", EMPTY.as_bytes()).expect("compile");
        engine.compile("a", EMPTY.as_bytes()).expect("compile");
        assert_eq!(
            engine.cache_stats(),
            CacheStats {
                compiled: 1,
                hits: 1,
                cached: 1
            }
        );
        for text in ["(module (memory 1))", "(module (memory 2))", EMPTY] {
            engine.compile("b", text.as_bytes()).expect("compile");
        }
        let stats = engine.cache_stats();
        assert_eq!((stats.compiled, stats.cached), (4, 2));
        let err = engine.compile("junk", b"\0asm junk").expect_err("not wasm");
        assert!(matches!(err, HostError::Compile { ref module, .. } if module == "junk"));
    }

    #[test]
    fn the_disk_cache_keeps_compiled_modules_for_the_next_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EngineConfig {
            disk_cache: Some(dir.path().join("compiled")),
            ..EngineConfig::default()
        };
        let files = |root: &std::path::Path| -> usize {
            fn walk(p: &std::path::Path) -> usize {
                std::fs::read_dir(p).map_or(0, |rd| {
                    rd.flatten()
                        .map(|e| {
                            let path = e.path();
                            if path.is_dir() { walk(&path) } else { 1 }
                        })
                        .sum()
                })
            }
            walk(&root.join("compiled/modules"))
        };
        let wat = "(module (func (export \"f\") (result i32) i32.const 7))";
        let first = Engine::with_config(config.clone()).expect("engine");
        first.compile("m", wat.as_bytes()).expect("compile");
        assert!(files(dir.path()) >= 1, "the compiled module is on disk");
        drop(first);
        let second = Engine::with_config(config).expect("engine");
        second
            .compile("m", wat.as_bytes())
            .expect("from the disk cache");
    }
}
