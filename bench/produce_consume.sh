#!/usr/bin/env bash
# Partita vs Tansu produce/consume benchmark. Run bench/setup.sh first.
# All arguments go to bench/produce_consume.py (see --help), e.g. --quick for a smoke run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_exec produce_consume.py "$@"
