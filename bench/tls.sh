#!/usr/bin/env bash
# What TLS and SASL cost (bench/tls.py): one broker with PLAINTEXT, SSL, SASL_SSL (PLAIN) and
# SASL_SSL (SCRAM-SHA-512) listeners,
# produce and consume throughput and new connections per second through each. Run
# bench/setup.sh and `cargo build --release --bin partita` first.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
PY="$CACHE/venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "bench: $PY missing; run: bash bench/setup.sh" >&2
    exit 2
fi
exec "$PY" "$HERE/tls.py" "$@"
