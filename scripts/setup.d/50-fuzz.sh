#!/usr/bin/env bash
# The fuzzing toolchain for scripts/fuzz: a minimal nightly (libFuzzer's
# instrumentation needs -Zsanitizer and friends) and cargo-fuzz, cached in
# $HOME/.cache/gridwatch/tools. Idempotent; prints a line only when it installs.
set -euo pipefail
source "$(dirname "$0")/lib.bash"

# Only when fuzzing is asked for (scripts/fuzz sets FUZZ=1; so does a test
# run with FUZZ=1): the nightly toolchain is not needed by the rest of the suite.
[ "${FUZZ:-}" = "1" ] || exit 0

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "setup: rustup toolchain install nightly (for cargo-fuzz)"
    rustup toolchain install nightly --profile minimal >/dev/null
fi
# libFuzzer is C++, built by libfuzzer-sys's build script.
command -v c++ >/dev/null 2>&1 || apt_install g++
cargo_install cargo-fuzz 0.13.2
