"""Small helpers around confluent-kafka (librdkafka) used by several test files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, List, Optional

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from partita_compat import unique_name, wait_until

OP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    timestamp: int = -1


@dataclass
class Delivery:
    err: Optional[KafkaError]
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]


def admin_client(bootstrap: str, **conf) -> AdminClient:
    c = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 20000}
    c.update(conf)
    return AdminClient(c)


def topic_metadata(admin: AdminClient, topic: str):
    """The TopicMetadata of `topic` from a fresh metadata request, or None if it is not listed."""
    md = admin.list_topics(timeout=10)
    return md.topics.get(topic)


def wait_topic_ready(admin: AdminClient, topic: str, partitions: int, timeout: float = 30.0):
    def ready():
        t = topic_metadata(admin, topic)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return None
        if any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
            return None
        return t

    return wait_until(ready, timeout,
                      f"topic {topic} with {partitions} partitions and leaders in metadata")


def create_topic(admin: AdminClient, topic: str, partitions: int = 3, config: Optional[dict] = None):
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                       config=config or {})],
                             operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    fs[topic].result(timeout=OP_TIMEOUT)  # raises KafkaException on a topic error
    return wait_topic_ready(admin, topic, partitions)


def produce(bootstrap: str, topic: str, records: Iterable[dict], flush_timeout: float = 60.0,
            **conf) -> List[Delivery]:
    """Produce `records` (dicts with value, and optional key/partition/timestamp/headers) and wait
    for every delivery report. Returns the reports in the order they arrived."""
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 30000}
    c.update(conf)
    p = Producer(c)
    reports: List[Delivery] = []

    def on_delivery(err, msg):
        reports.append(Delivery(err, msg.partition(), msg.offset(), msg.key(), msg.value()))

    n = 0
    for r in records:
        kwargs = {k: v for k, v in r.items() if v is not None}
        while True:
            try:
                p.produce(topic, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        p.poll(0)
    remaining = p.flush(flush_timeout)
    assert remaining == 0, f"{remaining} of {n} messages still undelivered after {flush_timeout}s"
    assert len(reports) == n, f"got {len(reports)} delivery reports for {n} messages"
    return reports


def consumer(bootstrap: str, **conf) -> Consumer:
    c = {"bootstrap.servers": bootstrap, "group.id": unique_name("compat-reader"),
         "enable.auto.commit": False, "enable.partition.eof": False,
         "socket.timeout.ms": 20000}
    c.update(conf)
    return Consumer(c)


def high_watermarks(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict:
    c = consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        c.close()


def consume_all(bootstrap: str, topic: str, partitions: Iterable[int],
                ends: Optional[dict] = None, timeout: float = 60.0, **conf) -> List[Rec]:
    """Read every record of `topic` from the beginning of each partition up to its high watermark
    (asked of the broker first unless `ends` gives it), by `assign` (no group membership)."""
    partitions = list(partitions)
    if ends is None:
        ends = high_watermarks(bootstrap, topic, partitions)
    out: List[Rec] = []
    pending = {p for p in partitions if ends[p] > 0}
    if not pending:
        return out
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                got = {p: sum(1 for r in out if r.partition == p) for p in partitions}
                raise AssertionError(f"timed out consuming {topic}: records read per partition "
                                     f"{got}, high watermarks {ends}")
            for msg in c.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                out.append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value(),
                               msg.timestamp()[1]))
                if msg.offset() >= ends[msg.partition()] - 1:
                    pending.discard(msg.partition())
    finally:
        c.close()
    return out


def group_reads_all(bootstrap: str, topics: List[str], expected: set, group: str,
                    members: int = 10, timeout: float = 300.0) -> float:
    """`members` consumers of `group` (one thread each) subscribe to `topics` and read until
    every value in `expected` is seen. Returns the seconds that took; raises AssertionError
    with what is missing if it takes over `timeout`."""
    import threading
    seen: set = set()
    lock = threading.Lock()
    done = threading.Event()
    failures: list = []
    started = time.monotonic()

    def member():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.partition.eof": False,
                      "topic.metadata.refresh.interval.ms": 600_000})
        try:
            c.subscribe(topics)
            while not done.is_set():
                for msg in c.consume(num_messages=1000, timeout=0.5):
                    if msg.error():
                        continue
                    with lock:
                        seen.add(msg.value())
                        if expected <= seen:
                            done.set()
        except Exception as e:  # reported by the caller
            failures.append(e)
            done.set()
        finally:
            c.close()

    threads = [threading.Thread(target=member, daemon=True) for _ in range(members)]
    for t in threads:
        t.start()
    done.wait(timeout)
    elapsed = time.monotonic() - started
    done.set()
    for t in threads:
        t.join(60)
    assert not failures, failures
    missing = expected - seen
    assert not missing, (f"group {group} read {len(expected) - len(missing)} of {len(expected)} "
                         f"records in {timeout:.0f} s; missing e.g. {sorted(missing)[:5]}")
    return elapsed
