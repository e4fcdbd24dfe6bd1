"""Cluster mode under faults: brokers killed with SIGKILL under load, PostgreSQL and the S3
server stopped under load. What must hold: every acknowledged record is read back exactly once
and in order per partition (the producer is idempotent), and the cluster carries on by itself.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from partita_compat import BackgroundLoop, unique_name, wait_until

PARTITIONS = 6


class KeyedProducer(BackgroundLoop):
    """An idempotent acks=all producer sending `key:sequence` values, numbered per key, as
    fast as a small in-flight window allows; remembers what was acknowledged."""

    what = "producer"

    def __init__(self, bootstrap: str, topic: str, rate: int = 400):
        super().__init__()
        self.topic = topic
        self.rate = rate
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 120_000, "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000})
        self.acked = defaultdict(list)   # partition -> [(offset, value)]
        self.errors = []
        self.sent = 0
        self.lock = threading.Lock()

    def _delivered(self, err, msg):
        with self.lock:
            if err is not None:
                self.errors.append(err)
            else:
                self.acked[msg.partition()].append((msg.offset(), msg.value()))

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set():
            if self.sent > (time.monotonic() - start) * self.rate:
                self.producer.poll(0.01)
                continue
            key = self.sent % 24
            try:
                self.producer.produce(self.topic, key=str(key).encode(),
                                      value=f"{key}:{self.sent}".encode(),
                                      partition=key % PARTITIONS, on_delivery=self._delivered)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0)
        assert self.producer.flush(150) == 0, "records still unacknowledged"

    def acknowledged(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.acked.values())


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                           replication_factor=1)]).values():
        f.result(30)


def create_topic_led_in_part_by(bootstrap: str, prefix: str, node_id: int) -> str:
    """A new topic of which broker `node_id` leads at least one partition (leaders are
    placed by hashing the topic's id, so a few topics may be needed)."""
    for _ in range(20):
        topic = unique_name(prefix)
        create_topic(bootstrap, topic)
        if node_id in wait_until(lambda: leaders_seen_by(bootstrap, topic), timeout=30,
                                 msg=f"leaders for {topic}"):
            return topic
    raise AssertionError(f"broker {node_id} led no partition of 20 new topics")


def read_back(bootstrap: str, topic: str, expected: int) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("audit"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "topic.metadata.refresh.interval.ms": 1000})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = defaultdict(list)
    count = 0

    def drained():
        nonlocal count
        for msg in consumer.consume(1000, timeout=1.0):
            if not msg.error():
                got[msg.partition()].append((msg.offset(), msg.value()))
                count += 1
        return count >= expected
    try:
        try:
            wait_until(drained, timeout=120, interval=0, msg=f"{expected} records read back")
        except AssertionError as stalled:
            # Which partitions stopped short, and whether their records are there to read.
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    for p in range(PARTITIONS)}
            read = {p: (len(got[p]), got[p][-1][0] if got[p] else None)
                    for p in range(PARTITIONS)}
            raise AssertionError(f"{stalled}: read {count}; per partition (count, last offset) "
                                 f"{read}; log start and end {ends}") from None
        for msg in consumer.consume(1000, timeout=3.0):
            if not msg.error():
                got[msg.partition()].append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    return got


def leaders_seen_by(bootstrap: str, topic: str) -> set:
    """The leaders of `topic`'s partitions, asked of the broker at `bootstrap` only (a client
    that knows the cluster may send its request to a broker that no longer answers)."""
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.leader for p in meta.topics[topic].partitions.values()}


def check_exactly_once_in_order(producer: KeyedProducer, got: dict) -> None:
    assert not producer.errors, f"delivery failures: {producer.errors[:5]}"
    for p in range(PARTITIONS):
        acked = sorted(producer.acked[p])
        assert got[p] == acked, (
            f"partition {p}: read {len(got[p])} records, {len(acked)} acknowledged; first "
            f"difference at {next((i for i, (a, b) in enumerate(zip(got[p], acked)) if a != b), None)}")
        # Per key, the sequence numbers come back in the order they were sent.
        last = {}
        for _, value in got[p]:
            key, sequence = value.decode().split(":")
            assert int(sequence) > last.get(key, -1), f"partition {p}: {value} out of order"
            last[key] = int(sequence)


# Kills and restarts take about 20 s, reading back a few: the read-back's own deadline (120 s)
# must come before the test's, so that a stall says what stopped.
@pytest.mark.timeout(300)
def test_brokers_killed_under_load_lose_and_duplicate_nothing(cluster):
    brokers = [cluster.start_broker(n) for n in (1, 2, 3)]
    topic = unique_name("kills")
    create_topic(brokers[0].bootstrap, topic)
    producer = KeyedProducer(cluster.bootstrap(), topic).start()
    wait_until(lambda: producer.acknowledged() > 500, timeout=60, msg="records flowing")
    victims = random.Random(7)
    for _ in range(6):
        victim = victims.choice(brokers)
        victim.kill()
        time.sleep(2.0)
        victim.start()
        acknowledged = producer.acknowledged()
        wait_until(lambda: producer.acknowledged() > acknowledged + 200, timeout=60,
                   msg="records acknowledged again after the restart")
    producer.stop(timeout=180)
    total = producer.acknowledged()
    got = read_back(cluster.bootstrap(), topic, total)
    check_exactly_once_in_order(producer, got)


