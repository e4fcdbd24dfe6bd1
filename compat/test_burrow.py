"""Burrow, LinkedIn's consumer lag monitor (Debian's Burrow 1.2.1), watching a Partita group.

Burrow is a Kafka client of its own (Go, sarama): its cluster module asks every partition leader
for the log-end offsets (ListOffsets v0, whatever `kafka-version` says: Burrow 1.2.1 builds a bare
sarama.OffsetRequest and reads the v0 `old_style_offsets`), its consumer module reads
`__consumer_offsets` from the start and decodes the commit and group-metadata records in Kafka's
own format, and it keeps its locks in ZooKeeper. (Burrow 1.2.1 predates group-metadata value
version 3, written by Kafka 2.3+ and Partita alike: it logs "failed to decode ... value version"
and shows no owners; offsets and lag do not depend on it.) The test starts all of it against a
broker the test starts:

    ZooKeeper 3.8 (Debian `zookeeper`) on a free loopback port, its data in the test's tmp dir;
    Burrow with a config written by the test: cluster and consumer modules pointing at the broker,
    the HTTP API on a free loopback port;
    one confluent-kafka group member that consumes the topic and commits after processing, leaving
    a different lag on each partition.

Then it polls Burrow's HTTP API until it reports the group, and checks that the committed offsets
and the lag it reports per partition are exactly what `partita groups describe --output json`
prints, and that its log-end offsets are the topic's.

Everything runs in child processes that die with the test process (PR_SET_PDEATHSIG) and are
SIGKILLed at teardown. When the test fails, Burrow's and ZooKeeper's logs are in the report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from confluent_kafka import Consumer, TopicPartition

from confluent_util import admin_client, create_topic
from group_util import produce_numbered
from partita_compat import _die_with_parent, broker_binary, free_port, wait_until

BURROW = shutil.which("Burrow") or shutil.which("burrow")
ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"

pytestmark = pytest.mark.skipif(
    BURROW is None or not os.path.exists(ZK_SERVER),
    reason="Burrow or ZooKeeper not installed (scripts/setup: apt-get install -y burrow zookeeper)")

# How long ZooKeeper and Burrow may take to come up, and Burrow to report what it must report.
START_DEADLINE = 60.0
BURROW_DEADLINE = 90.0

CLUSTER = "partita"


class Service:
    """A child process with its output in a file."""

    def __init__(self, name: str, cmd: List[str], log_path: Path, env: Optional[dict] = None,
                 cwd: Optional[Path] = None):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, cwd=cwd, preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with status {self.proc.returncode}:\n"
                                 f"{self.log_tail()}")

    def log_tail(self, chars: int = 12000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no {self.name} log)"
        return text[-chars:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def start_zookeeper(tmp_path: Path) -> tuple:
    """ZooKeeper standalone on 127.0.0.1:<free port>; returns (service, port)."""
    port = free_port()
    data = tmp_path / "zk-data"
    data.mkdir()
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(
        "tickTime=2000\n"
        f"dataDir={data}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n"   # no Jetty admin server on :8080
        "4lw.commands.whitelist=srvr\n")
    env = dict(os.environ)
    env["JMXDISABLE"] = "true"        # no JMX listener on a random public port
    env["JVMFLAGS"] = "-Xmx128m -XX:+UseSerialGC -Dzookeeper.root.logger=INFO,CONSOLE"
    zk = Service("zookeeper", [ZK_SERVER, "start-foreground", str(cfg)],
                 tmp_path / "zookeeper.log", env=env)

    def ready():
        # `ruok` answers imok before the server takes sessions; `srvr` names the mode only then.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"srvr")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        return b"Mode: standalone" in answer

    poll(ready, START_DEADLINE, f"ZooKeeper serving on 127.0.0.1:{port}", [zk], 0.2)
    return zk, port


def poll(cond, timeout: float, msg: str, watched: List[Service], interval: float = 0.5):
    """Polls `cond` until it returns a truthy value (exceptions count as "not yet"), and fails at
    once, with its log, when a watched service has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        for s in watched:
            if not s.alive():
                raise AssertionError(f"{s.name} exited with status {s.proc.returncode} while "
                                     f"waiting for {msg}:\n{s.log_tail(4000)}")
        try:
            value = cond()
            if value:
                return value
            last = f"last value: {value!r}"
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = f"last error: {exc!r}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {msg}; {last}")
        time.sleep(interval)


