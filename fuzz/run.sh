#!/usr/bin/env bash
# Runs Partita's fuzz targets for a time budget, then stops by itself.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 300 s per target, every target
#   FUZZ_ENGINE=fallback fuzz/run.sh 60   # force the libFuzzer-free driver
#
# With cargo-fuzz installed (`cargo install cargo-fuzz`) it uses libFuzzer with coverage
# feedback and AddressSanitizer, on the stable compiler through RUSTC_BOOTSTRAP=1; otherwise,
# or if that build fails, the fallback driver `fuzz-fallback` (random mutations, no coverage,
# no nightly). Exits non-zero if a target crashed; the input is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request batch_header offsets_record sasl)
fi
engine="${FUZZ_ENGINE:-auto}"

run_libfuzzer() {
  local target="$1"
  mkdir -p "corpus/$target" "work/$target" "artifacts/$target"
  # libFuzzer adds what it finds to work/ (not committed); corpus/ holds the regression
  # inputs, and the built-in valid seeds go to work/ as a start.
  ./target/release/fuzz-fallback --write-seeds "$target" "work/$target"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -malloc_limit_mb=1024 \
    -timeout=30 -artifact_prefix="artifacts/$target/" -print_final_stats=1
}

run_fallback() {
  local target="$1"
  ./target/release/fuzz-fallback "$target" --seconds "$seconds"
}

cargo build --release --no-default-features --bin fuzz-fallback
if [ "$engine" = auto ]; then
  engine=fallback
  if cargo fuzz --version >/dev/null 2>&1 &&
     RUSTC_BOOTSTRAP=1 cargo fuzz build "${targets[0]}" >/dev/null 2>&1; then
    engine=libfuzzer
  else
    echo "cargo-fuzz unavailable or its build failed: using the fallback driver" >&2
  fi
fi

status=0
for target in "${targets[@]}"; do
  echo "=== $target: $engine, $seconds s"
  if [ "$engine" = libfuzzer ]; then
    run_libfuzzer "$target" || status=1
  else
    run_fallback "$target" || status=1
  fi
done
exit "$status"
