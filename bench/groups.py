#!/usr/bin/env python3
"""Group-scale benchmark: one broker holding 1,000 and 10,000 consumer groups at once, every
group a classic group of one member that joins, syncs, commits an offset and then heartbeats
at the Java client's defaults (heartbeat.interval.ms=3000, session.timeout.ms=45000).

For each count and broker it reports how long the groups took to form, the broker's RSS before
and with the groups, heartbeat latency seen by the members (p50, p99, max, over a window of
HEARTBEAT_WINDOW_S seconds in which every member heartbeats several times), ListGroups and
DescribeGroups time, and how many heartbeats failed (an error code: the member was dropped or
a rebalance started; there should be none). For Partita it also reads the heartbeat p99 from
the broker's own request histogram, and times a restart after a clean stop: from start to the
last group's committed offset being served, with every group's state read back.

Members are written with kafka-python's protocol messages (its codec of Kafka's JSON schemas)
on asyncio connections, GROUPS_PER_CONNECTION groups to a connection: 10,000 members with a
connection each would need more descriptors than the 4,096 hard limit the broker runs under
(`prlimit`, as in bench/scale.py). The figures are the cost of a group, not of a connection.

    $(scripts/python) bench/groups.py                         # 1,000 and 10,000 groups,
                                                              # Partita and Tansu 0.6.0; writes
                                                              # bench/results/groups-<date>.md
    $(scripts/python) bench/groups.py --groups 100 --brokers partita   # a quick look

Uses target/release/partita (PARTITA_BIN to override; cargo build --release first) and
~/.cache/partita/bin/tansu (bench/setup.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "compat"))
os.environ.setdefault("PARTITA_BIN", str(REPO / "target" / "release" / "partita"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka.protocol.admin import (DescribeGroupsRequest, DescribeGroupsResponse,  # noqa: E402
                                  ListGroupsRequest, ListGroupsResponse)
from kafka.protocol.consumer.group import (HeartbeatRequest, HeartbeatResponse,  # noqa: E402
                                           JoinGroupRequest, JoinGroupResponse,
                                           OffsetCommitRequest, OffsetCommitResponse,
                                           OffsetFetchRequest, OffsetFetchResponse,
                                           SyncGroupRequest, SyncGroupResponse)
from kafka.protocol.consumer.metadata import (ConsumerProtocolAssignment,  # noqa: E402
                                              ConsumerProtocolSubscription)

import benchlib  # noqa: E402
from benchlib import git_desc, machine_info, md_table  # noqa: E402
from partita_compat import Broker, broker_binary, free_port  # noqa: E402
from scale import LIMITS, heartbeat_p99_ms, rss_mib  # noqa: E402

TANSU = Path(os.environ.get("TANSU_BIN") or Path.home() / ".cache" / "partita" / "bin" / "tansu")
TOPIC = "groups-bench"
PARTITIONS = 10
GROUPS_PER_CONNECTION = 50
HEARTBEAT_MS = 3000
SESSION_TIMEOUT_MS = 45000
HEARTBEAT_WINDOW_S = 30
# Groups forming at once, each on a connection of its own.
JOINING_AT_ONCE = 500

MEMBER_ID_REQUIRED = 79
VERSIONS = {JoinGroupRequest: 5, SyncGroupRequest: 3, HeartbeatRequest: 4,
            OffsetCommitRequest: 7, OffsetFetchRequest: 7, ListGroupsRequest: 4,
            DescribeGroupsRequest: 5}
RESPONSES = {JoinGroupRequest: JoinGroupResponse, SyncGroupRequest: SyncGroupResponse,
             HeartbeatRequest: HeartbeatResponse, OffsetCommitRequest: OffsetCommitResponse,
             OffsetFetchRequest: OffsetFetchResponse, ListGroupsRequest: ListGroupsResponse,
             DescribeGroupsRequest: DescribeGroupsResponse}


class Connection:
    """One Kafka connection carrying many groups' requests. Kafka answers a connection's
    requests in the order they were sent, so a queue of waiting futures matches them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.waiting: asyncio.Queue = asyncio.Queue()
        self.correlation = 0
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
        return cls(reader, writer)

    def encode(self, request_class, **fields) -> tuple[bytes, type, int]:
        version = VERSIONS[request_class]
        request = request_class[version](**fields)
        self.correlation += 1
        request.with_header(correlation_id=self.correlation, client_id="groups-bench")
        return bytes(request.encode(header=True, framed=True)), RESPONSES[request_class], version

    async def send_encoded(self, encoded: tuple[bytes, type, int]):
        data, response_class, version = encoded
        future = asyncio.get_running_loop().create_future()
        self.waiting.put_nowait((future, response_class, version))
        self.writer.write(data)
        return await future

    async def send(self, request_class, **fields):
        return await self.send_encoded(self.encode(request_class, **fields))

    async def _read(self) -> None:
        try:
            while True:
                size = int.from_bytes(await self.reader.readexactly(4), "big")
                body = await self.reader.readexactly(size)
                future, response_class, version = self.waiting.get_nowait()
                if not future.done():
                    future.set_result(response_class.decode(body, version=version, header=True))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            while not self.waiting.empty():
                future = self.waiting.get_nowait()[0]
                if not future.done():
                    future.set_exception(ConnectionError(f"connection closed: {exc!r}"))

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


