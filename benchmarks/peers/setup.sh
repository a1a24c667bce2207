#!/usr/bin/env bash
# Benchmark-only virtualenvs for the peer echo servers that benchmarks/loadgen.py measures
# next to the stock aiortc echo: .venv-bench-pipecat (benchmarks/pipecat_echo.py) and
# .venv-bench-fastrtc (benchmarks/fastrtc_echo.py) at the repo root, each with the pinned
# requirements-<name>.txt beside this script, from PyPI, with Python 3.11.
#
# Idempotent: a venv is (re)installed only when its requirements file changed (its stamp
# holds the file's sha256, as scripts/venv.sh does for .venv), so a re-run takes a moment.
# Prints one line per venv it creates and nothing else on success; pip's output is shown
# only when an install fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3.11}"

if ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "benchmarks/peers/setup.sh needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

pip_quiet() {
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}

ensure_peer_venv() {
    local name="$1" venv req stamp want
    venv="$root/.venv-bench-$name"
    req="$here/requirements-$name.txt"
    stamp="$venv/.installed"
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv"
        echo "created $venv"
    fi
    rm -f "$stamp"
    pip_quiet "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip
    pip_quiet "$venv/bin/python" -m pip install --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
}

ensure_peer_venv pipecat
ensure_peer_venv fastrtc