def burrow_config(bootstrap: str, zk_port: int, http_port: int, pidfile: Path) -> str:
    # Burrow 1.2.1's format (TOML, see the Debian package's /etc/burrow/burrow.toml). Refreshes are
    # short so that the test does not wait; the consumer module reads __consumer_offsets from the
    # beginning (start-latest=false), and no group is blacklisted.
    return f"""
[general]
pidfile="{pidfile}"

[logging]
level="debug"

[zookeeper]
servers=["127.0.0.1:{zk_port}"]
timeout=6
root-path="/burrow"

[client-profile.test]
client-id="burrow-test"
kafka-version="2.0.0"

[cluster.{CLUSTER}]
class-name="kafka"
servers=["{bootstrap}"]
client-profile="test"
topic-refresh=2
offset-refresh=1

[consumer.{CLUSTER}]
class-name="kafka"
cluster="{CLUSTER}"
servers=["{bootstrap}"]
client-profile="test"
offsets-topic="__consumer_offsets"
start-latest=false
group-blacklist=""
group-whitelist=""

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=4
intervals=10
expire-group=604800
min-distance=1
"""


class BurrowProc(Service):
    def __init__(self, tmp_path: Path, bootstrap: str, zk_port: int):
        self.http_port = free_port()
        conf_dir = tmp_path / "burrow"
        conf_dir.mkdir()
        (conf_dir / "burrow.toml").write_text(
            burrow_config(bootstrap, zk_port, self.http_port, conf_dir / "burrow.pid"))
        super().__init__("Burrow", [BURROW, "-config-dir", str(conf_dir)],
                         tmp_path / "burrow.log", cwd=conf_dir)

    def get(self, path: str) -> dict:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:   # Burrow answers 404 with a JSON body
            return json.loads(exc.read())

    def problems(self, broker=None) -> str:
        """Burrow's error and warning log lines (deduplicated), and the broker's reasons for
        closing connections: the first place to look."""
        seen, out = set(), []
        for line in self.log_tail(200_000).splitlines():
            if '"level":"error"' in line or '"level":"warn"' in line:
                try:
                    d = json.loads(line)
                    key = (d.get("msg"), d.get("sarama_error"), d.get("reason"))
                except ValueError:
                    key = line
                if key not in seen:
                    seen.add(key)
                    out.append(line)
        text = "\n".join(out[:20]) or "(none)"
        if broker is not None:
            closing = sorted({re.sub(r" \(correlation id \d+\)", "", line.split("reason=", 1)[-1])
                              for line in broker.log_text().splitlines()
                              if "closing connection" in line})
            text += "\nthe broker closed connections because:\n" + ("\n".join(closing[:10])
                                                                   or "(no such log line)")
        return text


