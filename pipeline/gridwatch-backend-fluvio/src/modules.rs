//! Registering SmartModules with a cluster, as `fluvio smartmodule create` does.
//!
//! [`register_smartmodule`] reads a module's `.wasm` and its
//! `SmartModule.toml` (package name, group, version, params), and creates the
//! SmartModule through the SC's admin API, replacing one registered with the
//! same package and version. The SC stores a module that carries metadata
//! under `name-group-version` (`gridwatch-detect-gridwatch-0.1.0`, whatever
//! name the request gives), and lists and deletes it by qualified name, so
//! each version is its own object: a hot swap registers the new version next
//! to the old one and reopens the consumer chain with the new qualified name,
//! and a running stream keeps the instance it started with.
//!
//! A consumer names a module by its package name (`gridwatch-detect`, which
//! matches any registered version) or by its qualified name
//! (`gridwatch/gridwatch-detect@0.1.0`, exactly that one); see
//! [`RegisteredModule::qualified_name`].

use std::path::{Path, PathBuf};

use fluvio::FluvioAdmin;
use fluvio::metadata::smartmodule::{SmartModuleMetadata, SmartModuleSpec, SmartModuleWasm};

use crate::error::FluvioBackendError;

/// A module to register: its WASM file and its `SmartModule.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSource {
    pub wasm: PathBuf,
    pub metadata: PathBuf,
    /// Registers under this version instead of the one in `SmartModule.toml`
    /// (a hot swap's new version). A semantic version such as `0.1.1`.
    pub version: Option<String>,
}

impl ModuleSource {
    /// `target/.../gridwatch_detect.wasm` with `smartmodules/detect/SmartModule.toml`.
    pub fn new(wasm: impl Into<PathBuf>, metadata: impl Into<PathBuf>) -> Self {
        Self {
            wasm: wasm.into(),
            metadata: metadata.into(),
            version: None,
        }
    }

    /// Overrides the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// What was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredModule {
    /// The key the SC stores it under (`name-group-version`).
    pub key: String,
    /// The package name (`gridwatch-detect`).
    pub name: String,
    pub group: String,
    pub version: String,
    /// `group/name@version`: what a consumer chain names to get exactly this module.
    pub qualified_name: String,
    /// Size of the WASM module in bytes.
    pub wasm_bytes: usize,
    /// True when an object with the same key was replaced.
    pub replaced: bool,
}

/// Parses a semantic version as SmartModule metadata holds it.
pub fn parse_version(
    v: &str,
) -> Result<fluvio::metadata::smartmodule::FluvioSemVersion, FluvioBackendError> {
    fluvio::metadata::smartmodule::FluvioSemVersion::parse(v).map_err(|e| {
        FluvioBackendError::ModuleFile {
            path: v.to_string(),
            message: format!("{v:?} is not a semantic version: {e}"),
        }
    })
}

/// Reads a module's metadata, applying a version override.
pub fn read_metadata(source: &ModuleSource) -> Result<SmartModuleMetadata, FluvioBackendError> {
    let path = source.metadata.display().to_string();
    let mut meta = SmartModuleMetadata::from_toml(&source.metadata).map_err(|e| {
        FluvioBackendError::ModuleFile {
            path: path.clone(),
            message: e.to_string(),
        }
    })?;
    if let Some(v) = &source.version {
        meta.package.version =
            fluvio::metadata::smartmodule::FluvioSemVersion::parse(v).map_err(|e| {
                FluvioBackendError::ModuleFile {
                    path: path.clone(),
                    message: format!("version {v:?} is not a semantic version: {e}"),
                }
            })?;
    }
    if !meta.package.is_valid() {
        return Err(FluvioBackendError::ModuleFile {
            path,
            message: "[package] needs a name and a group".into(),
        });
    }
    Ok(meta)
}

/// The key the SC stores a module with this metadata under (`fluvio
/// smartmodule list` shows the qualified name instead).
pub fn object_key(meta: &SmartModuleMetadata) -> String {
    meta.store_id()
}

/// Creates (or replaces) the SmartModule described by `source`.
pub async fn register_smartmodule(
    admin: &FluvioAdmin,
    source: &ModuleSource,
) -> Result<RegisteredModule, FluvioBackendError> {
    let meta = read_metadata(source)?;
    let wasm = read_wasm(&source.wasm)?;
    register_smartmodule_bytes(admin, meta, &wasm).await
}

