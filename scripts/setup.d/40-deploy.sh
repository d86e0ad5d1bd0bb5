#!/usr/bin/env bash
# The deployment tests' tools (tests/tests/deploy.rs):
# - Python: Helm's engine (helm-python-sdk) and kubernetes-validate, into the
#   shared test venv $HOME/.cache/gridwatch/venv;
# - npm: the prometheus-operator schemas, into $HOME/.cache/gridwatch/deploy-node.
# Idempotent: does nothing when the pinned versions are already installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$HOME/.cache/gridwatch"

venv="$cache/venv"
requirements="$root/tests/deploy/requirements.txt"
stamp="$venv/.gridwatch-deploy-requirements.sha256"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] \
    || ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    echo "setup: installing the deployment test tools (helm-python-sdk, kubernetes-validate)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi

node_dir="$cache/deploy-node"
package="$root/tests/deploy/package.json"
want="$(cat "$package" "$root/tests/deploy/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$node_dir/.gridwatch-package.sha256" 2>/dev/null || true)" != "$want" ] \
    || [ ! -d "$node_dir/node_modules/@kubernetes-models/prometheus-operator" ]; then
    command -v npm >/dev/null || { source "$(dirname "$0")/lib.bash"; apt_install nodejs npm; }
    echo "setup: installing the prometheus-operator schemas (npm)"
    mkdir -p "$node_dir"
    cp "$package" "$root/tests/deploy/package-lock.json" "$node_dir/"
    (cd "$node_dir" && npm ci --silent --no-audit --no-fund >/dev/null)
    echo "$want" >"$node_dir/.gridwatch-package.sha256"
fi
