//! Deployment checks, from `cargo test`:
//!
//! - the Helm chart `k8s/gridwatch` renders in every configuration the
//!   examples and the scenarios in `tests/deploy/validate_chart.py` name,
//!   with Helm's own engine, and every manifest validates against the
//!   Kubernetes schemas (and the ServiceMonitor against prometheus-operator's);
//! - the Dockerfile copies only what a fresh clone has, and everything the
//!   build needs (`tests/deploy/check_dockerfile.py`, no docker needed);
//! - every `smartmodules/*/SmartModule.toml` is what `smdk load` and
//!   `fluvio smartmodule create` accept, parsed by Fluvio's own
//!   `SmartModuleMetadata::from_toml`, and the built `.wasm` is where
//!   `smdk load` looks for it and exports what Fluvio's engine calls.
//!
//! The Python and node tools come from `scripts/setup.d/40-deploy.sh` (run by
//! `scripts/setup-test-env`); without them the chart test fails and says how
//! to install them, because CI must not pass by skipping.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use fluvio_controlplane_metadata::smartmodule::SmartModuleMetadata;
use fluvio_smartengine::{SmartEngine, SmartModuleChainBuilder, SmartModuleConfig};
use gridwatch_tests::modules::{PROFILE, TARGET, wasm_dir, workspace_root};

/// The venv with helm-python-sdk and kubernetes-validate.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GRIDWATCH_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/gridwatch/venv/bin/python")
}

/// Runs a check script, echoes its report, and fails with its problems.
fn run_check(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    // Helm notes each symlink it follows; the rest of stderr matters.
    let stderr: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("found symbolic link in path"))
        .collect();
    if !stderr.is_empty() {
        eprintln!("{}", stderr.join("\n"));
    }
    assert!(out.status.success(), "{what} failed:\n{stdout}");
    stdout
}

#[test]
fn helm_chart_renders_and_validates_in_every_configuration() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import helm_python, kubernetes_validate, yaml"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        panic!(
            "the chart test needs helm-python-sdk and kubernetes-validate in {}: run \
             scripts/setup-test-env (or bash scripts/setup.d/40-deploy.sh), or point \
             GRIDWATCH_PYTHON at a Python that has tests/deploy/requirements.txt installed",
            py.display()
        );
    }
    let report = run_check(
        Command::new(&py).arg("tests/deploy/validate_chart.py"),
        "chart validation",
    );
    let summary = report
        .lines()
        .find(|l| l.starts_with("chart: "))
        .expect("validate_chart.py prints a summary line");
    assert!(summary.ends_with("OK"), "{summary}");
    // The scenarios that enable the ServiceMonitor must have reached node.
    assert!(
        !summary.contains(" 0/"),
        "no ServiceMonitor was schema-checked: {summary}"
    );
}

#[test]
fn dockerfile_copies_exist_and_suffice() {
    let py = python();
    let py = if py.exists() {
        py
    } else {
        PathBuf::from("python3")
    };
    let report = run_check(
        Command::new(py).arg("tests/deploy/check_dockerfile.py"),
        "Dockerfile check",
    );
    assert!(report.contains(": OK"), "{report}");
}

#[test]
fn chart_dashboards_folder_is_the_repositorys() {
    // The chart reads dashboards/*.json through a symlink, so the chart and
    // the repository can never drift apart; a copy would.
    let root = workspace_root();
    let link = root.join("k8s/gridwatch/dashboards");
    let target = std::fs::read_link(&link).expect("k8s/gridwatch/dashboards is a symlink");
    assert_eq!(target, Path::new("../../dashboards"));
    if !root.join("dashboards").is_dir() {
        println!("dashboards/ does not exist yet: the chart renders no dashboard ConfigMap");
    }
}

