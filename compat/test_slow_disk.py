"""A slow disk under some partitions must not slow down the others.

The broker runs with `compat/fault/slow_fsync.c` preloaded: fsync and fdatasync of the files
of two `__consumer_offsets` partitions, and of a topic with `flush.messages=1`, take 3 s each.
Every append is fsynced (`log.flush.interval.messages=1`). While groups of those two
coordinator shards commit and producers write to the slow topic, a consumer group on another
shard must heartbeat, commit and fetch as if nothing happened: no request of it may wait
for somebody else's fsync. (When the coordinator appended on the async workers, two slow
shards were enough to hold both workers of a two-core machine, and every request waited.)
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer

from confluent_util import admin_client, create_topic
from partita_compat import COMPAT_DIR, BackgroundLoop, unique_name, wait_until

SLOW_FSYNC_MS = 3000
SHARDS = 50
SLOW_SHARDS = (7, 8)
# Nothing on the healthy side may have waited for one slow fsync.
HEALTHY_MAX_MS = SLOW_FSYNC_MS * 0.5


def shard_of(group: str) -> int:
    """The `__consumer_offsets` partition of a group: Java's String.hashCode, as Kafka."""
    h = 0
    for unit in group.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    if h >= 0x80000000:
        h -= 0x100000000
    return (0 if h == -0x80000000 else abs(h)) % SHARDS


def group_on(shard: int, prefix: str) -> str:
    while True:
        group = unique_name(prefix)
        if shard_of(group) == shard:
            return group


@pytest.fixture(scope="module")
def slow_fsync(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("fault") / "slow_fsync.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(out),
                    str(COMPAT_DIR / "fault" / "slow_fsync.c"), "-ldl"], check=True)
    return str(out)


class SlowCommitter(BackgroundLoop):
    """Commits offsets for a group of a slow shard, over and over, on its own connection."""

    what = "slow committer"

    def __init__(self, bootstrap: str, group: str, topic: str):
        super().__init__()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "enable.auto.commit": False})
        self.topic = topic
        self.latencies: list = []

    def _run(self):
        offset = 0
        while not self._stop.is_set():
            offset += 1
            started = time.monotonic()
            try:
                self.consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)],
                                     asynchronous=False)
            except Exception:  # noqa: BLE001 - a commit cut short by the stop
                continue
            self.latencies.append((time.monotonic() - started) * 1000)
        self.consumer.close()


class SlowProducer(BackgroundLoop):
    """Produces to the slow topic one record at a time (acks=all, fsynced before the ack)."""

    what = "slow producer"

    def __init__(self, bootstrap: str, topic: str):
        super().__init__()
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
        self.topic = topic
        self.latencies: list = []

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            self.producer.produce(self.topic, b"slow")
            self.producer.flush(30)
            self.latencies.append((time.monotonic() - started) * 1000)


class HealthyMember(BackgroundLoop):
    """A member of a group on a healthy shard: it polls, and commits each record it gets; its
    heartbeats run beside (kafka-python's heartbeat thread, every 100 ms)."""

    what = "healthy member"

    def __init__(self, bootstrap: str, group: str, topic: str):
        super().__init__()
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
            enable_auto_commit=False, heartbeat_interval_ms=100, session_timeout_ms=10000)
        self.commits: list = []
        self.deliveries: list = []

    def assigned(self) -> bool:
        self.consumer.poll(timeout_ms=100)
        return bool(self.consumer.assignment())

    def _run(self):
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                for record in records:
                    sent = int(record.value.decode())
                    self.deliveries.append(time.time() * 1000 - sent)
                    started = time.monotonic()
                    self.consumer.commit()
                    self.commits.append((time.monotonic() - started) * 1000)

    def heartbeat_max_ms(self) -> float:
        metrics = self.consumer.metrics()
        return metrics["consumer-coordinator-metrics"]["heartbeat-response-time-max"]


def test_a_slow_fsync_delays_only_its_own_partition(start_broker, slow_fsync):
    slow_topic = unique_name("slowdisk")
    fast_topic = unique_name("fast")
    slow_files = [f"__consumer_offsets-{shard}/" for shard in SLOW_SHARDS] + ["slowdisk-"]
    broker = start_broker(
        settings={"log.flush.interval.messages": 1},
        env={"LD_PRELOAD": slow_fsync, "SLOW_FSYNC_MS": str(SLOW_FSYNC_MS),
             "SLOW_FSYNC_MATCH": ",".join(slow_files)})
    admin = admin_client(broker.bootstrap)
    create_topic(admin, fast_topic, partitions=1)
    create_topic(admin, slow_topic, partitions=1)
    healthy_group = unique_name("healthy")
    while shard_of(healthy_group) in SLOW_SHARDS:
        healthy_group = unique_name("healthy")
    member = HealthyMember(broker.bootstrap, healthy_group, fast_topic)
    wait_until(member.assigned, 60, "the healthy member's assignment")

    slow = [SlowCommitter(broker.bootstrap, group_on(shard, "slow"), slow_topic)
            for shard in SLOW_SHARDS for _ in range(2)]
    slow += [SlowProducer(broker.bootstrap, slow_topic) for _ in range(2)]
    for load in slow:
        load.start()
    # Every slow client has a request waiting on a slow fsync before the healthy side is
    # measured.
    time.sleep(SLOW_FSYNC_MS / 1000 / 2)
    member.start()
    fast = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "all"})
    produce_latencies = []
    deadline = time.monotonic() + 3 * SLOW_FSYNC_MS / 1000
    while time.monotonic() < deadline:
        started = time.monotonic()
        fast.produce(fast_topic, str(int(time.time() * 1000)).encode())
        fast.flush(30)
        produce_latencies.append((time.monotonic() - started) * 1000)
        time.sleep(0.1)
    wait_until(lambda: len(member.deliveries) >= len(produce_latencies), 30,
               "every healthy record consumed")
    heartbeat_max = member.heartbeat_max_ms()
    member.stop()
    for load in slow:
        load.stop()

    slow_latencies = [ms for load in slow for ms in load.latencies]
    assert slow_latencies and min(slow_latencies) >= SLOW_FSYNC_MS * 0.9, (
        f"the slow disk was not slow: {sorted(slow_latencies)[:5]}")
    measured = {
        "heartbeat (max)": heartbeat_max,
        "commit": max(member.commits),
        "produce": max(produce_latencies),
        "produce to consume": max(member.deliveries),
    }
    print({name: round(ms) for name, ms in measured.items()},
          f"{len(member.commits)} commits, {len(slow_latencies)} slow requests")
    assert len(member.commits) >= 10
    for name, ms in measured.items():
        assert ms < HEALTHY_MAX_MS, (
            f"{name} took {ms:.0f} ms on a healthy shard and partition, while a slow fsync "
            f"takes {SLOW_FSYNC_MS} ms elsewhere: it waited for another partition's disk")