def test_postgres_and_the_object_store_stopped_under_load(cluster):
    brokers = [cluster.start_broker(n) for n in (1, 2)]
    topic = unique_name("engines")
    create_topic(brokers[0].bootstrap, topic)
    producer = KeyedProducer(cluster.bootstrap(), topic).start()
    wait_until(lambda: producer.acknowledged() > 500, timeout=60, msg="records flowing")
    for engine in (cluster.postgres, cluster.s3):
        engine.stop()
        time.sleep(4.0)
        engine.start()
        acknowledged = producer.acknowledged()
        wait_until(lambda: producer.acknowledged() > acknowledged + 500, timeout=90,
                   msg=f"records acknowledged again after {type(engine).__name__} came back")
    producer.stop(timeout=180)
    got = read_back(cluster.bootstrap(), topic, producer.acknowledged())
    check_exactly_once_in_order(producer, got)
    for b in brokers:
        assert b.is_running(), f"broker {b.bootstrap} exited"


def test_a_broker_cut_off_by_the_network_stops_and_the_others_carry_on(cluster):
    from cluster_engines import Netns
    netns = Netns().create()
    try:
        brokers = [cluster.start_broker(n) for n in (1, 2)]
        isolated = cluster.start_broker(3, netns=netns)
        topic = create_topic_led_in_part_by(brokers[0].bootstrap, "cutoff", 3)

        def leaders() -> set:
            return leaders_seen_by(brokers[0].bootstrap, topic)
        producer = KeyedProducer(",".join(b.bootstrap for b in brokers + [isolated]),
                                 topic).start()
        wait_until(lambda: producer.acknowledged() > 500, timeout=60, msg="records flowing")
        netns.cut()
        wait_until(lambda: leaders() <= {1, 2}, timeout=30,
                   msg="the partitions of the cut-off broker to move")
        acknowledged = producer.acknowledged()
        wait_until(lambda: producer.acknowledged() > acknowledged + 1000, timeout=90,
                   msg="records acknowledged by the other brokers")
        netns.restore()
        wait_until(lambda: 3 in leaders(), timeout=60,
                   msg="the broker to lead again once its link is back")
        acknowledged = producer.acknowledged()
        wait_until(lambda: producer.acknowledged() > acknowledged + 500, timeout=90,
                   msg="records acknowledged after the link came back")
        producer.stop(timeout=180)
        got = read_back(",".join(b.bootstrap for b in brokers), topic, producer.acknowledged())
        check_exactly_once_in_order(producer, got)
        assert "stopped serving its partitions" in isolated.log_text(), \
            "the cut-off broker did not stop serving"
    finally:
        netns.remove()


def test_a_frozen_broker_holds_nothing_the_others_need(cluster):
    """A broker paused with SIGSTOP (a frozen VM, a stalled disk, a long pause) keeps its
    connections open: its PostgreSQL sessions look alive and may sit in the middle of a
    transaction holding a partition's row lock. The others must still take its partitions, and
    once it runs again it must write nothing in their place."""
    import signal
    brokers = [cluster.start_broker(n) for n in (1, 2)]
    frozen = cluster.start_broker(3)
    topic = create_topic_led_in_part_by(brokers[0].bootstrap, "frozen", 3)

    def leaders() -> set:
        return leaders_seen_by(brokers[0].bootstrap, topic)
    producer = KeyedProducer(",".join(b.bootstrap for b in brokers + [frozen]), topic,
                             rate=2000).start()
    wait_until(lambda: producer.acknowledged() > 500, timeout=60, msg="records flowing")
    def holds_a_transaction() -> bool:
        """Whether the broker has a transaction open that changed a partition's row (and so
        holds its lock)."""
        return bool(cluster.postgres.query(
            "SELECT 1 FROM pg_stat_activity a JOIN pg_locks l USING (pid) "
            "WHERE a.application_name = 'partita broker 3' AND a.state = 'idle in transaction' "
            "AND l.relation = 'partita_partitions'::regclass AND l.mode = 'RowExclusiveLock'"))

    def freeze_inside_a_transaction() -> bool:
        frozen.proc.send_signal(signal.SIGSTOP)
        if holds_a_transaction():
            return True
        frozen.proc.send_signal(signal.SIGCONT)
        return False

    for round in range(3):
        # The first time, at a moment it holds a transaction open; the others, at any moment.
        if round == 0:
            wait_until(freeze_inside_a_transaction, timeout=120, interval=0.01,
                       msg="the broker frozen in the middle of a transaction")
        else:
            frozen.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: leaders() <= {1, 2}, timeout=30, interval=0.5,
                       msg="the partitions of the frozen broker to move")
            acknowledged = producer.acknowledged()
            wait_until(lambda: producer.acknowledged() > acknowledged + 1000, timeout=90,
                       msg="records acknowledged by the other brokers")
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: 3 in leaders(), timeout=60,
                   msg="the broker to lead again once it runs")
    producer.stop(timeout=180)
    got = read_back(",".join(b.bootstrap for b in brokers), topic, producer.acknowledged())
    check_exactly_once_in_order(producer, got)
    assert frozen.is_running(), "the frozen broker exited"
    assert "stopped serving its partitions" in frozen.log_text(), \
        "the frozen broker did not stop serving"
