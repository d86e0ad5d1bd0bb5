//! Hot-swapping SmartModules in a running pipeline.
//!
//! A swap starts from the admin API (`PUT /api/v1/modules/{name}`, which
//! `gridwatch modules swap` calls) or from a file dropped into the watched
//! directory. Whatever the trigger, the same steps run:
//!
//! 1. The new module is validated: it compiles, and a chain with it
//!    initialises with the current params. A module that fails is rejected
//!    and the old one keeps running.
//! 2. Every partition's processor warms a chain with the new module over its
//!    state window, then switches between two batches, so no reading is lost
//!    or scored twice.
//! 3. The module is saved as the active one under the data directory, so a
//!    restart keeps it.
//!
//! In Fluvio's server-side mode step 2 differs: the module is registered
//! with the cluster under a new version, and every partition's SPU chain
//! reopens with it at the next offset to process, warming through
//! `look_back`.
//!
//! Every swap is logged and counted (`gridwatch_hot_swaps_total{module,outcome}`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gridwatch_runtime::chain::{ModuleSpec, WasmChain};
use gridwatch_runtime::metrics::Metrics;
use gridwatch_runtime::pipeline::{PipelineHandle, boxed};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::sync::watch;

use crate::modules;

/// A module as the admin API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModuleInfo {
    /// `validate` or `detect`.
    pub name: String,
    /// The SmartModule name it runs under (`gridwatch-detect`).
    pub smartmodule: String,
    /// 1 at start, +1 per successful swap.
    pub version: u32,
    /// SHA-256 of the `.wasm`, hex.
    pub sha256: String,
    pub size_bytes: usize,
    /// `wasm` (a file run on Gridwatch's host) or `fluvio` (registered
    /// with the cluster, run in the SPU).
    pub kind: &'static str,
    /// Where it came from: a path, `admin-api` or `watch:<file>`.
    pub source: String,
    /// When it took over, epoch ms.
    pub loaded_at_ms: i64,
}

/// What a successful swap did.
#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    pub module: ModuleInfo,
    /// Records each partition replayed to warm the new module.
    pub warmed: Vec<(u32, usize)>,
    pub took_ms: u64,
}

/// Why a swap did not happen; the old module is still running.
#[derive(Debug, thiserror::Error)]
pub enum SwapRejected {
    #[error("unknown module {0:?}; the swappable modules are `validate` and `detect`")]
    UnknownModule(String),
    #[error("module {name} rejected: {message}")]
    Invalid { name: String, message: String },
    #[error("swap of {name} failed: {message}")]
    Failed { name: String, message: String },
}

struct Slot {
    info: ModuleInfo,
    spec: ModuleSpec,
}

/// Server-side mode: where swapped modules are registered and run.
pub struct ServerSide {
    pub backend: gridwatch_backend_fluvio::ServerChainBackend,
    pub fluvio: gridwatch_backend_fluvio::FluvioBackend,
    /// `SmartModule.toml` of validate and detect, in chain order.
    pub metadata: [PathBuf; 2],
}

/// Owns the running chain's modules and performs swaps one at a time.
pub struct ModuleManager {
    engine: gridwatch_wasm_host::Engine,
    pipeline: PipelineHandle,
    server: Option<ServerSide>,
    /// Why swaps are refused, when they are.
    refused: Option<String>,
    metrics: Metrics,
    active_dir: PathBuf,
    slots: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for ModuleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleManager")
            .field("active_dir", &self.active_dir)
            .finish_non_exhaustive()
    }
}

/// The short name of a module (`detect`) from what users type.
pub fn short_name(name: &str) -> Option<&'static str> {
    match name.trim_end_matches(".wasm") {
        "detect" | "gridwatch-detect" | "gridwatch_detect" => Some("detect"),
        "validate" | "gridwatch-validate" | "gridwatch_validate" => Some("validate"),
        _ => None,
    }
}

fn file_of(short: &str) -> &'static str {
    if short == "detect" {
        modules::DETECT
    } else {
        modules::VALIDATE
    }
}

/// Hex SHA-256 of a module.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    gridwatch_runtime::processor::now_ms()
}

