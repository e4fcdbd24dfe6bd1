#!/usr/bin/env bash
# Partita vs Tansu produce/consume benchmark. Run bench/setup.sh first.
# All arguments go to bench/produce_consume.py (see --help), e.g. --quick for a smoke run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
PY="$CACHE/venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "bench: $PY missing; run: bash bench/setup.sh" >&2
    exit 2
fi
exec "$PY" "$HERE/produce_consume.py" "$@"