def group_name(index: int) -> str:
    return f"bench-group-{index:05d}"


class Member:
    """The one member of a group: join (twice: the broker hands out the member id first),
    sync its own assignment as leader, commit an offset, then heartbeat."""

    def __init__(self, index: int, connection: Connection):
        self.index, self.connection = index, connection
        self.group = group_name(index)
        self.member_id = ""
        self.generation = -1
        self.latencies: list[float] = []
        self.errors: list[int] = []

    async def form(self, connection: Connection) -> None:
        metadata = ConsumerProtocolSubscription(version=0, topics=[TOPIC], user_data=None)
        protocol = JoinGroupRequest[5].JoinGroupRequestProtocol(
            name="range", metadata=bytes(metadata.encode(version=0)))
        for _ in range(5):
            joined = await connection.send(
                JoinGroupRequest, group_id=self.group, session_timeout_ms=SESSION_TIMEOUT_MS,
                rebalance_timeout_ms=60000, member_id=self.member_id, group_instance_id=None,
                protocol_type="consumer", protocols=[protocol])
            self.member_id = joined.member_id
            if joined.error_code != MEMBER_ID_REQUIRED:
                break
        if joined.error_code:
            raise RuntimeError(f"{self.group}: JoinGroup error {joined.error_code}")
        self.generation = joined.generation_id
        assignment = ConsumerProtocolAssignment(
            version=0, assigned_partitions=[(TOPIC, list(range(PARTITIONS)))], user_data=None)
        synced = await connection.send(
            SyncGroupRequest, group_id=self.group, generation_id=self.generation,
            member_id=self.member_id, group_instance_id=None,
            assignments=[SyncGroupRequest[3].SyncGroupRequestAssignment(
                member_id=self.member_id, assignment=bytes(assignment.encode(version=0)))])
        if synced.error_code:
            raise RuntimeError(f"{self.group}: SyncGroup error {synced.error_code}")
        committed = await connection.send(
            OffsetCommitRequest, group_id=self.group, generation_id_or_member_epoch=self.generation,
            member_id=self.member_id, group_instance_id=None,
            topics=[OffsetCommitRequest[7].OffsetCommitRequestTopic(
                name=TOPIC, partitions=[OffsetCommitRequest[7].OffsetCommitRequestTopic
                                        .OffsetCommitRequestPartition(
                                            partition_index=0, committed_offset=self.index,
                                            committed_leader_epoch=-1, committed_metadata="")])])
        errors = {p.error_code for t in committed.topics for p in t.partitions}
        if errors != {0}:
            raise RuntimeError(f"{self.group}: OffsetCommit errors {errors}")

    async def heartbeat(self, window: "Window") -> None:
        """Heartbeats from the moment the group formed, as a client does, until the window
        ends; latencies are kept for the heartbeats sent inside the window, errors for all."""
        # The same request every time (its correlation id too: answers are matched by order).
        encoded = self.connection.encode(
            HeartbeatRequest, group_id=self.group, generation_id=self.generation,
            member_id=self.member_id, group_instance_id=None)
        loop = asyncio.get_running_loop()
        # Groups formed in the same instant would otherwise beat in step forever: the first
        # beat comes at a random point of the interval, as members' phases spread in life.
        next_at = loop.time() + random.uniform(0, HEARTBEAT_MS / 1000)
        while window.end is None or next_at < window.end:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            sent = loop.time()
            response = await self.connection.send_encoded(encoded)
            if window.start is not None and sent >= window.start:
                self.latencies.append(loop.time() - sent)
            if response.error_code:
                self.errors.append(response.error_code)
            next_at += HEARTBEAT_MS / 1000


