"""Transactions (KIP-98) with real clients: a transactional producer's commits are seen by
read_committed consumers and its aborts are not (read_uncommitted consumers see both); a
second producer with the same transactional.id fences the first and aborts what it left
open; a transaction open past its timeout is aborted by the broker; the coordinator's state
survives a restart; with confluent-kafka and the Java client (kafka-python reads). Offsets
committed inside a transaction: test_transactional_offsets.py."""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from partita_compat import unique_name, wait_until
from test_java import _classpath, compiled_java  # noqa: F401 - the fixture

PARTITIONS = 3


def make_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        f.result(30)


def transactional(bootstrap: str, transactional_id: str, **extra) -> Producer:
    producer = Producer(dict({"bootstrap.servers": bootstrap,
                              "transactional.id": transactional_id}, **extra))
    producer.init_transactions(30)
    return producer


def send(producer: Producer, topic: str, prefix: str, count: int) -> None:
    for i in range(count):
        producer.produce(topic, value=f"{prefix}-{i}".encode(), partition=i % PARTITIONS)
    # Sent before the transaction ends: librdkafka drops what is still queued on an abort.
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, isolation: str, expect: int) -> list[str]:
    """Every value a consumer with `isolation` reads, once it has `expect` of them and then
    nothing more for a second."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("txn-read"),
                         "isolation.level": isolation, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: list[str] = []
    quiet_since = [time.monotonic()]

    def settled():
        batch = consumer.consume(500, timeout=0.5)
        for message in batch:
            if message.error() is None:
                got.append(message.value().decode())
        if batch:
            quiet_since[0] = time.monotonic()
        return len(got) >= expect and time.monotonic() - quiet_since[0] > 1.0
    try:
        wait_until(settled, timeout=60, interval=0, msg=f"{expect} records read {isolation}")
    finally:
        consumer.close()
    return got


def prefixes(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        prefix = value.rsplit("-", 1)[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def transactions_cli(bootstrap: str, *args: str) -> object:
    """What `partita transactions ARGS --output json` prints, parsed."""
    import json
    from partita_compat import broker_binary
    done = subprocess.run([str(broker_binary()), "transactions", *args,
                           "--bootstrap-server", bootstrap, "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_committed_records_are_read_and_aborted_ones_only_by_read_uncommitted(broker):
    topic = unique_name("txn")
    make_topic(broker.bootstrap, topic)
    producer = transactional(broker.bootstrap, unique_name("tid"))
    for prefix, commit in (("first", True), ("aborted", False), ("second", True)):
        producer.begin_transaction()
        send(producer, topic, prefix, 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    committed = read_all(broker.bootstrap, topic, "read_committed", 60)
    assert prefixes(committed) == {"first": 30, "second": 30}
    everything = read_all(broker.bootstrap, topic, "read_uncommitted", 90)
    assert prefixes(everything) == {"first": 30, "aborted": 30, "second": 30}
    # kafka-python drops the aborted records too.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaPythonPartition
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             isolation_level="read_committed", enable_auto_commit=False)
    consumer.assign([KafkaPythonPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    got: list[str] = []

    def read_60():
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value.decode() for r in records)
        return len(got) >= 60
    try:
        wait_until(read_60, timeout=60, interval=0, msg="kafka-python reading 60 records")
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(r.value.decode() for r in records)
    finally:
        consumer.close()
    assert prefixes(got) == {"first": 30, "second": 30}


def test_a_second_producer_with_the_same_id_fences_the_first(broker):
    topic = unique_name("txn-fence")
    make_topic(broker.bootstrap, topic)
    transactional_id = unique_name("tid")
    old = transactional(broker.bootstrap, transactional_id)
    old.begin_transaction()
    send(old, topic, "zombie", 12)
    # A new instance of the application takes the id over: the old one's transaction is
    # aborted, and the old one can end nothing any more.
    new = transactional(broker.bootstrap, transactional_id)
    with pytest.raises(KafkaException) as fenced:
        old.commit_transaction(30)
    assert fenced.value.args[0].fatal(), fenced.value
    new.begin_transaction()
    send(new, topic, "new", 12)
    new.commit_transaction(30)
    assert prefixes(read_all(broker.bootstrap, topic, "read_committed", 12)) == {"new": 12}


def test_a_transaction_past_its_timeout_is_aborted_by_the_broker(start_broker):
    b = start_broker({"transaction.abort.timed.out.transaction.cleanup.interval.ms": 200})
    topic = unique_name("txn-timeout")
    make_topic(b.bootstrap, topic)
    slow = transactional(b.bootstrap, unique_name("tid"), **{"transaction.timeout.ms": 1000})
    slow.begin_transaction()
    send(slow, topic, "slow", 6)
    # A plain record after it: a read_committed consumer reaches it only once the slow
    # transaction is over, which the broker does after its timeout.
    plain = Producer({"bootstrap.servers": b.bootstrap})
    plain.produce(topic, value=b"after-0", partition=0)
    assert plain.flush(30) == 0
    assert prefixes(read_all(b.bootstrap, topic, "read_committed", 1)) == {"after": 1}
    with pytest.raises(KafkaException):
        slow.commit_transaction(30)


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "kill-9"])
def test_transaction_state_survives_a_restart(start_broker, kill):
    b = start_broker()
    topic = unique_name("txn-restart")
    make_topic(b.bootstrap, topic)
    transactional_id = unique_name("tid")
    producer = transactional(b.bootstrap, transactional_id)
    producer.begin_transaction()
    send(producer, topic, "before", 9)
    producer.commit_transaction(30)
    producer.begin_transaction()
    send(producer, topic, "open", 9)
    b.restart(kill=kill)
    # The same application starting again after the restart: the transaction its previous
    # instance left open is aborted, and it goes on.
    again = transactional(b.bootstrap, transactional_id)
    again.begin_transaction()
    send(again, topic, "after", 9)
    again.commit_transaction(30)
    committed = read_all(b.bootstrap, topic, "read_committed", 18)
    assert prefixes(committed) == {"before": 9, "after": 9}
    assert prefixes(read_all(b.bootstrap, topic, "read_uncommitted", 27)) == \
        {"before": 9, "open": 9, "after": 9}


@pytest.mark.timeout(300)
def test_java_client_transactions(broker, compiled_java):  # noqa: F811 - the fixture
    topic = unique_name("txn-java")
    make_topic(broker.bootstrap, topic)
    proc = subprocess.run(["java", "-cp", _classpath(compiled_java), "TransactionsTest",
                           broker.bootstrap, topic, unique_name("tid-java")],
                          capture_output=True, text=True, timeout=240)
    out = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, f"TransactionsTest exited {proc.returncode}\n{out}"
    assert proc.stdout.strip().endswith("OK"), out


def test_the_operator_cli_lists_and_describes_transactions(broker):
    from partita_compat import broker_binary

    def partita(*args) -> object:
        return transactions_cli(broker.bootstrap, *args)
    topic = unique_name("txn-cli")
    make_topic(broker.bootstrap, topic)
    transactional_id = unique_name("tid-cli")
    producer = transactional(broker.bootstrap, transactional_id)
    producer.begin_transaction()
    send(producer, topic, "open", 3)
    open_ones = partita("list", "--state", "Ongoing")
    assert [t["transactional_id"] for t in open_ones] == [transactional_id]
    described = partita("describe", "--transactional-id", transactional_id)
    assert described["state"] == "Ongoing"
    assert described["partitions"] == [f"{topic}-{p}" for p in range(PARTITIONS)]
    assert described["start_time_ms"] > 0 and described["timeout_ms"] == 60000
    producer.commit_transaction(30)
    wait_until(lambda: partita("describe", "--transactional-id", transactional_id)["state"]
               == "CompleteCommit", timeout=30, msg="the transaction completed")
    assert partita("list", "--state", "Ongoing") == []
    done = subprocess.run([str(broker_binary()), "transactions", "describe", "--transactional-id",
                           "nobody", "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "TransactionalIdNotFound" in done.stderr, done.stderr


def test_commits_acknowledged_before_a_kill_are_read_after_it(start_broker):
    """The broker is killed right after it acknowledges each commit, perhaps before it has
    written the transaction's markers: after the restart, every committed record is read by
    read_committed consumers, and nothing holds the partitions back."""
    b = start_broker()
    topic = unique_name("txn-kill")
    make_topic(b.bootstrap, topic)
    transactional_id = unique_name("tid")
    for round_ in range(3):
        producer = transactional(b.bootstrap, transactional_id)
        producer.begin_transaction()
        send(producer, topic, f"round{round_}", 6)
        producer.commit_transaction(30)
        b.restart(kill=True)
    plain = Producer({"bootstrap.servers": b.bootstrap})
    for p in range(PARTITIONS):
        plain.produce(topic, value=b"after-0", partition=p)
    assert plain.flush(30) == 0
    assert prefixes(read_all(b.bootstrap, topic, "read_committed", 21)) == \
        {"round0": 6, "round1": 6, "round2": 6, "after": 3}


def test_a_hanging_transaction_is_found_and_aborted_with_the_cli(broker):
    """A producer that stopped in the middle of a long transaction holds read_committed
    readers of its partition back; the operator finds where the transaction starts with
    `describe-producers` and aborts it with `abort`, as with kafka-transactions.sh."""
    from partita_compat import broker_binary

    def partita(*args) -> object:
        return transactions_cli(broker.bootstrap, *args)
    topic = unique_name("txn-hang")
    make_topic(broker.bootstrap, topic)
    stuck = transactional(broker.bootstrap, unique_name("tid-hang"),
                          **{"transaction.timeout.ms": 900000})
    stuck.begin_transaction()
    for i in range(3):
        stuck.produce(topic, value=f"stuck-{i}".encode(), partition=0)
    assert stuck.flush(30) == 0
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    plain.produce(topic, value=b"after-0", partition=0)
    assert plain.flush(30) == 0

    producers = partita("describe-producers", "--topic", topic, "--partition", "0")
    hanging = [p for p in producers if p["current_transaction_start_offset"] >= 0]
    assert [p["current_transaction_start_offset"] for p in hanging] == [0], producers
    aborted = partita("abort", "--topic", topic, "--partition", "0", "--start-offset", "0")
    assert aborted["producer_id"] == hanging[0]["producer_id"]
    # The partition is stable again: read_committed readers get past it, without the
    # aborted records.
    assert prefixes(read_all(broker.bootstrap, topic, "read_committed", 1)) == {"after": 1}
    producers = partita("describe-producers", "--topic", topic, "--partition", "0")
    assert all(p["current_transaction_start_offset"] == -1 for p in producers), producers
    done = subprocess.run([str(broker_binary()), "transactions", "abort", "--topic", topic,
                           "--partition", "0", "--start-offset", "0",
                           "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no transaction" in done.stderr, done.stderr
