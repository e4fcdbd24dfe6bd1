"""Consumer offsets committed inside a transaction (KIP-98, KIP-447) with real clients: they
become the group's only when the transaction commits and vanish when it aborts; a
read_committed consumer asking for them while a transaction holds them waits
(UNSTABLE_OFFSET_COMMIT); a zombie member's transaction cannot commit them; they survive a
kill -9 of the broker; and a consume-transform-produce application killed at random points,
under a broker killed too, writes every input record exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from partita_compat import unique_name, wait_until
from test_java import _classpath, compiled_java  # noqa: F401 - the fixture
from test_transactions import PARTITIONS, make_topic, read_all, transactional

NO_OFFSET = -1001


def fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, value=f"in-{i}".encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def member(bootstrap: str, group: str, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    return consumer


def poll_some(consumer: Consumer, at_least: int) -> list:
    got = []

    def enough():
        got.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
        return len(got) >= at_least
    wait_until(enough, timeout=60, interval=0, msg=f"{at_least} records consumed")
    return got


def next_offsets(messages) -> list[TopicPartition]:
    """The offsets to commit after `messages`: one past the last of each partition."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        last[(m.topic(), m.partition())] = max(last.get((m.topic(), m.partition()), -1),
                                               m.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def committed(bootstrap: str, group: str, partitions: list[TopicPartition], isolation: str,
              timeout: float = 10) -> dict[int, int]:
    """The group's committed offsets as a consumer with `isolation` fetches them (librdkafka
    asks for stable offsets when it reads committed)."""
    observer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "isolation.level": isolation, "enable.auto.commit": False})
    try:
        asked = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        return {tp.partition: tp.offset for tp in observer.committed(asked, timeout=timeout)}
    finally:
        observer.close()


def test_offsets_sent_to_a_transaction_count_only_when_it_commits(broker):
    topic, out = unique_name("eos-in"), unique_name("eos-out")
    make_topic(broker.bootstrap, topic)
    make_topic(broker.bootstrap, out)
    fill(broker.bootstrap, topic, 30)
    group = unique_name("eos-group")
    consumer = member(broker.bootstrap, group, topic)
    producer = transactional(broker.bootstrap, unique_name("tid"))
    try:
        messages = poll_some(consumer, 5)
        offsets = next_offsets(messages)
        nothing = {tp.partition: NO_OFFSET for tp in offsets}

        producer.begin_transaction()
        producer.produce(out, value=b"aborted")
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        assert producer.flush(30) == 0
        # While the transaction holds them: read_uncommitted sees the old (no) offsets, and a
        # read_committed consumer waits for the transaction to end.
        assert committed(broker.bootstrap, group, offsets, "read_uncommitted") == nothing
        with pytest.raises(KafkaException):
            committed(broker.bootstrap, group, offsets, "read_committed", timeout=3)
        producer.abort_transaction(30)
        assert committed(broker.bootstrap, group, offsets, "read_committed") == nothing

        producer.begin_transaction()
        producer.produce(out, value=b"committed")
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        expected = {tp.partition: tp.offset for tp in offsets}
        assert committed(broker.bootstrap, group, offsets, "read_committed") == expected
        assert committed(broker.bootstrap, group, offsets, "read_uncommitted") == expected
    finally:
        consumer.close()