impl ModuleManager {
    /// `specs` are the running chain's modules, in order (validate, detect),
    /// with the sources they were loaded from.
    pub fn new(
        engine: gridwatch_wasm_host::Engine,
        pipeline: PipelineHandle,
        metrics: Metrics,
        active_dir: PathBuf,
        specs: Vec<(ModuleSpec, String)>,
    ) -> Self {
        let slots = specs
            .into_iter()
            .map(|(spec, source)| Slot {
                info: ModuleInfo {
                    name: spec.name.trim_start_matches("gridwatch-").to_owned(),
                    smartmodule: spec.name.clone(),
                    version: 1,
                    sha256: sha256_hex(&spec.wasm),
                    size_bytes: spec.wasm.len(),
                    kind: "wasm",
                    source,
                    loaded_at_ms: now_ms(),
                },
                spec,
            })
            .collect();
        Self {
            engine,
            pipeline,
            server: None,
            refused: None,
            metrics,
            active_dir,
            slots: Mutex::new(slots),
        }
    }

    /// Refuses every swap with `reason` (the chain runs somewhere this
    /// manager cannot reach).
    pub fn refuse_swaps(mut self, reason: String) -> Self {
        self.refused = Some(reason);
        self
    }

    /// Swaps go to the SPU chain instead of in-process chains.
    pub fn with_server_side(mut self, server: ServerSide) -> Self {
        for slot in self.slots.get_mut() {
            slot.info.kind = "fluvio";
        }
        self.server = Some(server);
        self
    }

    /// Registers `wasm` under a new version and reopens every SPU chain
    /// with it; returns the partitions switched.
    async fn swap_server_side(
        server: &ServerSide,
        index: usize,
        wasm: &[u8],
        version: u32,
    ) -> Result<Vec<(u32, usize)>, String> {
        use gridwatch_backend_fluvio::ModuleSource;
        use gridwatch_backend_fluvio::modules::{read_metadata, register_smartmodule_bytes};
        let mut meta = read_metadata(&ModuleSource::new("", &server.metadata[index]))
            .map_err(|e| e.to_string())?;
        // A version no earlier swap used: major.minor of the package, the
        // swap's wall-clock second as patch.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = meta.package.version.to_string();
        let mut parts = base.split('.');
        let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
        let v = format!("{major}.{minor}.{now}{version:03}");
        meta.package.version =
            gridwatch_backend_fluvio::modules::parse_version(&v).map_err(|e| e.to_string())?;
        let registered = register_smartmodule_bytes(server.fluvio.admin(), meta, wasm)
            .await
            .map_err(|e| e.to_string())?;
        let mut spec = server.backend.spec();
        let Some(module) = spec.modules.get_mut(index) else {
            return Err(format!("the SPU chain has no module {index}"));
        };
        module.name = registered.qualified_name.clone();
        let partitions = server
            .backend
            .replace_chain(spec)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(module = %registered.qualified_name, ?partitions, "SPU chains reopened with the new module.");
        Ok(partitions.into_iter().map(|p| (p, 0)).collect())
    }

    pub async fn list(&self) -> Vec<ModuleInfo> {
        self.slots
            .lock()
            .await
            .iter()
            .map(|s| s.info.clone())
            .collect()
    }

    /// Replaces module `name` with `wasm`; see the module docs for the steps.
    pub async fn swap(
        &self,
        name: &str,
        wasm: Bytes,
        source: String,
    ) -> Result<SwapReport, SwapRejected> {
        let Some(short) = short_name(name) else {
            self.metrics.hot_swap(name, "rejected");
            return Err(SwapRejected::UnknownModule(name.to_owned()));
        };
        if let Some(reason) = &self.refused {
            self.metrics.hot_swap(short, "rejected");
            return Err(SwapRejected::Failed {
                name: short.to_owned(),
                message: reason.clone(),
            });
        }
        let started = std::time::Instant::now();
        // One swap at a time: the lock is held to the end.
        let mut slots = self.slots.lock().await;
        let index = slots
            .iter()
            .position(|s| s.info.name == short)
            .ok_or_else(|| SwapRejected::UnknownModule(name.to_owned()))?;
        let sha256 = sha256_hex(&wasm);
        tracing::info!(module = short, %source, sha256 = %sha256, bytes = wasm.len(), "Hot-swap requested.");
        let mut specs: Vec<ModuleSpec> = slots.iter().map(|s| s.spec.clone()).collect();
        specs[index].wasm = wasm.clone();

        // 1. Validate: compile and init once, off the async threads.
        let check = {
            let (engine, specs) = (self.engine.clone(), specs.clone());
            tokio::task::spawn_blocking(move || WasmChain::new(&engine, &specs).map(|_| ())).await
        };
        let invalid = match check {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("validation task failed: {e}")),
        };
        if let Some(message) = invalid {
            self.metrics.hot_swap(short, "rejected");
            tracing::error!(module = short, %source, error = %message, "Hot-swap rejected; the old module keeps running.");
            return Err(SwapRejected::Invalid {
                name: short.to_owned(),
                message,
            });
        }

