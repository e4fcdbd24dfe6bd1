# Sourced by the bench wrappers (cluster.sh, produce_consume.sh, rebalance.sh, tls.sh,
# transactions.sh): `bench_exec SCRIPT ARGS...` runs bench/SCRIPT with the bench venv's Python
# (bench/setup.sh makes it), or says how to make it; BENCH_SETUP_HINT overrides the advice.
bench_exec() {
    local script="$1"
    shift
    local cache="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
    local py="$cache/venv/bin/python"
    if [ ! -x "$py" ]; then
        echo "bench: $py missing; run: ${BENCH_SETUP_HINT:-bash bench/setup.sh}" >&2
        exit 2
    fi
    exec "$py" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$script" "$@"
}
