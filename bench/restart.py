#!/usr/bin/env python3
"""Restart benchmark: how long a single broker takes to start again on a data directory
holding GIGABYTES of records, after a clean stop (SIGINT) and after `kill -9`.

A topic of PARTITIONS partitions is filled with 100 KiB records by confluent-kafka; then the
broker is stopped cleanly (SIGINT) and started again (it opens every partition from its
clean-shutdown record, reading no batch), takes one more record in each partition (which
deletes the record), and is killed with SIGKILL and started again (it trusts
each partition's segments up to the recovery point written at its last roll and reads and
checks every batch after it: with the default segment.bytes of 1 GiB, up to 1 GiB a partition).
A start is timed from the process start to the broker answering Metadata.
Where the machine lets the page cache be dropped (root, /proc/sys/vm/drop_caches writable) it
is dropped before each start: a cold start, as after a reboot; the report says which it was.

    $(scripts/python) bench/restart.py                   # 1 and 4 GB, writes
                                                         # bench/results/restart-<date>.md
    $(scripts/python) bench/restart.py --gigabytes 0.5   # a quick look

Uses target/release/partita (PARTITA_BIN to override); cargo build --release first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "compat"))
os.environ.setdefault("PARTITA_BIN", str(REPO / "target" / "release" / "partita"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from partita_compat import Broker, broker_binary, free_port  # noqa: E402

RECORD = 100 * 1024
PARTITIONS = 8


def drop_caches() -> bool:
    """Drops the page cache if this process may; whether it did."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def fill(bootstrap: str, topic: str, gigabytes: float) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 1_000_000, "message.max.bytes": 2_000_000,
                         "queue.buffering.max.kbytes": 512 * 1024})
    value = os.urandom(RECORD)
    count = int(gigabytes * 1024**3 / RECORD)
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0
    return count


def timed_start(broker: Broker, topic: str) -> tuple[float, bool]:
    """Starts the broker and times it until it answers Metadata for the topic (its port is
    bound before the partitions are opened, so a connection alone proves nothing)."""
    cold = drop_caches()
    started = time.monotonic()
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    while True:
        try:
            metadata = admin.list_topics(topic, timeout=5)
            if metadata.topics[topic].error is None:
                break
        except Exception:  # noqa: BLE001 - not answering yet
            pass
        time.sleep(0.005)
    return time.monotonic() - started, cold


def run(gigabytes: float, root: Path) -> dict:
    broker = Broker(binary=broker_binary(), port=free_port(), data_dir=root / "data",
                    log_path=root / "broker.log")
    broker.start()
    try:
        topic = "restart-bench"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(60)
        began = time.monotonic()
        count = fill(broker.bootstrap, topic, gigabytes)
        fill_s = time.monotonic() - began
        on_disk = sum(p.stat().st_size for p in (root / "data").rglob("*.log"))
        assert broker.stop() == 0
        clean, cold = timed_start(broker, topic)
        scanned_clean = broker.log_text().count("recovered the log by reading")
        # A record to each partition before the kill, as a broker at work takes them: a
        # partition left unchanged since its clean start still has its clean-shutdown record,
        # and would start from it again.
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for partition in range(PARTITIONS):
            producer.produce(topic, value=b"after the clean start", partition=partition)
        assert producer.flush(60) == 0
        broker.kill()
        crash, _ = timed_start(broker, topic)
        recovered = [line for line in broker.log_text().splitlines()
                     if "recovered the log by reading" in line]
        scanned_crash = len(recovered) - scanned_clean
        read_crash = sum(int(re.search(r"bytes=(\d+)", line).group(1))
                         for line in recovered[scanned_clean:])
        return dict(gigabytes=gigabytes, records=count, bytes=on_disk, fill_s=fill_s,
                    clean_s=clean, crash_s=crash, cold=cold, scanned_clean=scanned_clean,
                    scanned_crash=scanned_crash, read_crash=read_crash)
    finally:
        broker.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, nargs="+", default=[1.0, 4.0])
    args = parser.parse_args()
    rows = []
    for gigabytes in args.gigabytes:
        with tempfile.TemporaryDirectory(prefix="partita-restart-") as tmp:
            row = run(gigabytes, Path(tmp))
        rows.append(row)
        print(f"{gigabytes:g} GB ({row['bytes'] / 1024**3:.2f} GiB on disk): clean restart "
              f"{row['clean_s']:.2f} s, after kill -9 {row['crash_s']:.2f} s "
              f"({'cold' if row['cold'] else 'warm'} cache; partitions read: "
              f"{row['scanned_clean']} after the clean stop, {row['scanned_crash']} after the "
              f"kill)", flush=True)
    cache = "cold (page cache dropped before each start)" if all(r["cold"] for r in rows) \
        else "warm: the page cache could not be dropped here, so reads came from memory"
    lines = [
        f"# Restart time, {dt.date.today().isoformat()}",
        "",
        f"`{' '.join(['bench/restart.py'] + sys.argv[1:])}`: one broker (release build), a "
        f"topic of {PARTITIONS} partitions of {RECORD // 1024} KiB records; start timed from "
        f"the process start to the broker answering Metadata. Cache: {cache}.",
        "",
        "| retained | on disk | clean restart | restart after kill -9 | partitions read (clean / kill) "
        "| read after kill -9 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['gigabytes']:g} GB | {r['bytes'] / 1024**3:.2f} GiB | "
                     f"{r['clean_s']:.2f} s | {r['crash_s']:.2f} s | "
                     f"{r['scanned_clean']} / {r['scanned_crash']} | "
                     f"{r['read_crash'] / 1024**3:.2f} GiB |")
    out = HERE / "results" / f"restart-{dt.date.today().isoformat()}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
