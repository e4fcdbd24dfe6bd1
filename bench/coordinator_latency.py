#!/usr/bin/env python3
"""Group coordinator latency: heartbeats and commits of 1,000 active members, with and without
10,000 idle groups, on Partita and on Tansu 0.6.0 in the same run.

    python3 bench/coordinator_latency.py                 # after bench/setup.sh
    python3 bench/coordinator_latency.py --quick         # a short smoke run

For each broker, and for 0 and `--idle-groups` idle groups, on a fresh broker:

1. ten topics of 12 partitions are created;
2. the idle groups are made: one committed offset each, no member (what a stopped
   application leaves behind);
3. `--groups` x `--members` classic-protocol members join (the asyncio wire client of
   bench/soak.py: JoinGroup v5, SyncGroup v3, one connection each), ramped over `--ramp-s`;
4. after `--warmup-s`, for `--measure-s`, every member sends Heartbeat v3 every
   `--heartbeat-ms` and OffsetCommit v3 (its generation, one partition) every `--commit-ms`,
   and the time from each request written to its response read is recorded.

It prints, per case, the heartbeat and commit latency percentiles (p50, p99, max, in ms), the
requests and errors, and the broker's CPU seconds in the measured window, and writes the table
to bench/results/coordinator-latency-<date>.md. "Flat" means the idle groups change nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import REPO, Broker, free_port, git_desc, machine_info, md_table, proc_cpu_seconds  # noqa: E402
from soak import (MEMBER_ID_REQUIRED, NONE, UNKNOWN_MEMBER_ID, Connection, array,  # noqa: E402
                  assignment, blob, i16, i32, string, subscription)

CACHE = Path(
    os.environ.get("PARTITA_BENCH_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "partita-bench"
)
TOPICS = 10
PARTITIONS = 12


def i64(v):
    return v.to_bytes(8, "big", signed=True)


class Latencies:
    def __init__(self):
        self.heartbeat: list = []
        self.commit: list = []
        self.errors = collections.Counter()
        self.measuring = False

    def note(self, kind: str, seconds: float, err: int):
        if not self.measuring:
            return
        getattr(self, kind).append(seconds * 1000)
        if err != NONE:
            self.errors[(kind, err)] += 1


async def join(conn, group, topic, member_id, args):
    """JoinGroup and SyncGroup until the member is in a generation: (member id, generation,
    its partitions)."""
    while True:
        body = (string(group) + i32(args.session_ms) + i32(args.rebalance_ms)
                + string(member_id) + string(None) + string("consumer")
                + array([string("range") + blob(subscription(topic))]))
        r = await conn.call(11, 5, body)
        r.i32()
        err, generation = r.i16(), r.i32()
        r.string()
        leader, member_id_back = r.string(), r.string()
        members = [(r.string(), r.string(), r.blob()) for _ in range(r.i32())]
        if err in (MEMBER_ID_REQUIRED, NONE):
            member_id = member_id_back
        elif err == UNKNOWN_MEMBER_ID:
            member_id = ""
        if err != NONE:
            await asyncio.sleep(0.2 if err not in (MEMBER_ID_REQUIRED, UNKNOWN_MEMBER_ID) else 0)
            continue
        ids = sorted(m[0] for m in members)
        assignments = [string(mid) + blob(assignment(topic, [p for p in range(PARTITIONS)
                                                            if p % len(ids) == i]))
                       for i, mid in enumerate(ids)] if leader == member_id else []
        r = await conn.call(14, 3, string(group) + i32(generation) + string(member_id)
                            + string(None) + array(assignments))
        r.i32()
        if r.i16() == NONE:
            return member_id, generation


async def member(index, args, stats: Latencies, stop: asyncio.Event):
    group = f"active-{index // args.members:03d}"
    topic = f"bench-topic-{(index // args.members) % TOPICS}"
    conn = await Connection.open(args.port, f"latency-{index}")
    member_id = ""
    try:
        while not stop.is_set():
            member_id, generation = await join(conn, group, topic, member_id, args)
            now = time.monotonic()
            next_heartbeat = now + args.heartbeat_ms / 1000
            next_commit = now + (index % 10) * args.commit_ms / 10000
            offset = 0
            while not stop.is_set():
                if next_commit <= next_heartbeat:
                    await asyncio.sleep(max(0.0, next_commit - time.monotonic()))
                    offset += 1
                    body = (string(group) + i32(generation) + string(member_id) + i64(-1)
                            + array([string(topic) + array([i32(index % PARTITIONS) + i64(offset)
                                                            + string("")])]))
                    t0 = time.monotonic()
                    r = await conn.call(8, 3, body)
                    t1 = time.monotonic()
                    r.i32()
                    r.i32()
                    r.string()
                    r.i32()
                    r.i32()
                    err = r.i16()
                    stats.note("commit", t1 - t0, err)
                    next_commit += args.commit_ms / 1000
                else:
                    await asyncio.sleep(max(0.0, next_heartbeat - time.monotonic()))
                    t0 = time.monotonic()
                    r = await conn.call(12, 3, string(group) + i32(generation)
                                        + string(member_id) + string(None))
                    t1 = time.monotonic()
                    r.i32()
                    err = r.i16()
                    stats.note("heartbeat", t1 - t0, err)
                    next_heartbeat += args.heartbeat_ms / 1000
                    if err != NONE:
                        break  # rejoin
    finally:
        conn.close()


async def make_idle_groups(port: int, count: int):
    """One committed offset each for `count` groups, over 16 connections."""
    async def commits(worker):
        conn = await Connection.open(port, f"idle-{worker}")
        for g in range(worker, count, 16):
            body = (string(f"idle-{g:05d}") + i32(-1) + string("") + i64(-1)
                    + array([string("bench-topic-0") + array([i32(0) + i64(g) + string("")])]))
            await conn.call(8, 3, body)
        conn.close()
    await asyncio.gather(*(commits(w) for w in range(16)))


async def run_case(args, broker_pid) -> dict:
    if args.idle_groups_now:
        started = time.monotonic()
        await make_idle_groups(args.port, args.idle_groups_now)
        print(f"  {args.idle_groups_now} idle groups made in {time.monotonic() - started:.1f} s",
              flush=True)
    stats = Latencies()
    stop = asyncio.Event()
    total = args.groups * args.members
    tasks = []
    for index in range(total):
        tasks.append(asyncio.create_task(member(index, args, stats, stop)))
        if index % args.members == args.members - 1:
            await asyncio.sleep(args.ramp_s / args.groups)
    await asyncio.sleep(args.warmup_s)
    cpu_before = proc_cpu_seconds(broker_pid) or 0.0
    stats.measuring = True
    await asyncio.sleep(args.measure_s)
    stats.measuring = False
    cpu = (proc_cpu_seconds(broker_pid) or 0.0) - cpu_before
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"stats": stats, "cpu": cpu}


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def create_topics(bootstrap):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(f"bench-topic-{i}", num_partitions=PARTITIONS, replication_factor=1)
              for i in range(TOPICS)]
    for f in admin.create_topics(topics).values():
        f.result(60)


def brokers(args):
    out = []
    if "partita" in args.brokers:
        out.append(("partita", lambda port, work: [
            str(args.partita), "broker", "--listen", f"127.0.0.1:{port}",
            "--advertised", f"127.0.0.1:{port}", "--data-dir", str(work / "data"),
            "--set", "http.listen="]))
    if "tansu" in args.brokers:
        tansu = shutil.which("tansu") or str(CACHE / "bin" / "tansu")
        out.append(("tansu", lambda port, work: [
            tansu, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
            "--storage-engine", "memory://tansu/"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default="partita,tansu")
    ap.add_argument("--partita", default=str(REPO / "target" / "release" / "partita"))
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--idle-groups", type=int, default=10_000)
    ap.add_argument("--session-ms", type=int, default=45_000)
    ap.add_argument("--rebalance-ms", type=int, default=60_000)
    ap.add_argument("--heartbeat-ms", type=int, default=3_000)
    ap.add_argument("--commit-ms", type=int, default=2_000)
    ap.add_argument("--ramp-s", type=float, default=20)
    ap.add_argument("--warmup-s", type=float, default=30)
    ap.add_argument("--measure-s", type=float, default=60)
    ap.add_argument("--quick", action="store_true", help="10 groups, 2,000 idle, 20 s")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.groups, args.idle_groups = 10, 2_000
        args.ramp_s, args.warmup_s, args.measure_s = 2, 8, 20
    rows, notes = [], []
    for name, command in brokers(args):
        for idle in (0, args.idle_groups):
            work = Path(tempfile.mkdtemp(prefix=f"latency-{name}-"))
            args.port = free_port()
            broker = Broker(name, command(args.port, work), args.port, work)
            print(f"{name}, {idle} idle groups:", flush=True)
            broker.start()
            try:
                create_topics(f"127.0.0.1:{args.port}")
                args.idle_groups_now = idle
                result = asyncio.run(run_case(args, broker.proc.pid))
            finally:
                broker.stop()
                shutil.rmtree(work, ignore_errors=True)
            s = result["stats"]
            errors = sum(s.errors.values())
            row = [name, f"{idle:,}",
                   f"{percentile(s.heartbeat, 50):.2f}", f"{percentile(s.heartbeat, 99):.2f}",
                   f"{max(s.heartbeat, default=float('nan')):.1f}",
                   f"{percentile(s.commit, 50):.2f}", f"{percentile(s.commit, 99):.2f}",
                   f"{max(s.commit, default=float('nan')):.1f}",
                   f"{len(s.heartbeat):,} / {len(s.commit):,}", str(errors),
                   f"{result['cpu']:.1f}"]
            rows.append(row)
            if s.errors:
                notes.append(f"{name}, {idle} idle: errors {dict(s.errors)}")
            print("  " + " | ".join(row), flush=True)
    header = ["broker", "idle groups", "heartbeat p50 ms", "p99", "max", "commit p50 ms",
              "p99", "max", "heartbeats / commits", "errors", "broker CPU s"]
    table = md_table(header, rows)
    print(table)
    for note in notes:
        print(note)
    if not args.no_write:
        date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
        out = REPO / "bench" / "results" / f"coordinator-latency-{date}.md"
        out.write_text(
            f"# Group coordinator latency, {date}\n\n"
            f"Command: `python3 bench/coordinator_latency.py {' '.join(sys.argv[1:])}`  \n"
            f"Partita {git_desc()}; {machine_info()}\n\n"
            f"{args.groups} groups x {args.members} members (classic protocol), heartbeat every "
            f"{args.heartbeat_ms} ms, OffsetCommit every {args.commit_ms} ms, measured for "
            f"{args.measure_s:.0f} s after {args.ramp_s + args.warmup_s:.0f} s of ramp and "
            f"warm-up; idle groups: one committed offset, no member. Latency from request "
            f"written to response read, in the asyncio client.\n\n{table}\n"
            + "".join(f"\n{n}\n" for n in notes))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
