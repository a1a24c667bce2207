# Sourced by ./run and ./test: make .venv (Python 3.11+) and install the project into it,
# again only when pyproject.toml changed. Usage: ensure_venv "" | ensure_venv "test"
set -euo pipefail

ensure_venv() {
    local extra="$1" root py stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    cd "$root"
    py="${PYTHON:-python3}"
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "rtc-bridge needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    stamp=".venv/.installed${extra:+-$extra}"
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        # setuptools' notice that an editable install points at this folder is expected here.
        PYTHONWARNINGS="ignore:Editable installation" \
            .venv/bin/python -m pip install --quiet -e ".${extra:+[$extra]}"
        echo "$want" > "$stamp"
    fi
}
