#!/usr/bin/env bash
# Transactions (bench/transactions.py): transactional produce throughput and commit
# latency at 10, 100 and 1,000 records per transaction, beside idempotent produce, for Partita
# and Tansu. Run bench/setup.sh and `cargo build --release --bin partita` first.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
PY="$CACHE/venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "bench: $PY missing; run: bash bench/setup.sh" >&2
    exit 2
fi
exec "$PY" "$HERE/transactions.py" "$@"
