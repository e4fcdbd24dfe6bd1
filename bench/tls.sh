#!/usr/bin/env bash
# What TLS and SASL cost (bench/tls.py): one broker with PLAINTEXT, SSL, SASL_SSL (PLAIN) and
# SASL_SSL (SCRAM-SHA-512) listeners,
# produce and consume throughput and new connections per second through each. Run
# bench/setup.sh and `cargo build --release --bin partita` first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_exec tls.py "$@"
