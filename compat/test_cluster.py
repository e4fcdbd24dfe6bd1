"""Cluster mode on real engines (PostgreSQL, an S3 server): brokers that keep no state of their
own, share topics and spread partition leadership, and refuse to start with one clear line when
an engine cannot be used."""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

from partita_compat import broker_binary, free_port, unique_name, wait_until


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def leaders(bootstrap: str, topic: str) -> dict:
    """partition -> leader id, as the broker at `bootstrap` tells it."""
    client = admin(bootstrap)
    meta = client.list_topics(topic, timeout=10)
    t = meta.topics[topic]
    assert t.error is None, t.error
    return {p.id: p.leader for p in t.partitions.values()}


def broker_ids(bootstrap: str) -> set:
    client = admin(bootstrap)
    return set(client.list_topics(timeout=10).brokers)


def run_broker(settings: dict, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    port = free_port()
    cmd = [str(broker_binary()), "broker", "--listen", f"127.0.0.1:{port}",
           "--set", "http.listen="]
    for name, value in settings.items():
        cmd += ["--set", f"{name}={value}"]
    return subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=timeout)


def test_a_broker_refuses_to_start_with_one_line_saying_what_is_wrong(cluster):
    good = cluster.settings(1)
    env = cluster.s3.env
    cases = {
        "storage.url without cluster.metadata.url":
            ({"storage.url": good["storage.url"]}, env, "cluster.metadata.url"),
        "cluster.metadata.url without storage.url":
            ({"cluster.metadata.url": good["cluster.metadata.url"]}, env, "storage.url"),
        "PostgreSQL not listening":
            (dict(good, **{"cluster.metadata.url":
                           f"postgres://partita:hunter2@127.0.0.1:{free_port()}/cluster"}),
             env, "PostgreSQL"),
        "wrong PostgreSQL password":
            (dict(good, **{"cluster.metadata.url":
                           cluster.postgres.url.replace("partita:partita", "partita:hunter2")}),
             env, "password"),
        "missing bucket":
            (dict(good, **{"storage.url": "s3://no-such-bucket/records"}), env, "object store"),
        "wrong S3 secret key":
            (good, dict(env, AWS_SECRET_ACCESS_KEY="hunter2"), "object store"),
        "unknown scheme":
            (dict(good, **{"storage.url": "ftp://somewhere/records"}), env, "scheme"),
    }
    for case, (settings, environment, expected) in cases.items():
        result = run_broker(settings, environment)
        assert result.returncode != 0, f"{case}: the broker started"
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, f"{case}: {result.stderr}"
        assert expected in errors[0], f"{case}: {errors[0]}"
        assert "hunter2" not in result.stderr, f"{case}: a secret was printed: {result.stderr}"


def test_three_brokers_share_topics_and_spread_leadership(cluster):
    brokers = [cluster.start_broker(n) for n in (1, 2, 3)]
    for b in brokers:
        wait_until(lambda: broker_ids(b.bootstrap) == {1, 2, 3}, timeout=30,
                   msg=f"{b.bootstrap} to list the three brokers")
    topic = unique_name("shared")
    client = admin(brokers[0].bootstrap)
    for f in client.create_topics(
            [NewTopic(topic, num_partitions=12, replication_factor=1)]).values():
        f.result(30)
    # Seen through every broker, with the same leaders, spread over all three.
    seen = [wait_until(lambda b=b: leaders(b.bootstrap, topic), timeout=30,
                       msg=f"{topic} through {b.bootstrap}") for b in brokers]
    assert seen[0] == seen[1] == seen[2]
    assert set(seen[0].values()) == {1, 2, 3}, seen[0]

    # A config change through one broker is seen through another.
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000",
                    incremental_operation=AlterConfigOpType.SET)])
    client = admin(brokers[1].bootstrap)
    for f in client.incremental_alter_configs([resource]).values():
        f.result(30)

    def retention_seen():
        reader = admin(brokers[2].bootstrap)
        described = reader.describe_configs([ConfigResource("topic", topic)])
        configs = list(described.values())[0].result(10)
        return configs["retention.ms"].value == "3600000"
    wait_until(retention_seen, timeout=30, msg="retention.ms through the third broker")

    # Partitions added through the third are seen through the first.
    client = admin(brokers[2].bootstrap)
    for f in client.create_partitions(
            [NewPartitions(topic, 16)]).values():
        f.result(30)
    wait_until(lambda: len(leaders(brokers[0].bootstrap, topic)) == 16, timeout=30,
               msg="16 partitions through the first broker")

    # Deleted through the first, gone through the second.
    client = admin(brokers[0].bootstrap)
    for f in client.delete_topics([topic]).values():
        f.result(30)
    reader = admin(brokers[1].bootstrap)
    wait_until(lambda: topic not in reader.list_topics(timeout=10).topics,
               timeout=30, msg="the topic gone through the second broker")