def partita_describe(bootstrap: str, group: str) -> dict:
    out = subprocess.run(
        [str(broker_binary()), "groups", "describe", "--group", group,
         "--bootstrap-server", bootstrap, "--output", "json"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"partita groups describe failed: {out.stderr}"
    return json.loads(out.stdout)


@pytest.fixture
def services(extra_logs):
    """Started services go in this list: their logs join a failure report, and they are killed at
    teardown."""
    class Started(list):
        def append(self, s: Service) -> None:
            super().append(s)
            extra_logs.append((f"{s.name} log ({s.log_path})", s.log_tail))

    started = Started()
    yield started
    for s in reversed(started):
        s.kill()


@pytest.mark.timeout(240)
def test_burrow_reports_partita_group_lag(start_broker, services, topic_name, group_name,
                                          tmp_path):
    b = start_broker({"group.initial.rebalance.delay.ms": 0})
    create_topic(admin_client(b.bootstrap), topic_name, 3)
    produce_numbered(b.bootstrap, topic_name, range(3), 20)          # 20 records per partition

    zk, zk_port = start_zookeeper(tmp_path)
    services.append(zk)
    burrow = BurrowProc(tmp_path, b.bootstrap, zk_port)
    services.append(burrow)

    # Burrow drops commits for topics its cluster module has not seen yet, so let it learn the
    # topic and its log-end offsets first.
    def topic_known():
        d = burrow.get(f"/v3/kafka/{CLUSTER}/topic/{topic_name}")
        return d.get("offsets") == [20, 20, 20] and d
    try:
        poll(topic_known, BURROW_DEADLINE,
             f"Burrow's /v3/kafka/{CLUSTER}/topic/{topic_name} showing offsets [20, 20, 20]",
             services)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nBurrow's errors and warnings:\n{burrow.problems(b)}") \
            from None

    # A real group member: it processes records and commits after processing, but stops
    # processing partition 1 at offset 5 and partition 2 at offset 12 (a slow consumer), so the
    # lag is 0 on partition 0, 15 on partition 1 and 8 on partition 2.
    stop_at = {0: 20, 1: 5, 2: 12}
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group_name,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                  "client.id": "burrow-test-member"})
    try:
        c.subscribe([topic_name])
        processed = {p: 0 for p in stop_at}

        def consumed_enough():
            m = c.poll(0.5)
            if m is not None and m.error() is None and m.offset() < stop_at[m.partition()]:
                processed[m.partition()] = m.offset() + 1
                c.commit(offsets=[TopicPartition(topic_name, m.partition(), m.offset() + 1)],
                         asynchronous=False)
                if processed[m.partition()] == stop_at[m.partition()]:
                    c.pause([TopicPartition(topic_name, m.partition())])
            return processed == stop_at
        wait_until(consumed_enough, 60, f"the member processing up to {stop_at}", 0)

        want = {0: (20, 0), 1: (5, 15), 2: (12, 8)}                 # partition: (offset, lag)
        desc = partita_describe(b.bootstrap, group_name)
        rows = {r["partition"]: (r["current_offset"], r["lag"]) for r in desc["rows"]
                if r["topic"] == topic_name}
        assert rows == want, f"partita groups describe: {desc}"

        # Burrow lists the group ...
        try:
            poll(lambda: group_name in burrow.get(f"/v3/kafka/{CLUSTER}/consumer")
                 .get("consumers", []), BURROW_DEADLINE,
                 f"Burrow listing group {group_name} in /v3/kafka/{CLUSTER}/consumer", services)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nBurrow's errors and warnings:\n{burrow.problems(b)}") \
                from None

        # ... and its lag evaluation ends with the same offsets and lag per partition.
        last: Dict[str, object] = {}

        def burrow_rows():
            d = burrow.get(f"/v3/kafka/{CLUSTER}/consumer/{group_name}/lag")
            last["lag"] = d
            st = d.get("status") or {}
            got = {}
            for p in st.get("partitions") or []:
                if p.get("topic") != topic_name or not p.get("end"):
                    continue
                got[p["partition"]] = (p["end"]["offset"], p["current_lag"])
            return got == rows and st
        try:
            status = poll(burrow_rows, BURROW_DEADLINE,
                          f"Burrow's /lag for {group_name} equal to partita's {rows}", services)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast /lag answer: {json.dumps(last.get('lag'))}\n"
                                 f"Burrow's errors and warnings:\n{burrow.problems(b)}") from None
        assert status["totallag"] == sum(lag for _, lag in rows.values()), status
        assert status["partition_count"] == 3, status
        # (Burrow's verdict on the lagging partitions depends on its commit history, a few
        # seconds here; a partition without lag is always OK.)
        assert [p["status"] for p in status["partitions"] if p["partition"] == 0] == ["OK"], status

        # The raw offsets view agrees too: the newest commit of each partition, and its lag.
        d = burrow.get(f"/v3/kafka/{CLUSTER}/consumer/{group_name}")
        parts = d["topics"][topic_name]
        for p, (off, lag) in rows.items():
            newest = [o for o in parts[p]["offsets"] if o is not None][-1]
            assert newest["offset"] == off, (p, parts[p])
            assert parts[p]["current-lag"] == lag, (p, parts[p])

        # The log-end offsets Burrow reads from the broker are the ones partita prints.
        leo = {r["partition"]: r["log_end_offset"] for r in desc["rows"]}
        topic = burrow.get(f"/v3/kafka/{CLUSTER}/topic/{topic_name}")
        assert topic["offsets"] == [leo[0], leo[1], leo[2]], topic
    finally:
        c.close()
    zk.check_alive()
    burrow.check_alive()
