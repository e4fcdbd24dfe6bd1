"""The Java AdminClient (kafka-clients 3.9.1) as a test sees it: compat/java/AdminGroups.java,
with the topic and config commands of compat/java/AdminTopics.java, in its own JVM that reads one
command per line and answers each with one JSON line (`JavaAdmin.call`).

Used by compat/test_admin_java.py (the consumer-group calls of kafka-consumer-groups.sh) and
compat/test_admin_topics_java.py (kafka-topics.sh, kafka-configs.sh, kafka-delete-records.sh,
kafka-get-offsets.sh). A test takes the `jadmin` fixture (with `compiled_java` imported from
test_java) and calls `jadmin(broker)`; each session's transcript is attached to a failure report.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from typing import Dict, List, Optional

import pytest

from partita_compat import COMPAT_DIR, _die_with_parent

JARS_DIR = COMPAT_DIR / "jars"


class JavaAdmin:
    """compat/java/AdminGroups.java in its own JVM: `call("describe g")` -> the JSON answer."""

    def __init__(self, build_dir, bootstrap: str, stderr_path):
        cp = ":".join([str(JARS_DIR / "*"), str(build_dir)])
        cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp,
               "AdminGroups", bootstrap]
        self.stderr_path = stderr_path
        self.transcript: List[str] = []
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, bufsize=1,
                                         preexec_fn=_die_with_parent)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(self, line: str, timeout: float = 90.0) -> dict:
        self.transcript.append(f">>> {line}")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            try:
                out = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"AdminGroups gave no answer to {line!r} within {timeout}s"
                                     f"\n{self.stderr_tail()}") from None
            if out is None:
                raise AssertionError(f"AdminGroups exited (status {self.proc.poll()}) on "
                                     f"{line!r}\n{self.stderr_tail()}")
            out = out.strip()
            if not out.startswith("{"):
                continue
            self.transcript.append(out)
            ans = json.loads(out)
            if ans.get("cmd") == line:
                return ans

    def stderr_tail(self, chars: int = 6000) -> str:
        try:
            return open(self.stderr_path, errors="replace").read()[-chars:]
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001 - teardown
                self.proc.kill()
                self.proc.wait()

    # --- typed helpers -------------------------------------------------------------------------
    def ok(self, line: str) -> dict:
        ans = self.call(line)
        assert ans["ok"], f"{line}: {ans}"
        return ans

    def listed(self, *opts: str) -> Dict[str, dict]:
        """group id -> listing (simple, state, type) of listConsumerGroups(opts)."""
        ans = self.ok(" ".join(["list", *opts]))
        return {g["group"]: g for g in ans["groups"]}

    def describe(self, group: str) -> dict:
        """The description of one group, or {"ok": False, "error": ...}."""
        return self.call(f"describe {group}")["groups"][group]

    def offsets(self, group: str) -> dict:
        return self.ok(f"offsets {group}")["offsets"]


@pytest.fixture
def jadmin(compiled_java, tmp_path, extra_logs):  # noqa: F811
    started: List[JavaAdmin] = []

    def start(broker) -> JavaAdmin:
        ja = JavaAdmin(compiled_java, broker.bootstrap, tmp_path / f"admin-{len(started)}.stderr")
        started.append(ja)
        extra_logs.append((f"AdminGroups transcript #{len(started)}",
                           lambda ja=ja: "\n".join(ja.transcript) + "\n--- stderr ---\n"
                           + ja.stderr_tail()))
        return ja

    yield start
    for ja in started:
        ja.close()