def test_a_zombie_members_transaction_cannot_commit_offsets(broker):
    """KIP-447: the group metadata of a member from before a rebalance no longer commits."""
    topic, out = unique_name("eos-in"), unique_name("eos-out")
    make_topic(broker.bootstrap, topic)
    make_topic(broker.bootstrap, out)
    fill(broker.bootstrap, topic, 30)
    group = unique_name("eos-group")
    first = member(broker.bootstrap, group, topic)
    second = None
    producer = transactional(broker.bootstrap, unique_name("tid"))
    try:
        messages = poll_some(first, 1)
        stale = first.consumer_group_metadata()
        second = member(broker.bootstrap, group, topic)

        # The group rebalances with both: the first member moves to a new generation.
        def both_assigned():
            for consumer in (first, second):
                consumer.consume(10, timeout=0.2)
            return first.assignment() and second.assignment() and \
                len(first.assignment()) + len(second.assignment()) == PARTITIONS
        wait_until(both_assigned, timeout=60, interval=0, msg="the group rebalanced")

        producer.begin_transaction()
        producer.produce(out, value=b"zombie")
        with pytest.raises(KafkaException) as refused:
            producer.send_offsets_to_transaction(next_offsets(messages), stale, 30)
        assert refused.value.args[0].txn_requires_abort(), refused.value
        producer.abort_transaction(30)

        # The member's current metadata commits.
        mine = [tp for tp in next_offsets(messages)
                if any(a.partition == tp.partition for a in first.assignment())]
        producer.begin_transaction()
        producer.produce(out, value=b"current")
        producer.send_offsets_to_transaction(mine, first.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        if mine:
            expected = {tp.partition: tp.offset for tp in mine}
            assert committed(broker.bootstrap, group, mine, "read_committed") == expected
    finally:
        first.close()
        if second is not None:
            second.close()


def test_offsets_of_transactions_survive_a_kill(start_broker):
    """Offsets of a committed transaction survive a kill -9; those of a transaction left open
    wait after the restart until the broker aborts it, then vanish."""
    b = start_broker({"transaction.abort.timed.out.transaction.cleanup.interval.ms": 200})
    topic, out = unique_name("eos-in"), unique_name("eos-out")
    make_topic(b.bootstrap, topic)
    make_topic(b.bootstrap, out)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    group = unique_name("eos-group")
    producer = transactional(b.bootstrap, unique_name("tid"), **{"transaction.timeout.ms": 3000})
    # No member: the application assigns partitions itself and names only the group.
    lone = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    metadata = lone.consumer_group_metadata()
    lone.close()
    producer.begin_transaction()
    producer.produce(out, value=b"first")
    producer.send_offsets_to_transaction(
        [TopicPartition(topic, p, 10 + p) for p in range(PARTITIONS)], metadata, 30)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(out, value=b"open")
    producer.send_offsets_to_transaction(
        [TopicPartition(topic, p, 20 + p) for p in range(PARTITIONS)], metadata, 30)
    assert producer.flush(30) == 0
    b.restart(kill=True)
    first = {p: 10 + p for p in range(PARTITIONS)}
    assert committed(b.bootstrap, group, partitions, "read_uncommitted") == first

    def stable_again():
        try:
            return committed(b.bootstrap, group, partitions, "read_committed", timeout=2) == first
        except KafkaException:
            return False
    wait_until(stable_again, timeout=60, msg="the open transaction aborted after its timeout")


class App:
    """compat/eos_app.py run as a separate process, restarted as its operator would."""

    def __init__(self, command: list[str], *args: str) -> None:
        self.args = [*command, *args]
        self.proc: subprocess.Popen | None = None
        self.commits = 0
        self.starts = 0
        self.lines: list[str] = []

    def ensure_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.starts += 1
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("committed "):
                self.commits += 1

    def progressed(self, since: int, by: int) -> bool:
        """Whether it committed `by` transactions since `since`, restarting it if it exited
        (as it does when the broker goes away under it)."""
        self.ensure_running()
        return self.commits >= since + by

    def wait_for_commits(self, by: int, what: str) -> None:
        since = self.commits
        try:
            wait_until(lambda: self.progressed(since, by), timeout=180, msg=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- application output ---\n"
                                 + "\n".join(self.lines[-60:])) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture(params=["confluent-kafka", "java"])
def eos_app(request) -> list[str]:
    """The command that runs the application, written with each client."""
    if request.param == "java":
        build = request.getfixturevalue("compiled_java")
        return ["java", "-cp", _classpath(build), "EosApp"]
    return [sys.executable, str(Path(__file__).with_name("eos_app.py"))]


@pytest.mark.timeout(900)
def test_consume_transform_produce_is_exactly_once_across_kills(start_broker, eos_app):
    """Issue 16's loop: the application is killed with SIGKILL at random points and started
    again ten times, and the broker is killed three times under it; a read_committed reader
    of the output finds every input record exactly once."""
    b = start_broker({"transaction.abort.timed.out.transaction.cleanup.interval.ms": 500})
    topic, out = unique_name("eos-in"), unique_name("eos-out")
    make_topic(b.bootstrap, topic)
    make_topic(b.bootstrap, out)
    total = 20000
    fill(b.bootstrap, topic, total)
    app = App(eos_app, b.bootstrap, topic, out, unique_name("eos-group"), unique_name("eos-tid"))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    try:
        for round_ in range(10):
            app.wait_for_commits(2, f"round {round_} (seed {seed}): the application committing")
            if round_ in (2, 5, 8):
                time.sleep(rng.uniform(0, 0.2))
                b.restart(kill=True)
                app.wait_for_commits(
                    2, f"round {round_} (seed {seed}): committing after the broker's kill")
            # A random point of its loop: consuming, producing, sending offsets, committing.
            time.sleep(rng.uniform(0, 0.3))
            app.kill()
        app.ensure_running()
        values = read_all(b.bootstrap, out, "read_committed", total)
    finally:
        app.kill()
    expected = [f"out-{i}" for i in range(total)]
    duplicates = sorted(v for v, n in Counter(values).items() if n > 1)
    missing = sorted(set(expected) - set(values))
    assert not duplicates and not missing, \
        (f"seed {seed}, {app.starts} starts: {len(duplicates)} duplicated "
         f"{duplicates[:10]}, {len(missing)} missing {missing[:10]}\n" + "\n".join(app.lines[-40:]))
    assert sorted(values) == sorted(expected)
