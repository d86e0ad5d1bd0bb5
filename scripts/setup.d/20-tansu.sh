#!/usr/bin/env bash
# Tansu: the Kafka-compatible broker the gridwatch-kafka tests and bench run
# against (sqlite storage, started per test on a free loopback port).
# `libsql` gives the sqlite:// storage engine; 0.6.0 is the version the
# connectors are tested with. The build takes ~11 minutes once (longer on a
# busy machine, hence `nice`), then is cached in $HOME/.cache/gridwatch/tools.
#
# Build dependencies of gridwatch-kafka's own librdkafka (rdkafka-sys builds
# the bundled 2.12 with its configure script; Debian's librdkafka 2.0.2 does
# not work with Tansu and is not used): a C toolchain, make, OpenSSL and zlib
# headers. (Its cmake build is not used: with TLS but without libcurl it
# includes curl.h anyway, a librdkafka 2.12 bug.)
set -euo pipefail
source "$(dirname "$0")/lib.bash"
apt_install build-essential make pkg-config libssl-dev zlib1g-dev
if ! grep -q '^"tansu 0.6.0 ' "$HOME/.cache/gridwatch/tools/.crates.toml" 2>/dev/null; then
    nice -n 10 bash -c "$(declare -f cargo_install); cargo_install tansu 0.6.0 --features libsql"
fi
