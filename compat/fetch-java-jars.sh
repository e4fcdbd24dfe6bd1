#!/usr/bin/env bash
# Puts the Java kafka-clients 3.9.1 jar (and the jars it needs at run time) into compat/jars/.
#
# No Maven repository is reachable from our machines; the jars ship inside a Python wheel on PyPI
# (see ../shared/CLIENTS.md). The ~92 MB wheel is downloaded once into a cache directory and reused.
# Idempotent and quiet when everything is already in place.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jars_dir="$here/jars"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/partita"
wheel_pkg="shigawire-apache-flink-libraries==2.0.0.post1"
wheel_file="shigawire_apache_flink_libraries-2.0.0.post1-py3-none-any.whl"
wanted=(kafka-clients.jar slf4j-api.jar lz4-java.jar snappy-java.jar zstd-jni.jar)

missing=0
for jar in "${wanted[@]}"; do
  [[ -s "$jars_dir/$jar" ]] || missing=1
done
if [[ $missing -eq 0 ]]; then
  exit 0
fi

mkdir -p "$cache_dir" "$jars_dir"
if [[ ! -s "$cache_dir/$wheel_file" ]]; then
  echo "fetch-java-jars: downloading $wheel_pkg (about 92 MB, once) into $cache_dir" >&2
  python=python3
  if [[ -x "$here/.venv/bin/python" ]]; then
    python="$here/.venv/bin/python"
  fi
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$cache_dir" "$wheel_pkg"
fi

members=()
for jar in "${wanted[@]}"; do
  members+=("pyflink/lib/$jar")
done
python3 - "$cache_dir/$wheel_file" "$jars_dir" "${members[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    for name in members:
        target = os.path.join(dest, os.path.basename(name))
        tmp = target + ".tmp"
        with zf.open(name) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(tmp, target)
PY
echo "fetch-java-jars: jars ready in $jars_dir" >&2
