#!/usr/bin/env bash
# Cluster-mode benchmark (bench/cluster.py): Partita single-node, Partita in cluster mode with
# one and three brokers, Tansu on S3 and on PostgreSQL, on private engines. Run bench/setup.sh
# and scripts/setup first.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
PY="$CACHE/venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "bench: $PY missing; run: bash bench/setup.sh" >&2
    exit 2
fi
exec "$PY" "$HERE/cluster.py" "$@"
