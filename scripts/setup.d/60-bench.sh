#!/usr/bin/env bash
# The peer baseline of scripts/bench: Bytewax from PyPI, in its own venv so
# its pinned dependencies stay out of the test venv. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$HOME/.cache/gridwatch/peer-venv"
req="$here/../../benches/peer/requirements.txt"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import bytewax' 2>/dev/null \
    && [ "$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("bytewax"))')" = "$(sed -n 's/^bytewax==//p' "$req")" ]; then
    exit 0
fi
echo "Installing the bench peer (Bytewax) into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$req"
