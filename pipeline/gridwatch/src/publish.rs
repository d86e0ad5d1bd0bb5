//! `gridwatch modules publish`: registers the built SmartModules with a
//! Fluvio cluster through its admin API, as `fluvio smartmodule create` does,
//! so that server-side mode (`fluvio.chain.mode: server`) can name them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gridwatch_backend_fluvio::modules::{read_metadata, register_smartmodule_bytes};
use gridwatch_backend_fluvio::{FluvioBackend, ModuleSource};

use crate::cli::PublishArgs;
use crate::modules;

/// (`.wasm` file, package directory in the repo, directory in the image).
const MODULES: [(&str, &str, &str); 2] = [
    (modules::VALIDATE, "validate", "gridwatch-validate"),
    (modules::DETECT, "detect", "gridwatch-detect"),
];

/// Where a module's `SmartModule.toml` is: `--metadata-dir`, the image's
/// `/usr/share/gridwatch/smartmodules`, or the source tree.
fn metadata_path(args: &PublishArgs, repo_dir: &str, image_dir: &str) -> anyhow::Result<PathBuf> {
    metadata_file(args.metadata_dir.as_deref(), repo_dir, image_dir)
}

/// The `SmartModule.toml` files of validate and detect, in chain order.
pub fn chain_metadata(dir: Option<&Path>) -> anyhow::Result<[PathBuf; 2]> {
    Ok([
        metadata_file(dir, MODULES[0].1, MODULES[0].2)?,
        metadata_file(dir, MODULES[1].1, MODULES[1].2)?,
    ])
}

fn metadata_file(dir: Option<&Path>, repo_dir: &str, image_dir: &str) -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = dir {
        candidates.push(dir.join(image_dir).join("SmartModule.toml"));
        candidates.push(dir.join(repo_dir).join("SmartModule.toml"));
    }
    candidates.push(
        Path::new("/usr/share/gridwatch/smartmodules")
            .join(image_dir)
            .join("SmartModule.toml"),
    );
    candidates.push(
        Path::new("smartmodules")
            .join(repo_dir)
            .join("SmartModule.toml"),
    );
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/gridwatch → the source tree's smartmodules/
        if let Some(root) = exe.ancestors().nth(3) {
            candidates.push(
                root.join("smartmodules")
                    .join(repo_dir)
                    .join("SmartModule.toml"),
            );
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "SmartModule.toml of {image_dir} not found in {}; pass --metadata-dir",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let fluvio = FluvioBackend::connect(&config.fluvio)
        .await
        .context("connecting to the Fluvio cluster (fluvio.profile / fluvio.endpoint)")?;
    for (file, repo_dir, image_dir) in MODULES {
        let (wasm_path, wasm) = modules::load(&config.runtime.modules_dir, file)?;
        let mut source = ModuleSource::new(&wasm_path, metadata_path(&args, repo_dir, image_dir)?);
        if let Some(v) = &args.version {
            source = source.with_version(v.clone());
        }
        let meta = read_metadata(&source)?;
        let registered = register_smartmodule_bytes(fluvio.admin(), meta, &wasm)
            .await
            .with_context(|| format!("registering {}", wasm_path.display()))?;
        println!(
            "Published {} ({} bytes from {}) as {}{}",
            registered.qualified_name,
            registered.wasm_bytes,
            wasm_path.display(),
            registered.key,
            if registered.replaced {
                ", replacing the one registered before"
            } else {
                ""
            }
        );
    }
    println!(
        "Server-side chains name them as {} → {} (fluvio.chain.validate / fluvio.chain.detect).",
        config.fluvio.chain.validate, config.fluvio.chain.detect
    );
    Ok(())
}
