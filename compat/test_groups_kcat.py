"""kcat -G (balanced consumer, librdkafka 2.0.2: older group request versions) against Partita:
two groups on one topic each get every record; within a group of two kcats each record goes to
one of them."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from confluent_util import admin_client, create_topic
from group_util import GROUP_DEADLINE, group_assignment, produce_numbered
from partita_compat import _die_with_parent, unique_name, wait_until

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not found (apt-get install -y kcat)")


class KcatMember:
    def __init__(self, bootstrap, group, topic, stderr_path):
        self.values = []
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [KCAT, "-b", bootstrap, "-G", group, topic, "-u", "-f", "REC %s\\n",
                 "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000",
                 "-X", "heartbeat.interval.ms=300", "-X", "fetch.wait.max.ms=100"],
                stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=_die_with_parent)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            # (kcat 1.7's -J output in -G mode is not valid JSON: "broker": has no value.)
            if line.startswith("REC "):
                self.values.append(line[4:].strip())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stderr(self):
        return open(self.stderr_path, errors="replace").read()[-3000:]


@pytest.mark.timeout(120)
def test_kcat_groups_broadcast(start_broker, topic_name, tmp_path):
    b = start_broker({"group.initial.rebalance.delay.ms": 0})
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 3)
    pair, single = unique_name("kcat-pair"), unique_name("kcat-single")
    ms = {pair: [KcatMember(b.bootstrap, pair, topic_name, tmp_path / f"pair{i}.stderr")
                 for i in range(2)],
          single: [KcatMember(b.bootstrap, single, topic_name, tmp_path / "single.stderr")]}
    try:
        for g, members in ms.items():
            def stable(g=g, members=members):
                a = group_assignment(admin, g, topic_name)
                return (a is not None and len(a) == len(members)
                        and sorted(p for parts in a.values() for p in parts) == [0, 1, 2]
                        and all(a.values()))
            try:
                wait_until(stable, GROUP_DEADLINE, f"kcat group {g} stable")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n" + "\n".join(m.stderr() for m in members)) \
                    from None
        values = produce_numbered(b.bootstrap, topic_name, range(3), 20)
        for g, members in ms.items():
            wait_until(lambda: set(values) <= {v for m in members for v in m.values},
                       GROUP_DEADLINE, f"group {g} received every record")
            got = [v for m in members for v in m.values]
            assert sorted(got) == sorted(values), f"group {g}: duplicates or extras"
            if len(members) == 2:
                assert all(m.values for m in members), "one kcat of the pair got nothing"
    finally:
        for members in ms.values():
            for m in members:
                m.stop()
