#!/usr/bin/env python3
"""Partition-scale benchmark: one broker holding TOPICS topics of 100 partitions, started
under a soft open-file limit of 1,024 and a hard one of 4,096 (`prlimit`), as a new user's
shell gives it.

For each size it creates the topics, produces one record to every partition, and has a
consumer group of 10 members (confluent-kafka) read every record. It reports how long each
step took, the broker's RSS and open descriptors, the Metadata response time for all topics,
and how long the broker takes to start again on that data after a clean stop. The group's
heartbeat p99 is read from the broker's own request histogram.

    $(scripts/python) bench/scale.py                     # 10, 100, 1,000 topics of 100
                                                         # writes bench/results/scale-<date>.md
    $(scripts/python) bench/scale.py --topics 10         # a quick look

Uses target/release/partita (PARTITA_BIN to override); cargo build --release first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "compat"))
os.environ.setdefault("PARTITA_BIN", str(REPO / "target" / "release" / "partita"))

import multiprocessing  # noqa: E402
import queue  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from partita_compat import Broker, broker_binary, free_port  # noqa: E402

PER_TOPIC = 100
MEMBERS = 10
LIMITS = ["prlimit", "--nofile=1024:4096", "--"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for start in range(0, len(names), 50):
        futures = admin.create_topics(
            [NewTopic(n, PER_TOPIC, 1) for n in names[start:start + 50]], request_timeout=300)
        for future in futures.values():
            future.result()


def produce_one_each(bootstrap: str, names: list[str]) -> set[bytes]:
    """One record to every partition, acks=all. A producer per 100 topics: librdkafka's
    producer walks all its partitions on every send, so one producer for 100,000 partitions
    would measure the client rather than the broker."""
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    for start in range(0, len(names), 100):
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "acks": "all",
                             "queue.buffering.max.messages": 1_000_000})
        for name in names[start:start + 100]:
            for partition in range(PER_TOPIC):
                producer.produce(name, value=f"{name}-{partition}".encode(),
                                 partition=partition, on_delivery=delivered)
            producer.poll(0)
        left = producer.flush(600)
        assert left == 0 and not errors, (left, errors[:3])
    return {f"{name}-{partition}".encode() for name in names for partition in range(PER_TOPIC)}


# librdkafka's consumer asks each partition's start offset in a request of its own and scans
# every partition of its subscription on each wake-up, so a member process holds one librdkafka
# instance only, the group's offsets are committed at 0 before it joins (no offset reset), and
# the settings below keep the client's own work small: the benchmark measures the broker.
MEMBER_CONFIG = {
    "enable.auto.commit": False,
    "partition.assignment.strategy": "range",
    "socket.timeout.ms": 300_000,
    "topic.metadata.refresh.interval.ms": 600_000,
    "statistics.interval.ms": 0,
}


def commit_start_offsets(bootstrap: str, names: list[str], group: str) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **MEMBER_CONFIG})
    try:
        for start in range(0, len(names), 100):
            consumer.commit(offsets=[TopicPartition(name, p, 0)
                                     for name in names[start:start + 100]
                                     for p in range(PER_TOPIC)], asynchronous=False)
    finally:
        consumer.close()


def member(bootstrap: str, names: list[str], group: str, seen, stop) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **MEMBER_CONFIG})
    consumer.subscribe(names)
    try:
        while not stop.is_set():
            values = [m.value() for m in consumer.consume(1000, timeout=0.5) if not m.error()]
            if values:
                seen.put(values)
    finally:
        consumer.close()


def group_reads_all(bootstrap: str, names: list[str], expected: set[bytes], group: str) -> float:
    """MEMBERS processes of one group read every record; the seconds from the start of the
    first to the last record read."""
    commit_start_offsets(bootstrap, names, group)
    seen_queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    started = time.monotonic()
    members = [multiprocessing.Process(target=member, args=(bootstrap, names, group, seen_queue,
                                                            stop), daemon=True)
               for _ in range(MEMBERS)]
    for process in members:
        process.start()
    seen: set[bytes] = set()
    deadline = time.monotonic() + 1800
    try:
        while not expected <= seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the group read {len(seen & expected)} of {len(expected)}")
            try:
                seen.update(seen_queue.get(timeout=min(left, 5)))
            except queue.Empty:
                pass
        return time.monotonic() - started
    finally:
        stop.set()
        # The members leave the group at once (the broker logs each LeaveGroup), but librdkafka
        # may then take minutes to finish closing 10,000 partitions: not what is measured here.
        deadline = time.monotonic() + 120
        for process in members:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()


def metadata_seconds(bootstrap: str, runs: int = 5) -> float:
    """Median time of a Metadata request for every topic (librdkafka's list_topics)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.list_topics(timeout=120)
    times = []
    for _ in range(runs):
        started = time.monotonic()
        admin.list_topics(timeout=120)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def heartbeat_p99_ms(broker: Broker) -> str:
    """Heartbeat p99 from the broker's histogram (bucket upper bound), via /metrics."""
    import urllib.request
    url = f"http://{broker.settings['http.listen']}/metrics"
    text = urllib.request.urlopen(url, timeout=60).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("partita_request_duration_seconds_bucket") and \
                'api="Heartbeat"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return "n/a"
    total = buckets[-1][1]
    bound = next(le for le, count in buckets if count >= 0.99 * total)
    return f"<= {bound * 1000:g}"


def started_since(log: Path, offset: int) -> bool:
    """Whether the broker logged that it started after byte `offset` of its log."""
    with open(log, "rb") as f:
        f.seek(offset)
        return b"partita broker started" in f.read()


def run_size(topics: int, workdir: Path) -> dict:
    data = workdir / f"data-{topics}"
    port = free_port()
    http = f"127.0.0.1:{free_port()}"
    broker = Broker(broker_binary(), port, data, workdir / f"broker-{topics}.log",
                    settings={"http.listen": http}, prefix=LIMITS)
    names = [f"scale-{topics}-{i:04d}" for i in range(topics)]
    row = {"partitions": topics * PER_TOPIC}
    broker.start()
    try:
        pid = broker.proc.pid
        row["rss_empty"] = rss_mib(pid)
        t = time.monotonic()
        create_topics(broker.bootstrap, names)
        row["create_s"] = time.monotonic() - t
        t = time.monotonic()
        produced = produce_one_each(broker.bootstrap, names)
        row["produce_s"] = time.monotonic() - t
        row["read_s"] = group_reads_all(broker.bootstrap, names, produced, f"scale-{topics}")
        row["metadata_s"] = metadata_seconds(broker.bootstrap)
        row["heartbeat_p99"] = heartbeat_p99_ms(broker)
        row["rss"] = rss_mib(pid)
        row["fds"] = descriptors(pid)
        broker.stop(timeout=600)
        # Timed to the broker's "started" line: it binds its port before it opens the
        # partitions, and a client that connects meanwhile waits out its own request timeout
        # (librdkafka's ApiVersions, 10 s) before it asks again.
        logged = broker.log_path.stat().st_size
        t = time.monotonic()
        broker.start()
        while not started_since(broker.log_path, logged):
            assert time.monotonic() - t < 600, "no restart within 600 s"
            time.sleep(0.01)
        row["restart_s"] = time.monotonic() - t
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(
            names[-1], timeout=600)
        assert len(metadata.topics[names[-1]].partitions) == PER_TOPIC
        row["rss_restarted"] = rss_mib(broker.proc.pid)
    finally:
        broker.kill()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4096:
        sys.exit("raising the hard open-file limit to 4,096 needs root here")
    rows = []
    with tempfile.TemporaryDirectory(prefix="partita-scale-") as tmp:
        for topics in args.topics:
            row = run_size(topics, Path(tmp))
            print(row, flush=True)
            rows.append(row)
    lines = [
        "| partitions | create | produce 1 each | group of 10 reads all | Metadata (all) "
        "| heartbeat p99 ms | RSS empty | RSS loaded | open fds | clean restart | RSS restarted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['partitions']:,} | {r['create_s']:.1f} s | {r['produce_s']:.1f} s "
            f"| {r['read_s']:.1f} s | {r['metadata_s'] * 1000:.0f} ms | {r['heartbeat_p99']} "
            f"| {r['rss_empty']:.0f} MiB | {r['rss']:.0f} MiB | {r['fds']} "
            f"| {r['restart_s']:.2f} s | {r['rss_restarted']:.0f} MiB |")
    table = "\n".join(lines)
    print(table)
    if args.out or len(args.topics) > 1:
        out = args.out or HERE / "results" / f"scale-{dt.date.today().isoformat()}.md"
        out.write_text(
            f"# Partition scale, {dt.date.today().isoformat()}\n\n"
            f"`bench/scale.py --topics {' '.join(map(str, args.topics))}`, "
            f"{broker_binary()}, started under `prlimit --nofile=1024:4096`; "
            f"{PER_TOPIC} partitions per topic, one record each, a group of {MEMBERS} "
            f"confluent-kafka members (a process each, offsets committed at 0 first).\n\n"
            f"{table}\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
