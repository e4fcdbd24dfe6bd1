"""Java kafka-clients 3.9.1 (the reference client) against Partita: runs compat/java/CompatTest."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from partita_compat import COMPAT_DIR

JAVA_DIR = COMPAT_DIR / "java"
JARS_DIR = COMPAT_DIR / "jars"
BUILD_DIR = JAVA_DIR / "build"
SOURCES = sorted(JAVA_DIR.glob("*.java"))


def _classpath(*extra) -> str:
    return ":".join([str(JARS_DIR / "*"), *map(str, extra)])


@pytest.fixture(scope="session")
def compiled_java():
    """Fetches the jars if needed and compiles CompatTest.java once; class files are cached in
    compat/java/build/ and rebuilt only when a source file changes."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` not found: a JDK 17 is needed (apt-get install -y openjdk-17-jdk-headless)")
    subprocess.run(["bash", str(COMPAT_DIR / "fetch-java-jars.sh")], check=True, timeout=600)
    digest = hashlib.sha256()
    for src in SOURCES:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    stamp = BUILD_DIR / ".source-sha256"
    if not (stamp.exists() and stamp.read_text() == digest.hexdigest()):
        if BUILD_DIR.exists():
            shutil.rmtree(BUILD_DIR)
        BUILD_DIR.mkdir(parents=True)
        proc = subprocess.run(["javac", "-Xlint:all", "-Werror", "-d", str(BUILD_DIR),
                               "-cp", _classpath(), *map(str, SOURCES)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"javac failed:\n{proc.stdout}\n{proc.stderr}"
        stamp.write_text(digest.hexdigest())
    return BUILD_DIR


@pytest.mark.timeout(240)
def test_java_kafka_clients(broker, topic_name, compiled_java):
    proc = subprocess.run(["java", "-cp", _classpath(compiled_java), "CompatTest",
                           broker.bootstrap, topic_name],
                          capture_output=True, text=True, timeout=200)
    out = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, f"CompatTest exited {proc.returncode}\n{out}"
    assert proc.stdout.strip().endswith("OK"), out
