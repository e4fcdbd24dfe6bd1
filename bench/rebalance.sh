#!/usr/bin/env bash
# Consumer-group rebalance benchmark, Partita vs Tansu. Needs what bench/setup.sh fetches (the
# venv with confluent-kafka and the Tansu binary; BENCH_SKIP_PARTITA=1 skips its cargo build).
# All arguments go to bench/rebalance.py (see --help), e.g. --quick for a Partita-only smoke run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
PY="$CACHE/venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "bench: $PY missing; run: BENCH_SKIP_PARTITA=1 bash bench/setup.sh" >&2
    exit 2
fi
exec "$PY" "$HERE/rebalance.py" "$@"