        // 2. Hand every processor a warmed chain (or every SPU chain the
        //    newly registered module).
        let engine = self.engine.clone();
        let warmed = match &self.server {
            Some(server) => {
                Self::swap_server_side(server, index, &wasm, slots[index].info.version + 1).await
            }
            None => self
                .pipeline
                .swap(|_| WasmChain::new(&engine, &specs).map(boxed))
                .await
                .map_err(|e| e.to_string()),
        }
        .map_err(|message| {
            self.metrics.hot_swap(short, "failed");
            tracing::error!(module = short, error = %message, "Hot-swap failed.");
            SwapRejected::Failed {
                name: short.to_owned(),
                message,
            }
        })?;

        // 3. Keep it across restarts.
        if let Err(e) = save_active(&self.active_dir, file_of(short), &wasm) {
            tracing::error!(module = short, error = %e, "The new module runs, but could not be saved; a restart will load the previous one.");
        }
        let slot = &mut slots[index];
        slot.spec.wasm = wasm.clone();
        slot.info = ModuleInfo {
            version: slot.info.version + 1,
            sha256,
            size_bytes: wasm.len(),
            source,
            loaded_at_ms: now_ms(),
            ..slot.info.clone()
        };
        self.metrics.hot_swap(short, "applied");
        let report = SwapReport {
            module: slot.info.clone(),
            warmed,
            took_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(module = short, version = report.module.version, sha256 = %report.module.sha256, took_ms = report.took_ms, "Hot-swap done; the new module is live.");
        Ok(report)
    }
}

/// Writes the active copy atomically: temp file, fsync, rename.
fn save_active(dir: &Path, file: &str, wasm: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{file}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(wasm)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(file))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Watches `dir` for `.wasm` files named after a module (`detect.wasm`,
/// `gridwatch_detect.wasm`) and swaps them in. A file is taken once its
/// size and modification time hold still for one poll, so a slow copy is
/// not read half-written; afterwards it moves to `applied/` or `rejected/`
/// (with a `.reason.txt` beside it).
pub async fn watch_dir(
    manager: Arc<ModuleManager>,
    dir: PathBuf,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "Cannot create the watched modules directory; file-drop swaps are off.");
        return;
    }
    tracing::info!(dir = %dir.display(), "Watching for modules to hot-swap.");
    let mut last: std::collections::HashMap<PathBuf, (u64, SystemTime)> = Default::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "wasm") || !path.is_file() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if last.insert(path.clone(), stamp) != Some(stamp) {
                continue; // new or still changing: look again next poll
            }
            last.remove(&path);
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let outcome = match (short_name(&file), std::fs::read(&path)) {
                (None, _) => Err(format!(
                    "{file}: name the file after the module it replaces (detect.wasm or validate.wasm)"
                )),
                (_, Err(e)) => Err(format!("{file}: {e}")),
                (Some(name), Ok(bytes)) => manager
                    .swap(name, Bytes::from(bytes), format!("watch:{file}"))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            let stamp = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let (sub, reason) = match &outcome {
                Ok(()) => ("applied", None),
                Err(reason) => ("rejected", Some(reason.clone())),
            };
            let target_dir = dir.join(sub);
            let target = target_dir.join(format!("{stamp}-{file}"));
            let moved =
                std::fs::create_dir_all(&target_dir).and_then(|_| std::fs::rename(&path, &target));
            if let Err(e) = moved {
                tracing::error!(file = %path.display(), error = %e, "Could not move a processed module file; removing it so it is not applied twice.");
                let _ = std::fs::remove_file(&path);
            }
            if let Some(reason) = reason {
                let _ = std::fs::write(target.with_extension("reason.txt"), format!("{reason}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_forgiving() {
        assert_eq!(short_name("detect"), Some("detect"));
        assert_eq!(short_name("gridwatch-detect"), Some("detect"));
        assert_eq!(short_name("gridwatch_detect.wasm"), Some("detect"));
        assert_eq!(short_name("validate.wasm"), Some("validate"));
        assert_eq!(short_name("other"), None);
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
