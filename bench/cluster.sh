#!/usr/bin/env bash
# Cluster-mode benchmark (bench/cluster.py): Partita single-node, Partita in cluster mode with
# one and three brokers, Tansu on S3 and on PostgreSQL, on private engines. Run bench/setup.sh
# and scripts/setup first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_exec cluster.py "$@"
