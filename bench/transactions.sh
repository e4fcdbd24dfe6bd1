#!/usr/bin/env bash
# Transactions (bench/transactions.py): transactional produce throughput and commit
# latency at 10, 100 and 1,000 records per transaction, beside idempotent produce, for Partita
# and Tansu. Run bench/setup.sh and `cargo build --release --bin partita` first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_exec transactions.py "$@"
