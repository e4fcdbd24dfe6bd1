"""Lag as a group's consumers see it: a group that reads committed (its members fetch with
isolation.level=read_committed) cannot read past an open transaction, so its lag ends at the
last stable offset; a group that reads uncommitted counts to the log end. Checked on the
broker's /metrics and JSON API (which learn how a group reads from its members' fetches, and
remember it once they leave) and on `partita groups describe --isolation-level`, with
confluent-kafka consumers, one group on each rebalance protocol."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from partita_compat import broker_binary, free_port, unique_name, wait_until

COMMITTED = 10
OPEN = 5


def http_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())


def metric(port: int, name: str, group: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("group") == group:
                return sample.value
    return None


def describe(bootstrap: str, group: str, *extra: str) -> dict:
    done = subprocess.run([str(broker_binary()), "groups", "describe", "--group", group,
                           *extra, "--bootstrap-server", bootstrap, "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def member(bootstrap: str, group: str, topic: str, isolation: str, **extra) -> Consumer:
    consumer = Consumer(dict({"bootstrap.servers": bootstrap, "group.id": group,
                              "client.id": f"{group}-app", "isolation.level": isolation,
                              "enable.auto.commit": False, "auto.offset.reset": "earliest"},
                             **extra))
    consumer.subscribe([topic])
    return consumer


def test_a_read_committed_groups_lag_ends_at_the_last_stable_offset(start_broker):
    http_port = free_port()
    broker = start_broker({"group.initial.rebalance.delay.ms": 0,
                           "http.listen": f"127.0.0.1:{http_port}"})
    topic = unique_name("txn-lag")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    # The transaction left open must outlast every wait below.
    producer = Producer({"bootstrap.servers": broker.bootstrap,
                         "transactional.id": unique_name("tid"),
                         "transaction.timeout.ms": 600_000})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(COMMITTED):
        producer.produce(topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)
    # Offsets 0-9 committed, the marker at 10; 11-15 in a transaction left open.
    producer.begin_transaction()
    for i in range(OPEN):
        producer.produce(topic, value=f"open-{i}".encode())
    assert producer.flush(30) == 0
    stable, log_end = COMMITTED + 1, COMMITTED + 1 + OPEN

    rc_group, ru_group = unique_name("reads-committed"), unique_name("reads-uncommitted")
    consumers = {
        rc_group: member(broker.bootstrap, rc_group, topic, "read_committed",
                         **{"group.protocol": "consumer"}),
        ru_group: member(broker.bootstrap, ru_group, topic, "read_uncommitted"),
    }
    expect_read = {rc_group: COMMITTED, ru_group: COMMITTED + OPEN}
    read = {group: 0 for group in consumers}

    def poll_all():
        for group, consumer in consumers.items():
            read[group] += sum(1 for m in consumer.consume(100, timeout=0.2) if m.error() is None)

    def everything_readable_read():
        poll_all()
        return all(read[g] >= expect_read[g] for g in consumers)
    wait_until(everything_readable_read, 60, "each group read what its isolation level lets it")
    assert read == expect_read
    # Both groups commit the last stable offset: the read_committed group has read all it
    # can, the read_uncommitted one has the open transaction's records still to read.
    for consumer in consumers.values():
        consumer.commit(offsets=[TopicPartition(topic, 0, stable)], asynchronous=False)

    def lags():
        poll_all()
        return {g: http_json(http_port, f"/api/groups/{g}") for g in consumers}

    def as_expected(views) -> bool:
        rc, ru = views[rc_group], views[ru_group]
        return (rc["isolation_level"] == "read_committed" and rc["total_lag"] == 0
                and ru["isolation_level"] == "read_uncommitted" and ru["total_lag"] == OPEN)
    views: dict = {}

    def counted_as_read() -> bool:
        views.update(lags())
        return as_expected(views)
    try:
        wait_until(counted_as_read, 60, "each group's lag counted as it reads")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}: {views}") from None
    partition = views[rc_group]["partitions"][0]
    assert (partition["committed"], partition["last_stable_offset"],
            partition["log_end_offset"], partition["lag"]) == (stable, stable, log_end, 0)
    assert metric(http_port, "partita_group_read_committed", rc_group) == 1
    assert metric(http_port, "partita_group_read_committed", ru_group) == 0
    assert metric(http_port, "partita_group_total_lag_records", rc_group) == 0
    assert metric(http_port, "partita_group_total_lag_records", ru_group) == OPEN

    # The CLI counts as it is told, and names the partition an open transaction holds.
    as_committed = describe(broker.bootstrap, rc_group, "--isolation-level", "read_committed")
    assert as_committed["isolation_level"] == "read_committed"
    row = next(r for r in as_committed["rows"] if r["partition"] == 0)
    assert (row["current_offset"], row["log_end_offset"], row["lag"]) == (stable, stable, 0)
    assert as_committed["open_transactions"] == [
        {"topic": topic, "partition": 0, "last_stable_offset": stable, "log_end_offset": log_end}]
    row = next(r for r in describe(broker.bootstrap, ru_group)["rows"] if r["partition"] == 0)
    assert (row["log_end_offset"], row["lag"]) == (log_end, OPEN)

    # Members gone, each group is still counted the way it read.
    for consumer in consumers.values():
        consumer.close()
    consumers.clear()
    wait_until(lambda: all(not http_json(http_port, f"/api/groups/{g}")["members"]
                           for g in (rc_group, ru_group)), 60, "both groups empty")
    assert http_json(http_port, f"/api/groups/{rc_group}")["total_lag"] == 0
    assert http_json(http_port, f"/api/groups/{ru_group}")["total_lag"] == OPEN

    # The transaction commits: its records and marker become readable to both.
    producer.commit_transaction(30)
    wait_until(lambda: all(http_json(http_port, f"/api/groups/{g}")["total_lag"] == OPEN + 1
                           for g in (rc_group, ru_group)), 60,
               "the committed transaction counted in both groups' lag")
    assert describe(broker.bootstrap, rc_group, "--isolation-level",
                    "read_committed")["open_transactions"] == []
