#!/usr/bin/env bash
# Consumer-group rebalance benchmark, Partita vs Tansu. Needs what bench/setup.sh fetches (the
# venv with confluent-kafka and the Tansu binary; BENCH_SKIP_PARTITA=1 skips its cargo build).
# All arguments go to bench/rebalance.py (see --help), e.g. --quick for a Partita-only smoke run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BENCH_SETUP_HINT="BENCH_SKIP_PARTITA=1 bash bench/setup.sh" bench_exec rebalance.py "$@"
