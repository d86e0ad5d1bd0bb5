//! Finding the SmartModules `gridwatch run` loads.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// File names of the two modules.
pub const VALIDATE: &str = "gridwatch_validate.wasm";
pub const DETECT: &str = "gridwatch_detect.wasm";

/// The directories searched, in order, when `runtime.modules_dir` is empty.
pub fn candidates(configured: &Path) -> Vec<PathBuf> {
    if !configured.as_os_str().is_empty() {
        return vec![configured.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("GRIDWATCH_MODULES_DIR") {
        out.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        out.push(dir.to_path_buf());
        // target/<profile>/gridwatch → target/wasm32-wasip1/release-lto
        if let Some(target) = dir.parent() {
            out.push(target.join("wasm32-wasip1/release-lto"));
        }
    }
    out.push(PathBuf::from("/usr/share/gridwatch/modules"));
    out
}

/// Reads one module from the first directory that has it.
pub fn load(configured: &Path, file: &str) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let dirs = candidates(configured);
    for dir in &dirs {
        let path = dir.join(file);
        if path.is_file() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            return Ok((path, bytes));
        }
    }
    anyhow::bail!(
        "SmartModule {file} not found in {}; build the modules with scripts/build-modules, or set runtime.modules_dir",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
