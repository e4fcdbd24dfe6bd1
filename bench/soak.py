#!/usr/bin/env python3
"""Load soak (issue 7, item 6): many consumer groups heartbeating while data moves.

    python3 bench/soak.py                  # 10 minutes, 100 groups x 10 members
    python3 bench/soak.py --minutes 2      # a quick run

It starts its own broker (target/debug/partita, or --binary) on a free port and a fresh data
directory, then runs, until the time is up:

- `--groups` x `--members` classic-protocol group members (JoinGroup v5 with KIP-394's
  MEMBER_ID_REQUIRED, SyncGroup v3, Heartbeat v3 every `--heartbeat-ms`), written against the
  wire protocol with asyncio so that a thousand of them fit in one process: one connection
  each, the first member of each generation assigning the partitions of the group's topic;
- `--producers` confluent-kafka producers writing to a data topic and a confluent-kafka
  consumer group of `--consumers` members reading it.

Then it stops by itself and prints: rebalances (from the broker's `event=` log lines, by
cause, and split into warm-up and steady state), member removals with their reasons,
heartbeats (sent, errors by code, latency, the longest gap between two successful ones of a
member against the session timeout: a "missed" heartbeat is a gap above it, or an error), data
moved, and the broker's RSS over time with its growth after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Kafka error codes the members react to.
NONE, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS = 0, 22, 25, 27
MEMBER_ID_REQUIRED, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR = 79, 14, 16

# ----------------------------------------------------------------------- wire encoding


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def blob(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items):
    return i32(len(items)) + b"".join(items)


class Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n):
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def blob(self):
        n = self.i32()
        return None if n < 0 else self.take(n)


def subscription(topic: str) -> bytes:
    """ConsumerProtocolSubscription v0: the group's one topic."""
    return i16(0) + array([string(topic)]) + blob(None)


def assignment(topic: str, partitions) -> bytes:
    """ConsumerProtocolAssignment v0."""
    return i16(0) + array([string(topic) + array([i32(p) for p in partitions])]) + blob(None)


class Connection:
    """One member's connection: request header v1, answers in order."""

    def __init__(self, reader, writer, client_id):
        self.reader, self.writer, self.client_id = reader, writer, client_id
        self.correlation = 0

    @classmethod
    async def open(cls, port, client_id):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, client_id)

    async def call(self, api_key, version, body: bytes) -> Reader:
        self.correlation += 1
        frame = i16(api_key) + i16(version) + i32(self.correlation) + string(self.client_id) + body
        self.writer.write(i32(len(frame)) + frame)
        await self.writer.drain()
        size = struct.unpack(">i", await self.reader.readexactly(4))[0]
        r = Reader(await self.reader.readexactly(size))
        assert r.i32() == self.correlation, "correlation id mismatch"
        return r

    def close(self):
        self.writer.close()


# ----------------------------------------------------------------------- group members


class Stats:
    def __init__(self):
        self.heartbeats = 0
        self.heartbeat_errors = collections.Counter()
        self.heartbeat_latency = []
        self.max_gap = {}          # member name -> longest gap between successful heartbeats
        self.joins = 0
        self.join_errors = collections.Counter()
        self.sync_errors = collections.Counter()
        self.stable_at = {}        # member name -> first time it got an assignment


async def member(name, group, topic, partitions, args, stats: Stats, stop: asyncio.Event):
    conn = await Connection.open(args.port, f"soak-{name}")
    member_id = ""
    session_ms, heartbeat_s = args.session_ms, args.heartbeat_ms / 1000
    try:
        while not stop.is_set():
            # JoinGroup v5
            body = (string(group) + i32(session_ms) + i32(args.rebalance_ms) + string(member_id)
                    + string(None) + string("consumer")
                    + array([string("range") + blob(subscription(topic))]))
            r = await conn.call(11, 5, body)
            r.i32()
            err, generation = r.i16(), r.i32()
            r.string()
            leader, member_id_back = r.string(), r.string()
            members = [(r.string(), r.string(), r.blob()) for _ in range(r.i32())]
            stats.joins += 1
            if err == MEMBER_ID_REQUIRED:
                member_id = member_id_back
                continue
            if err == UNKNOWN_MEMBER_ID:
                member_id = ""
                continue
            if err != NONE:
                stats.join_errors[err] += 1
                await asyncio.sleep(0.5)
                continue
            member_id = member_id_back
            assignments = []
            if leader == member_id:
                ids = sorted(m[0] for m in members)
                for i, mid in enumerate(ids):
                    mine = [p for p in range(partitions) if p % len(ids) == i]
                    assignments.append(string(mid) + blob(assignment(topic, mine)))
            # SyncGroup v3
            r = await conn.call(14, 3, string(group) + i32(generation) + string(member_id)
                                + string(None) + array(assignments))
            r.i32()
            err = r.i16()
            if err != NONE:
                stats.sync_errors[err] += 1
                continue
            stats.stable_at.setdefault(name, time.monotonic())
            # Heartbeat v3 until the group rebalances or the run ends.
            last_ok = time.monotonic()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), heartbeat_s)
                    break
                except asyncio.TimeoutError:
                    pass
                t0 = time.monotonic()
                r = await conn.call(12, 3, string(group) + i32(generation) + string(member_id)
                                    + string(None))
                t1 = time.monotonic()
                r.i32()
                err = r.i16()
                stats.heartbeats += 1
                stats.heartbeat_latency.append(t1 - t0)
                if err != NONE:
                    stats.heartbeat_errors[err] += 1
                    if err == UNKNOWN_MEMBER_ID:
                        member_id = ""
                    break  # rejoin
                stats.max_gap[name] = max(stats.max_gap.get(name, 0.0), t1 - last_ok)
                last_ok = t1
        # LeaveGroup v3 at the end, so that the broker's log shows a clean exit.
        if member_id:
            await conn.call(13, 3, string(group) + array([string(member_id) + string(None)]))
    finally:
        conn.close()


