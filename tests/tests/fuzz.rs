//! Issue 9: every decoder is fuzzed for a bounded time.
//!
//! Runs `scripts/fuzz --time 15` (every target in `fuzz/`, 15 s each, under
//! nightly and cargo-fuzz, which `scripts/setup.d/50-fuzz.sh` installs) when
//! `FUZZ=1`. Otherwise it says why it skipped: the first nightly build of the
//! instrumented targets took 11 to 76 minutes on this 2-core machine, which
//! does not fit CI's time budget next to the rest of the suite until that
//! build is cached (a follow-up of issue 9). `FUZZ_TIME` overrides the
//! seconds per target. (Not `GRIDWATCH_*` names: the binary reads those as
//! configuration.)

use std::process::Command;

use gridwatch_tests::modules::workspace_root;

#[test]
fn every_fuzz_target_runs_without_a_crash() {
    let wanted = std::env::var("FUZZ").is_ok_and(|v| v == "1");
    if !wanted {
        println!(
            "skipped: set FUZZ=1 to run scripts/fuzz --time 15; the first nightly build of the \
             fuzz targets takes 11+ minutes here, too long for CI's budget until it is cached"
        );
        return;
    }
    let seconds = std::env::var("FUZZ_TIME").unwrap_or_else(|_| "15".into());
    let status = Command::new(workspace_root().join("scripts/fuzz"))
        .args(["--time", &seconds])
        .current_dir(workspace_root())
        // The outer cargo's variables would point the nightly build at this
        // test's toolchain and features.
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("scripts/fuzz runs");
    assert!(
        status.success(),
        "scripts/fuzz found a crash or failed ({status}); see its output above and fuzz/artifacts/"
    );
}
