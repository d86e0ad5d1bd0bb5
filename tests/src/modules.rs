//! Finds the SmartModules' `.wasm` files, building them first.
//!
//! Tests must never run against stale modules, so unless
//! `GRIDWATCH_WASM_DIR` names prebuilt ones, the first call runs the same
//! `cargo build` the README documents. Cargo makes that a no-op when nothing
//! changed. The outer `cargo test` has released its lock by the time tests run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The target and profile the modules are built with (Fluvio's `smdk` uses the same).
pub const TARGET: &str = "wasm32-wasip1";
pub const PROFILE: &str = "release-lto";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory holding `gridwatch_validate.wasm` and `gridwatch_detect.wasm`.
pub fn wasm_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("GRIDWATCH_WASM_DIR") {
            return PathBuf::from(dir);
        }
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "--target", TARGET, "--profile", PROFILE])
            .args(["-p", "gridwatch-validate", "-p", "gridwatch-detect"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the SmartModules failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join(TARGET).join(PROFILE)
    })
}

/// The bytes of one module, e.g. `module("gridwatch_detect")`.
pub fn module(name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