def test_a_broker_that_dies_leaves_the_list_and_its_partitions_move(cluster):
    brokers = [cluster.start_broker(n) for n in (1, 2, 3)]
    topic = unique_name("moves")
    client = admin(brokers[0].bootstrap)
    # 24 partitions, so that hashing leaves a broker none only once in thousands of topics.
    for f in client.create_topics(
            [NewTopic(topic, num_partitions=24, replication_factor=1)]).values():
        f.result(30)
    wait_until(lambda: set(leaders(brokers[0].bootstrap, topic).values()) == {1, 2, 3},
               timeout=30, msg="leadership spread over three brokers")
    brokers[2].kill()
    wait_until(lambda: broker_ids(brokers[0].bootstrap) == {1, 2}, timeout=15,
               msg="the dead broker to leave the list")
    wait_until(lambda: set(leaders(brokers[1].bootstrap, topic).values()) == {1, 2},
               timeout=15, msg="its partitions to move to the live brokers")
    # Back again, it takes a share of leadership again.
    brokers[2].start()
    wait_until(lambda: set(leaders(brokers[0].bootstrap, topic).values()) == {1, 2, 3},
               timeout=30, msg="the restarted broker to lead partitions again")


def produce(bootstrap: str, topic: str, count: int, partitions: int) -> dict:
    """`count` keyed records with an idempotent acks=all producer; partition -> values in
    acknowledged order."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    acked = defaultdict(list)
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.partition()].append((msg.offset(), msg.value()))

    for i in range(count):
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(),
                                 partition=i % partitions, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors
    return acked


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = defaultdict(list)
    total = 0

    def drained():
        nonlocal total
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error():
                continue
            got[msg.partition()].append((msg.offset(), msg.value()))
            total += 1
        return total >= expected
    try:
        wait_until(drained, timeout=90, interval=0, msg=f"{expected} records")
        # Nothing more than was produced.
        for msg in consumer.consume(500, timeout=2.0):
            if not msg.error():
                got[msg.partition()].append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    return got


def test_records_produced_through_any_broker_are_read_back_exactly_once_in_order(cluster):
    brokers = [cluster.start_broker(n) for n in (1, 2, 3)]
    topic = unique_name("records")
    partitions = 6
    client = admin(brokers[0].bootstrap)
    for f in client.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        f.result(30)
    # Leaders are placed by hashing the topic's id: some topics have none on a given broker.
    wait_until(lambda: len(set(leaders(brokers[0].bootstrap, topic).values())) >= 2,
               timeout=30, msg="leaders on several brokers")
    acked = produce(cluster.bootstrap(), topic, 3000, partitions)
    got = consume_all(brokers[2].bootstrap, topic, partitions, 3000)
    for p in range(partitions):
        assert got[p] == acked[p], f"partition {p}"
        offsets = [o for o, _ in got[p]]
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets {offsets[:10]}..."
    # Every object of record data in the bucket, none outside it.
    assert any(str(p).startswith("records/data/") for p in cluster.s3.objects())


def data_objects(cluster) -> set:
    return {p for p in cluster.s3.objects() if str(p).startswith("records/data/")}


def test_delete_records_retention_and_topic_deletion_remove_data_from_the_object_store(cluster):
    broker = cluster.start_broker(1, log_retention_check_interval_ms=500,
                                  log_segment_delete_delay_ms=500)
    client = admin(broker.bootstrap)
    kept, dropped = unique_name("kept"), unique_name("dropped")
    for f in client.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)
                                   for t in (kept, dropped)]).values():
        f.result(30)
    for _ in range(5):  # five flushes: five objects
        produce(broker.bootstrap, kept, 10, 1)
    produce(broker.bootstrap, dropped, 10, 1)
    written = data_objects(cluster)
    assert len(written) >= 6, written

    # DeleteRecords moves the log start; reads begin there.
    for f in client.delete_records([TopicPartition(kept, 0, 30)]).values():
        f.result(30)
    got = consume_all(broker.bootstrap, kept, 1, 20)
    assert [o for o, _ in got[0]] == list(range(30, 50))

    # Retention of one second drops the rest; a deleted topic drops its own.
    resource = ConfigResource("topic", kept, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    for f in client.incremental_alter_configs([resource]).values():
        f.result(30)
    for f in client.delete_topics([dropped]).values():
        f.result(30)

    def earliest():
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_name("o")})
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(kept, 0), timeout=10)
        finally:
            consumer.close()
        return low, high
    wait_until(lambda: earliest() == (50, 50), timeout=60, msg="retention to empty the partition")
    wait_until(lambda: not (data_objects(cluster) & written), timeout=60,
               msg="the objects no longer referred to deleted")


def test_small_objects_are_merged_per_partition_and_read_the_same(cluster):
    broker = cluster.start_broker(1, storage_merge_age_ms=1000, log_segment_delete_delay_ms=500)
    client = admin(broker.bootstrap)
    topic = unique_name("merged")
    for f in client.create_topics([NewTopic(topic, num_partitions=3,
                                            replication_factor=1)]).values():
        f.result(30)
    acked = defaultdict(list)
    for _ in range(6):  # six flushes, each object shared by the three partitions
        for p, records in produce(broker.bootstrap, topic, 30, 3).items():
            acked[p].extend(records)
    flush_objects = data_objects(cluster)
    assert len(flush_objects) >= 6, flush_objects
    wait_until(lambda: not (data_objects(cluster) & flush_objects), timeout=60,
               msg="every flush object merged away and deleted")
    # One or two objects per partition (the batches that aged in one merge), not six.
    assert len(data_objects(cluster)) <= 3 * 2, data_objects(cluster)
    got = consume_all(broker.bootstrap, topic, 3, 180)
    for p in range(3):
        assert got[p] == sorted(acked[p]), f"partition {p}"


def test_a_compacted_topic_keeps_the_newest_record_of_each_key(cluster):
    broker = cluster.start_broker(1, storage_merge_age_ms=1000,
                                  log_retention_check_interval_ms=500)
    client = admin(broker.bootstrap)
    topic = unique_name("compacted")
    for f in client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            config={"cleanup.policy": "compact"})]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    newest = {}
    for round_ in range(8):
        for key in range(10):
            value = f"k{key}-v{round_}"
            producer.produce(topic, key=f"k{key}".encode(), value=value.encode())
            newest[f"k{key}"] = value
        producer.flush(30)

    def compacted():
        got = consume_all(broker.bootstrap, topic, 1, 10)[0]
        return len(got) <= 20 and got
    got = wait_until(compacted, timeout=90, interval=0.5, msg="the topic compacted")
    values = {}
    for offset, value in got:
        values[value.decode().split("-")[0]] = value.decode()
    assert values == newest
    offsets = [o for o, _ in got]
    assert offsets == sorted(offsets) and offsets[-1] == 79


def test_a_transactional_producer_is_told_that_cluster_mode_serves_no_transactions(cluster):
    """Cluster mode has no transaction coordinator yet: its brokers do not offer the
    transaction APIs and refuse a transactional InitProducerId with UNSUPPORTED_VERSION, which
    is what a transactional producer reports (librdkafka once its init_transactions timeout
    runs out, as it retries this error); idempotent producers keep working."""
    broker = cluster.start_broker(1)
    topic = unique_name("no-txn")
    client = admin(broker.bootstrap)
    client.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap,
                         "transactional.id": unique_name("tid")})
    # What the broker offers: no transaction API, InitProducerId for idempotence.
    from kafka.admin import KafkaAdminClient
    kafka_python = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offered = {int(key) for key in kafka_python.api_versions()}
    finally:
        kafka_python.close()
    transaction_apis = {24, 25, 26, 27, 28, 65, 66}  # AddPartitionsToTxn ... ListTransactions
    assert not offered & transaction_apis, sorted(offered & transaction_apis)
    assert {0, 1, 22} <= offered  # Produce, Fetch, InitProducerId
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(10)
    error = raised.value.args[0]
    assert error.code() == KafkaError.UNSUPPORTED_VERSION, error
    idempotent = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    idempotent.produce(topic, b"still fine")
    assert idempotent.flush(30) == 0
