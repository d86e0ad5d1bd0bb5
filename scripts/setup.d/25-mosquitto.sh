#!/usr/bin/env bash
# Mosquitto: the MQTT broker the gridwatch-mqtt tests and bench run against
# (started per test on a free loopback port with a generated config, never
# as the system service), and mosquitto_pub, the independent publisher the
# tests use.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
apt_install mosquitto mosquitto-clients
