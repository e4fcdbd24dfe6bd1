#!/usr/bin/env python3
"""Transactions: transactional produce throughput and commit latency (p50/p99) at 10, 100 and
1,000 records per transaction, beside idempotent produce (acks=all) in the same run, for
Partita and Tansu 0.6.0 (where its transactions work), with confluent-kafka (librdkafka).

    bash bench/setup.sh              # the bench venv and Tansu
    cargo build --release --bin partita
    bash bench/transactions.sh       # writes bench/results/transactions-<date>.md

Each broker starts fresh (Partita on a new data directory, Tansu on memory://); one topic of
3 partitions; records of 1 KiB; each producer's connections are made before its timing starts.
Commit latency is the time commit_transaction() takes (the producer's flush of the
transaction's last records included). The producing loop is Python's: the idempotent rate
here is the client's, not the broker's (see bench/produce_consume.sh for that).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import produce_consume as pc  # noqa: E402
from confluent_kafka import KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS = 3
VALUE = b"x" * 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def idempotent(bootstrap: str, topic: str, records: int) -> dict:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    # Connections, metadata and the producer id first, outside the timing.
    for p in range(PARTITIONS):
        producer.produce(topic, value=VALUE, partition=p)
    producer.flush(30)
    started = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value=VALUE, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.01)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    return {"rate": records / elapsed, "failed": left}


def transactional(bootstrap: str, topic: str, records: int, size: int) -> dict:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "transactional.id": f"bench-{topic}-{size}"})
    producer.init_transactions(30)
    # One transaction over every partition first, outside the timing (connections, metadata).
    producer.begin_transaction()
    for p in range(PARTITIONS):
        producer.produce(topic, value=VALUE, partition=p)
    producer.commit_transaction(60)
    commits: list[float] = []
    started = time.perf_counter()
    sent = 0
    while sent < records:
        producer.begin_transaction()
        for i in range(size):
            while True:
                try:
                    producer.produce(topic, value=VALUE, partition=(sent + i) % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.01)
        before = time.perf_counter()
        producer.commit_transaction(60)
        commits.append((time.perf_counter() - before) * 1000)
        sent += size
    elapsed = time.perf_counter() - started
    return {"rate": sent / elapsed, "p50": percentile(commits, 0.5),
            "p99": percentile(commits, 0.99), "transactions": len(commits)}


def bench(name: str, args, rundir: Path) -> list[tuple[str, str]]:
    broker = pc.make_broker(name, rundir, args)
    broker.start()
    rows = []
    try:
        topic = f"txn-bench-{name}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            f.result(30)
        cpu0 = broker.cpu()
        base = idempotent(broker.bootstrap, topic, args.records)
        cpu1 = broker.cpu()
        cpu = f", broker CPU {cpu1 - cpu0:.2f} s" if cpu0 is not None and cpu1 is not None else ""
        rows.append(("idempotent, acks=all", f"{base['rate']:,.0f} records/s{cpu}"))
        for size in args.sizes:
            try:
                cpu0 = broker.cpu()
                r = transactional(broker.bootstrap, topic, args.records, size)
                cpu1 = broker.cpu()
                cpu = (f", broker CPU {cpu1 - cpu0:.2f} s"
                       if cpu0 is not None and cpu1 is not None else "")
                rows.append((f"{size} records per transaction",
                             f"{r['rate']:,.0f} records/s ({r['rate'] / base['rate'] - 1:+.0%}), "
                             f"commit p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms "
                             f"({r['transactions']} transactions){cpu}"))
            except KafkaException as e:
                rows.append((f"{size} records per transaction", f"failed: {e.args[0]}"))
                break
    finally:
        broker.stop()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=30_000, help="records per run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--brokers", default="partita,tansu")
    ap.add_argument("--partita-bin", type=Path, default=pc.REPO / "target/release/partita")
    ap.add_argument("--tansu-bin", type=Path, default=pc.CACHE / "bin/tansu")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.data_parent = None
    args.partita_set = []
    rundir = Path(tempfile.mkdtemp(prefix="partita-txn-bench-"))
    results = {name: bench(name, args, rundir) for name in args.brokers.split(",")}
    lines = ["| broker | run | result |", "|---|---|---|"]
    for name, rows in results.items():
        lines.extend(f"| {name} | {run} | {result} |" for run, result in rows)
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        pc.write_result(
            "transactions", "Transactions", f"bench/transactions.sh {' '.join(sys.argv[1:])}",
            f"confluent-kafka (librdkafka), {args.records:,} records of 1 KiB per run, one topic "
            f"of {PARTITIONS} partitions, linger.ms=5; Partita on a fresh data directory, Tansu "
            f"on memory://. Commit latency: the time commit_transaction() takes.", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
