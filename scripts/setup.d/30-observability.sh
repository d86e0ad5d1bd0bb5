#!/usr/bin/env bash
# Observability test tools:
# - Debian `prometheus` (prometheus + promtool): tests/tests/prometheus.rs
#   lints /metrics with `promtool check metrics` and scrapes a running
#   gridwatch with a real Prometheus.
# - Debian `chromium` and `playwright-core` from npm, in
#   $HOME/.cache/gridwatch/node: tests/tests/dashboard_browser.rs drives the
#   built-in dashboard in headless Chromium. playwright-core never downloads
#   a browser; the test points it at /usr/bin/chromium.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

apt_install prometheus chromium
# Node and npm: Debian's `nodejs` + `npm`, unless a Node 20+ with npm is
# already there (some images ship NodeSource's nodejs, which includes npm and
# conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi

# The Debian prometheus package starts a system service; tests start their
# own on free ports, so an already running one is left alone and unused.

node_dir="$HOME/.cache/gridwatch/node"
playwright_version="1.65.1"
installed="$(node -p "require('$node_dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$playwright_version" ]; then
    echo "setup: npm install playwright-core@$playwright_version into $node_dir"
    mkdir -p "$node_dir"
    [ -f "$node_dir/package.json" ] || echo '{"private":true}' >"$node_dir/package.json"
    npm install --prefix "$node_dir" --no-audit --no-fund --silent \
        "playwright-core@$playwright_version" >/dev/null
fi
