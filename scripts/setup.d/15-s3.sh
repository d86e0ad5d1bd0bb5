#!/usr/bin/env bash
# s3s-fs: the S3 server the gridwatch-lake tests and bench run against
# (a real S3 HTTP API with SigV4 auth over a plain directory, started per test
# on a free loopback port). Chosen over Garage because it builds in about five
# CPU-minutes as a pure-Rust binary (14 min wall on a loaded 2-core box), while Garage (AGPL, libsodium, lmdb, sqlite,
# several hundred crates) takes far longer and needs a cluster layout set up
# before the first bucket. 0.14.1 is the newest release whose rust-version the
# pinned toolchain meets (0.17 wants rustc 1.96).
set -euo pipefail
source "$(dirname "$0")/lib.bash"
nice -n 10 bash -c "$(declare -f cargo_install); cargo_install s3s-fs 0.14.1 --features binary"