/// [`register_smartmodule`] with the metadata and WASM already in memory
/// (e.g. a module uploaded to the admin API).
pub async fn register_smartmodule_bytes(
    admin: &FluvioAdmin,
    meta: SmartModuleMetadata,
    wasm: &[u8],
) -> Result<RegisteredModule, FluvioBackendError> {
    let key = object_key(&meta);
    let qualified = meta.package.fqdn();
    let payload =
        SmartModuleWasm::from_raw_wasm_bytes(wasm).map_err(|e| FluvioBackendError::ModuleFile {
            path: key.clone(),
            message: format!("compressing the module: {e}"),
        })?;
    let existing = admin
        .list::<SmartModuleSpec, _>(vec![qualified.clone()])
        .await
        .map_err(|e| FluvioBackendError::cluster("list SmartModules", &qualified, &e))?;
    let replaced = existing.iter().any(|m| m.name == key);
    if replaced {
        delete_smartmodule(admin, &qualified).await?;
    }
    let registered = RegisteredModule {
        key: key.clone(),
        name: meta.package.name.clone(),
        group: meta.package.group.clone(),
        version: meta.package.version.to_string(),
        qualified_name: qualified,
        wasm_bytes: wasm.len(),
        replaced,
    };
    let spec = SmartModuleSpec {
        meta: Some(meta),
        wasm: payload,
        ..Default::default()
    };
    admin
        .create(key.clone(), false, spec)
        .await
        .map_err(|e| FluvioBackendError::cluster("create SmartModule", &key, &e))?;
    tracing::info!(key = %registered.key, module = %registered.qualified_name, bytes = registered.wasm_bytes, replaced, "SmartModule registered.");
    Ok(registered)
}

/// Registered SmartModules: (key, qualified name when it has metadata).
pub async fn list_smartmodules(
    admin: &FluvioAdmin,
) -> Result<Vec<(String, Option<String>)>, FluvioBackendError> {
    let all = admin
        .all::<SmartModuleSpec>()
        .await
        .map_err(|e| FluvioBackendError::cluster("list SmartModules", "all", &e))?;
    Ok(all
        .into_iter()
        .map(|m| {
            let fqdn = m.spec.meta.as_ref().map(|meta| meta.package.fqdn());
            (m.name, fqdn)
        })
        .collect())
}

/// Deletes a registered SmartModule by qualified name
/// (`gridwatch/gridwatch-detect@0.1.0`), or by name for one without metadata.
pub async fn delete_smartmodule(admin: &FluvioAdmin, name: &str) -> Result<(), FluvioBackendError> {
    admin
        .delete::<SmartModuleSpec>(name.to_string())
        .await
        .map_err(|e| FluvioBackendError::cluster("delete SmartModule", name, &e))
}

fn read_wasm(path: &Path) -> Result<Vec<u8>, FluvioBackendError> {
    let bytes = std::fs::read(path).map_err(|e| FluvioBackendError::ModuleFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if !bytes.starts_with(b"\0asm") {
        return Err(FluvioBackendError::ModuleFile {
            path: path.display().to_string(),
            message: "not a WebAssembly module (no \\0asm header)".into(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn metadata_of_our_modules_parses_with_keys_and_names() {
        for (dir, name) in [
            ("validate", "gridwatch-validate"),
            ("detect", "gridwatch-detect"),
        ] {
            let src = ModuleSource::new(
                "x.wasm",
                repo()
                    .join("smartmodules")
                    .join(dir)
                    .join("SmartModule.toml"),
            );
            let meta = read_metadata(&src).unwrap();
            assert_eq!(meta.package.name, name);
            assert_eq!(meta.package.group, "gridwatch");
            assert_eq!(object_key(&meta), format!("{name}-gridwatch-0.1.0"));
            assert_eq!(meta.package.fqdn(), format!("gridwatch/{name}@0.1.0"));
            assert!(meta.params.len() > 0);
            let v2 = read_metadata(&src.clone().with_version("0.2.0-rc.1")).unwrap();
            assert_eq!(object_key(&v2), format!("{name}-gridwatch-0.2.0-rc.1"));
            let bad = read_metadata(&src.with_version("two")).unwrap_err();
            assert!(
                bad.to_string()
                    .contains("version \"two\" is not a semantic version"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_wasm_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.wasm");
        std::fs::write(&p, b"hello").unwrap();
        let e = read_wasm(&p).unwrap_err();
        assert!(e.to_string().contains("not a WebAssembly module"), "{e}");
        assert!(!e.is_retryable());
        assert!(read_wasm(&dir.path().join("missing.wasm")).is_err());
    }
}