class Window:
    """The measured stretch of time, on the event loop's clock; unset until all groups formed."""

    def __init__(self):
        self.start: float | None = None
        self.end: float | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(host: str, port: int, groups: int, row: dict, on_window) -> None:
    """Forms `groups` groups on the broker at host:port, heartbeats for HEARTBEAT_WINDOW_S
    seconds (calling `on_window` in the middle), and fills `row`."""
    connections = [await Connection.open(host, port)
                   for _ in range(max(1, -(-groups // GROUPS_PER_CONNECTION)))]
    members = [Member(i, connections[i % len(connections)]) for i in range(groups)]
    started = time.monotonic()
    # A broker answers a connection's requests one at a time, and a group's first JoinGroup
    # waits group.initial.rebalance.delay.ms: groups form on connections of their own, as
    # members with a connection each would.
    forming = asyncio.Queue()
    for m in members:
        forming.put_nowait(m)

    window = Window()
    beats = []

    async def former() -> None:
        connection = await Connection.open(host, port)
        try:
            while not forming.empty():
                member = forming.get_nowait()
                await member.form(connection)
                beats.append(asyncio.create_task(member.heartbeat(window)))
        finally:
            connection.close()
    await asyncio.gather(*(former() for _ in range(min(JOINING_AT_ONCE, groups))))
    row["form_s"] = time.monotonic() - started

    loop = asyncio.get_running_loop()
    window.start = loop.time()
    window.end = window.start + HEARTBEAT_WINDOW_S
    await asyncio.sleep(HEARTBEAT_WINDOW_S / 2)
    on_window(row)
    await asyncio.gather(*beats)
    latencies = [x for m in members for x in m.latencies]
    row["heartbeats"] = len(latencies)
    row["hb_p50_ms"] = percentile(latencies, 0.5) * 1000
    row["hb_p99_ms"] = percentile(latencies, 0.99) * 1000
    row["hb_max_ms"] = max(latencies) * 1000
    row["hb_errors"] = dict(collections.Counter(e for m in members for e in m.errors))
    # After the window (decoding 10,000 descriptions would stall the members' event loop),
    # while every member is still within its session.
    probe = connections[0]
    t = time.monotonic()
    listed = await probe.send(ListGroupsRequest, states_filter=[])
    row["list_groups_s"] = time.monotonic() - t
    row["listed"] = len(listed.groups)
    t = time.monotonic()
    stable = 0
    for start in range(0, groups, 1000):
        described = await probe.send(
            DescribeGroupsRequest,
            groups=[group_name(i) for i in range(start, min(groups, start + 1000))],
            include_authorized_operations=False)
        stable += sum(1 for g in described.groups
                      if g.group_state == "Stable" and len(g.members) == 1)
    row["describe_s"] = time.monotonic() - t
    row["stable"] = stable
    for c in connections:
        c.close()


async def committed_offset(host: str, port: int, index: int) -> int:
    c = await Connection.open(host, port)
    try:
        fetched = await c.send(
            OffsetFetchRequest, group_id=group_name(index),
            topics=[OffsetFetchRequest[7].OffsetFetchRequestTopic(name=TOPIC,
                                                                  partition_indexes=[0])],
            require_stable=False)
        if fetched.error_code:
            return -1
        return fetched.topics[0].partitions[0].committed_offset
    finally:
        c.close()


def create_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(60)


def run_partita(groups: int, workdir: Path) -> dict:
    port = free_port()
    http = f"127.0.0.1:{free_port()}"
    broker = Broker(broker_binary(), port, workdir / f"data-{groups}",
                    workdir / f"partita-{groups}.log", settings={"http.listen": http},
                    prefix=LIMITS)
    row = {"broker": "partita", "groups": groups}
    broker.start()
    try:
        pid = broker.proc.pid
        create_topic(broker.bootstrap)
        row["rss_empty"] = rss_mib(pid)

        def during(r: dict) -> None:
            r["rss"] = rss_mib(pid)
        asyncio.run(load("127.0.0.1", port, groups, row, during))
        row["server_hb_p99"] = heartbeat_p99_ms(broker)
        broker.stop(timeout=600)
        t = time.monotonic()
        broker.start()
        deadline = time.monotonic() + 600
        while asyncio.run(committed_offset("127.0.0.1", port, groups - 1)) != groups - 1:
            if time.monotonic() > deadline:
                raise AssertionError("the last group's offset was not served after a restart")
            time.sleep(0.05)
        row["restart_s"] = time.monotonic() - t
        row["rss_restarted"] = rss_mib(broker.proc.pid)
        # Every group's offset came back, not only the last one's.
        wrong = [i for i in range(0, groups, max(1, groups // 100))
                 if asyncio.run(committed_offset("127.0.0.1", port, i)) != i]
        assert not wrong, f"offsets lost at restart for groups {wrong[:5]}"
    finally:
        broker.kill()
    return row


def run_tansu(groups: int, workdir: Path) -> dict:
    port = free_port()
    row = {"broker": "tansu", "groups": groups}
    broker = benchlib.Broker("tansu", LIMITS + [
        str(TANSU), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
        "--storage-engine", "memory://tansu/"], port, workdir)
    broker.start()
    try:
        create_topic(broker.bootstrap)
        row["rss_empty"] = rss_mib(broker.proc.pid)

        def during(r: dict) -> None:
            r["rss"] = rss_mib(broker.proc.pid)
        try:
            asyncio.run(asyncio.wait_for(load("127.0.0.1", port, groups, row, during), 1200))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            row["failed"] = f"{type(exc).__name__}: {exc}"[:160]
    finally:
        broker.stop()
    return row


def fmt(row: dict, key: str, spec: str = ".1f") -> str:
    value = row.get(key)
    if value is None:
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--brokers", default="partita,tansu")
    parser.add_argument("--tansu-groups", type=int, nargs="*",
                        help="the counts run on Tansu (default: all of --groups)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    brokers = args.brokers.split(",")
    if "tansu" in brokers and not TANSU.exists():
        sys.exit(f"no Tansu binary at {TANSU}: run bench/setup.sh, or --brokers partita")
    rows = []
    with tempfile.TemporaryDirectory(prefix="partita-groups-") as tmp:
        for groups in args.groups:
            for name in brokers:
                if name == "tansu" and args.tansu_groups is not None and \
                        groups not in args.tansu_groups:
                    continue
                row = (run_partita if name == "partita" else run_tansu)(groups, Path(tmp))
                print(row, flush=True)
                rows.append(row)
    header = ["broker", "groups", "formed in s", "heartbeat p50 / p99 / max ms (members)",
              "heartbeat p99 ms (broker)", "heartbeats failed", "ListGroups s",
              "DescribeGroups all s", "RSS empty MiB", "RSS with groups MiB",
              "clean restart s", "RSS restarted MiB"]
    table = []
    for r in rows:
        if "failed" in r and "hb_p99_ms" not in r:
            table.append([r["broker"], f"{r['groups']:,}", f"failed: {r['failed']}"]
                         + ["n/a"] * (len(header) - 3))
            continue
        table.append([
            r["broker"], f"{r['groups']:,}", fmt(r, "form_s"),
            f"{r['hb_p50_ms']:.1f} / {r['hb_p99_ms']:.1f} / {r['hb_max_ms']:.0f} "
            f"({r['heartbeats']:,} beats)",
            r.get("server_hb_p99", "n/a"),
            ", ".join(f"{n:,} x error {code}" for code, n in r["hb_errors"].items()) or "0",
            f"{fmt(r, 'list_groups_s', '.3f')} ({r['listed']:,} listed)",
            f"{fmt(r, 'describe_s', '.2f')} ({r['stable']:,} Stable)",
            fmt(r, "rss_empty", ".0f"), fmt(r, "rss", ".0f"),
            fmt(r, "restart_s", ".2f"), fmt(r, "rss_restarted", ".0f")])
    out = args.out or HERE / "results" / f"groups-{dt.date.today().isoformat()}.md"
    out.write_text(
        f"# Group scale, {dt.date.today().isoformat()}\n\n"
        f"`bench/groups.py --groups {' '.join(map(str, args.groups))} --brokers {args.brokers}`"
        f" at {git_desc()}; {machine_info()}.\n\n"
        f"Each group: one classic member (range), joined, synced, one offset committed, then a "
        f"heartbeat every {HEARTBEAT_MS} ms (session {SESSION_TIMEOUT_MS} ms) for "
        f"{HEARTBEAT_WINDOW_S} s; {GROUPS_PER_CONNECTION} groups per connection, at most "
        f"{JOINING_AT_ONCE} forming at once. Brokers under `{' '.join(LIMITS[:-1])}`. Partita "
        f"on its defaults; Tansu 0.6.0 with `--storage-engine memory://tansu/`.\n\n"
        + md_table(header, table) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