async def run_members(args, stats: Stats, deadline: float):
    stop = asyncio.Event()
    tasks = []
    for g in range(args.groups):
        group, topic = f"soak-group-{g:03d}", f"soak-topic-{g % 10}"
        for m in range(args.members):
            tasks.append(asyncio.create_task(
                member(f"{g}.{m}", group, topic, 12, args, stats, stop)))
        await asyncio.sleep(args.ramp_s / args.groups)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    stop.set()
    # Members blocked in a JoinGroup that waits for others get a few seconds, then are cut.
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)
            and not isinstance(r, asyncio.CancelledError)]


# ----------------------------------------------------------------------- data movers


def data_movers(args, deadline: float, moved: dict):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topics = [NewTopic("soak-data", num_partitions=12, replication_factor=1)]
    topics += [NewTopic(f"soak-topic-{i}", num_partitions=12, replication_factor=1)
               for i in range(10)]
    for f in admin.create_topics(topics).values():
        f.result(30)

    def produce():
        p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "acks": "all",
                      "enable.idempotence": True, "log_level": 2})
        interval = args.producers / max(1, args.rate)
        n = 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            try:
                p.produce("soak-data", value=b"x" * args.record_bytes, key=str(n).encode(),
                          on_delivery=lambda err, _m: moved.__setitem__(
                              "produced" if err is None else "produce_errors",
                              moved["produced" if err is None else "produce_errors"] + 1))
                n += 1
            except BufferError:
                pass
            p.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        p.flush(30)

    def consume(i):
        c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "soak-readers",
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 1000, "log_level": 2})
        c.subscribe(["soak-data"])
        while time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    moved["consumed"] += 1
        c.close()

    threads = [threading.Thread(target=produce, daemon=True) for _ in range(args.producers)]
    threads += [threading.Thread(target=consume, args=(i,), daemon=True)
                for i in range(args.consumers)]
    for t in threads:
        t.start()
    return threads


# ----------------------------------------------------------------------- the broker


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return -1