/// What `smdk load` does with a SmartModule package, step by step (Fluvio's
/// `crates/smartmodule-development-kit/src/load.rs`): parse SmartModule.toml
/// with `SmartModuleMetadata::from_toml`, refuse an empty `group`, read
/// `target/wasm32-wasip1/<profile>/<lib name>.wasm` (profile `release-lto`
/// by default), and send both to the SC, which stores the module under
/// `package.name`, a Kubernetes object name.
#[test]
fn smartmodule_tomls_are_what_smdk_load_requires() {
    let root = workspace_root();
    let workspace: toml::Table =
        toml::from_str(&read(&root.join("Cargo.toml"))).expect("Cargo.toml");
    let workspace_version = workspace["workspace"]["package"]["version"]
        .as_str()
        .expect("workspace.package.version")
        .to_string();
    let mut checked = 0;
    let mut problems = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("smartmodules"))
        .expect("smartmodules/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("SmartModule.toml").exists())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let rel = dir.strip_prefix(&root).unwrap_or(dir).display().to_string();
        let sm_toml = dir.join("SmartModule.toml");
        let meta = match SmartModuleMetadata::from_toml(&sm_toml) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!(
                    "{rel}/SmartModule.toml: Fluvio cannot parse it: {e}"
                ));
                continue;
            }
        };
        let pkg = &meta.package;
        if pkg.group.is_empty() {
            problems.push(format!("{rel}: empty `group` (smdk load refuses it)"));
        }
        if !is_dns_label(&pkg.name) {
            problems.push(format!(
                "{rel}: name {:?} is not a Kubernetes object name, which the SC stores it as",
                pkg.name
            ));
        }
        if !is_dns_label(&pkg.group) {
            problems.push(format!(
                "{rel}: group {:?} is not lowercase [a-z0-9-]",
                pkg.group
            ));
        }
        if pkg.description.as_deref().is_none_or(str::is_empty) {
            problems.push(format!(
                "{rel}: no description (the Hub and `fluvio sm list` show it)"
            ));
        }

        // The raw file: fields Fluvio would silently ignore, duplicate params
        // it would silently merge, params without a description.
        let raw: toml::Table = toml::from_str(&read(&sm_toml)).expect("valid TOML");
        let known_package: BTreeSet<&str> = [
            "name",
            "group",
            "version",
            "apiVersion",
            "description",
            "license",
            "visibility",
            "repository",
        ]
        .into();
        for key in raw["package"]
            .as_table()
            .map(|t| t.keys())
            .into_iter()
            .flatten()
        {
            if !known_package.contains(key.as_str()) {
                problems.push(format!(
                    "{rel}: [package] {key} is not a SmartModule package field (ignored by Fluvio)"
                ));
            }
        }
        for key in raw.keys() {
            if key != "package" && key != "params" {
                problems.push(format!(
                    "{rel}: top-level [{key}] is not part of SmartModule.toml"
                ));
            }
        }
        if raw["package"].get("visibility").is_none() {
            problems.push(format!("{rel}: visibility not set (defaults to private)"));
        }
        let declared: Vec<String> = raw
            .get("params")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let unique: BTreeSet<&String> = declared.iter().collect();
        if unique.len() != declared.len() || unique.len() != meta.params.len() {
            problems.push(format!("{rel}: duplicate [[params]] names {declared:?}"));
        }
        for name in &declared {
            match meta.params.get_param(name) {
                Some(p) if p.description.as_deref().is_some_and(|d| !d.is_empty()) => {}
                _ => problems.push(format!("{rel}: param {name} has no description")),
            }
        }

        // The cargo package behind it: same name and version, a cdylib.
        let cargo: toml::Table =
            toml::from_str(&read(&dir.join("Cargo.toml"))).expect("Cargo.toml");
        let cargo_name = cargo["package"]["name"].as_str().unwrap_or_default();
        if cargo_name != pkg.name {
            problems.push(format!(
                "{rel}: SmartModule name {} differs from the crate name {cargo_name} (the README's `fluvio smartmodule create` uses the crate name)",
                pkg.name
            ));
        }
        let cargo_version = match &cargo["package"]["version"] {
            toml::Value::String(v) => v.clone(),
            _ => workspace_version.clone(),
        };
        if pkg.version.to_string() != cargo_version {
            problems.push(format!(
                "{rel}: version {} differs from the crate's {cargo_version}",
                pkg.version
            ));
        }
        let lib = cargo.get("lib");
        let crate_types: Vec<&str> = lib
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if !crate_types.contains(&"cdylib") {
            problems.push(format!(
                "{rel}: [lib] crate-type lacks cdylib, so no .wasm is built"
            ));
        }

        // The .wasm where `smdk load` looks, exporting Fluvio's entry points.
        let lib_name = lib
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| cargo_name.replace('-', "_"));
        let wasm_path = wasm_dir().join(format!("{lib_name}.wasm"));
        assert!(
            wasm_dir().ends_with(Path::new(TARGET).join(PROFILE)),
            "smdk load reads target/{TARGET}/{PROFILE}/ by default"
        );
        match std::fs::read(&wasm_path) {
            Err(e) => problems.push(format!("{rel}: {} not built: {e}", wasm_path.display())),
            Ok(bytes) => match wasm_exports(&bytes) {
                None => problems.push(format!("{}: not a WASM module", wasm_path.display())),
                Some(exports) => {
                    let kinds = ["filter", "map", "filter_map", "array_map", "aggregate"];
                    if !exports.iter().any(|e| kinds.contains(&e.as_str())) {
                        problems.push(format!(
                            "{}: exports no SmartModule function ({exports:?})",
                            wasm_path.display()
                        ));
                    }
                    if !declared.is_empty() && !exports.contains("init") {
                        problems.push(format!(
                            "{}: declares params but exports no init",
                            wasm_path.display()
                        ));
                    }
                    // In Fluvio's own engine: init succeeds with only the
                    // required params, and every declared param is one init
                    // reads (a bad value fails init, naming the param).
                    let required: Vec<(String, String)> = declared
                        .iter()
                        .filter(|n| meta.params.get_param(n).is_some_and(|p| !p.optional))
                        .map(|n| (n.clone(), String::new()))
                        .collect();
                    if let Err(e) = init_in_smartengine(&pkg.name, &bytes, &required) {
                        problems.push(format!(
                            "{rel}: init fails with only the required params: {e}"
                        ));
                    }
                    for name in &declared {
                        let bad = vec![(name.clone(), "\u{1}not a valid value\u{1}".to_string())];
                        match init_in_smartengine(&pkg.name, &bytes, &bad) {
                            Ok(()) => problems.push(format!(
                                "{rel}: param {name} is declared, but init accepts any value for it (is it read?)"
                            )),
                            Err(e) if !e.contains(name.as_str()) => problems.push(format!(
                                "{rel}: a bad {name} fails init without naming the param: {e}"
                            )),
                            Err(_) => {}
                        }
                    }
                    println!(
                        "{rel}: {}/{}@{} apiVersion {}, {} params, {} exports {:?}",
                        pkg.group,
                        pkg.name,
                        pkg.version,
                        pkg.api_version,
                        declared.len(),
                        wasm_path.file_name().unwrap_or_default().to_string_lossy(),
                        exports
                            .iter()
                            .filter(|e| !e.starts_with("__") && *e != "memory")
                            .collect::<Vec<_>>()
                    );
                }
            },
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the validate and detect SmartModules, found {checked}"
    );
    assert!(
        problems.is_empty(),
        "SmartModule.toml problems:\n{}",
        problems.join("\n")
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// RFC 1123 label: what Kubernetes (and so Fluvio's SC) accepts as a name.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Initialises one SmartModule in `fluvio-smartengine` (the engine Fluvio's
/// SPU runs) with the given params.
fn init_in_smartengine(name: &str, wasm: &[u8], params: &[(String, String)]) -> Result<(), String> {
    let engine = SmartEngine::new();
    let mut config = SmartModuleConfig::builder();
    config.smartmodule_names(vec![name.to_string()]);
    for (k, v) in params {
        config.param(k.as_str(), v.as_str());
    }
    let mut builder = SmartModuleChainBuilder::default();
    builder.add_smart_module(config.build().map_err(|e| e.to_string())?, wasm.to_vec());
    builder
        .initialize(&engine)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// The export names of a WASM module (its export section), or None if the
/// bytes are not a WASM module.
fn wasm_exports(bytes: &[u8]) -> Option<BTreeSet<String>> {
    fn leb(bytes: &[u8], pos: &mut usize) -> Option<u64> {
        let (mut result, mut shift) = (0u64, 0);
        loop {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            result |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(result);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    if bytes.get(..4)? != b"\0asm" {
        return None;
    }
    let mut pos = 8;
    let mut exports = BTreeSet::new();
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let size = usize::try_from(leb(bytes, &mut pos)?).ok()?;
        let end = pos.checked_add(size)?;
        if id == 7 {
            let mut p = pos;
            let count = leb(bytes, &mut p)?;
            for _ in 0..count {
                let len = usize::try_from(leb(bytes, &mut p)?).ok()?;
                let name = bytes.get(p..p.checked_add(len)?)?;
                exports.insert(String::from_utf8_lossy(name).into_owned());
                p += len + 1; // the name, then the export kind byte
                leb(bytes, &mut p)?; // the index
            }
        }
        pos = end;
    }
    Some(exports)
}
