#!/usr/bin/env bash
# Time-series test servers for connectors/gridwatch-influxdb:
# - Debian `influxdb` (1.x, `influxd`): the v1 `/write` path, read back with
#   InfluxQL; the compliance, retry (server killed and restarted) and
#   throughput tests.
# - Debian `victoria-metrics`: a real server that accepts InfluxDB v2's
#   `/api/v2/write`, for the v2 path, read back through its export API.
# The tests start their own servers on free loopback ports with temporary
# data directories; a system service the packages may start is left alone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

apt_install influxdb victoria-metrics