EVENT = re.compile(r'event="?(\w+)"?')
FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_events(log_text: str, warmup_end_wall: float, end_wall: float):
    """(event name, fields, phase) for each `event=` line of the broker log; the phase is
    "warm-up", "steady state" or "shutdown" (members leaving at the end)."""
    out = []
    for line in log_text.splitlines():
        m = EVENT.search(line)
        if not m:
            continue
        fields = {k: v.strip('"') for k, v in FIELD.findall(line)}
        stamp = line.split()[0]
        try:
            wall = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            wall += float("0." + stamp[20:26]) if len(stamp) > 20 else 0
        except ValueError:
            wall = 0.0
        phase = ("warm-up" if wall < warmup_end_wall
                 else "steady state" if wall < end_wall else "shutdown")
        out.append((m.group(1), fields, phase))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--session-ms", type=int, default=30000)
    ap.add_argument("--rebalance-ms", type=int, default=60000)
    ap.add_argument("--heartbeat-ms", type=int, default=3000)
    ap.add_argument("--ramp-s", type=float, default=20, help="time over which members join")
    ap.add_argument("--warmup-s", type=float, default=60,
                    help="memory and rebalances before this are warm-up")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000, help="records per second, all producers")
    ap.add_argument("--record-bytes", type=int, default=200)
    ap.add_argument("--binary", default=str(REPO / "target" / "debug" / "partita"))
    ap.add_argument("--sample-s", type=float, default=10, help="RSS sampling interval")
    args = ap.parse_args()

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.groups * args.members * 2 + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    workdir = Path(tempfile.mkdtemp(prefix="partita-soak-"))
    args.port = free_port()
    args.bootstrap = f"127.0.0.1:{args.port}"
    log_path = workdir / "broker.log"
    cmd = [args.binary, "broker", "--listen", args.bootstrap, "--advertised", args.bootstrap,
           "--data-dir", str(workdir / "data"), "--set", "http.listen=",
           "--set", "group.initial.rebalance.delay.ms=3000"]
    log = open(log_path, "wb")
    broker = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    print(f"broker pid {broker.pid} on {args.bootstrap}, data and log in {workdir}")

    started = time.monotonic()
    started_wall = time.time()
    deadline = started + args.minutes * 60
    warmup_end_wall = started_wall + args.warmup_s
    moved = collections.Counter()
    movers = data_movers(args, deadline, moved)

    rss = []
    sampling = threading.Event()

    def sample():
        while not sampling.wait(args.sample_s):
            rss.append((time.monotonic() - started, rss_kib(broker.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    rss.append((0.0, rss_kib(broker.pid)))
    sampler.start()

    stats = Stats()
    try:
        failures = asyncio.run(run_members(args, stats, deadline))
    finally:
        for t in movers:
            t.join(timeout=40)
        sampling.set()
        alive = broker.poll() is None
        broker.send_signal(signal.SIGINT)
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()
    elapsed = time.monotonic() - started

    # --------------------------------------------------------------- report
    events = parse_events(log_path.read_text(errors="replace"), warmup_end_wall,
                          started_wall + args.minutes * 60)
    total = args.groups * args.members
    print(f"\n=== soak: {args.groups} groups x {args.members} members, "
          f"{elapsed / 60:.1f} min, broker {'alive' if alive else 'DIED'} until the end")
    if failures:
        print(f"member tasks that failed: {len(failures)}, e.g. {failures[0]!r}")
    stable = len(stats.stable_at)
    if stable:
        ramp = max(stats.stable_at.values()) - started
        print(f"members with an assignment: {stable}/{total} (the last after {ramp:.1f} s)")

    for phase in ("warm-up", "steady state", "shutdown"):
        rebalances = collections.Counter(f.get("cause", "?") for e, f, p in events
                                         if e == "rebalance_started" and p == phase)
        removed = collections.Counter(f.get("reason", "?") for e, f, p in events
                                      if e == "member_removed" and p == phase)
        groups = {f.get("group") for e, f, p in events if e == "rebalance_started" and p == phase}
        print(f"rebalances in {phase} (warm-up = first {args.warmup_s:.0f} s): "
              f"{sum(rebalances.values())} in {len(groups)} groups, by cause {dict(rebalances)}; "
              f"members removed {dict(removed) or 0}")
    uncaused = [f for e, f, _ in events if e == "rebalance_started" and not f.get("cause")]
    print(f"rebalances without a cause: {len(uncaused)}")
    lat = sorted(stats.heartbeat_latency) or [0.0]
    missed_gaps = [g for g in stats.max_gap.values() if g * 1000 > args.session_ms]
    print(f"heartbeats: {stats.heartbeats} sent, errors {dict(stats.heartbeat_errors) or 0}; "
          f"latency median {statistics.median(lat) * 1e3:.2f} ms, "
          f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms, max {lat[-1] * 1e3:.1f} ms")
    gaps = sorted(stats.max_gap.values()) or [0.0]
    print(f"longest gap between a member's successful heartbeats: {gaps[-1]:.2f} s "
          f"(interval {args.heartbeat_ms / 1000:.1f} s, session timeout "
          f"{args.session_ms / 1000:.0f} s); members with a gap above the session timeout: "
          f"{len(missed_gaps)}")
    print(f"joins {stats.joins} (errors {dict(stats.join_errors) or 0}), "
          f"sync errors {dict(stats.sync_errors) or 0}")
    print(f"data: produced {moved['produced']} records of {args.record_bytes} B "
          f"({moved['produce_errors']} errors), consumed {moved['consumed']}")
    print("broker RSS (MiB) over time:")
    print("  " + "  ".join(f"{t:.0f}s:{kib / 1024:.1f}" for t, kib in rss))
    after = [kib for t, kib in rss if t >= args.warmup_s and kib > 0]
    if len(after) >= 2:
        print(f"RSS after warm-up: first {after[0] / 1024:.1f} MiB, last {after[-1] / 1024:.1f} "
              f"MiB, max {max(after) / 1024:.1f} MiB, growth {(after[-1] - after[0]) / 1024:+.1f}"
              f" MiB")
    return 0 if alive and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
