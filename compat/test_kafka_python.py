"""kafka-python 3.0 (pure Python, its own protocol code) against Partita."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from partita_compat import wait_until

PARTITIONS = 3
N_RECORDS = 200


def admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000,
                            client_id="partita-compat-admin")


def describe(adm, topic):
    (t,) = adm.describe_topics([topic])
    return t


def test_admin_create_list_describe_delete(broker, topic_name):
    adm = admin(broker.bootstrap)
    try:
        adm.create_topics({topic_name: {"num_partitions": PARTITIONS, "replication_factor": 1}},
                          timeout_ms=20000)
        wait_until(lambda: topic_name in adm.list_topics(), 30, f"{topic_name} in list_topics")
        t = describe(adm, topic_name)
        assert t["error_code"] == 0, t
        assert sorted(p["partition_index"] for p in t["partitions"]) == list(range(PARTITIONS))
        assert all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in t["partitions"]), t

        adm.delete_topics([topic_name], timeout_ms=20000)
        wait_until(lambda: topic_name not in adm.list_topics(), 30,
                   f"{topic_name} gone from list_topics")
    finally:
        adm.close()


@pytest.mark.parametrize("compression", [None, "gzip"], ids=["none", "gzip"])
@pytest.mark.parametrize("acks", [1, "all"], ids=["acks=1", "acks=all"])
def test_produce_then_consume_by_assign(broker, topic_name, compression, acks):
    adm = admin(broker.bootstrap)
    try:
        adm.create_topics({topic_name: {"num_partitions": PARTITIONS, "replication_factor": 1}},
                          timeout_ms=20000, wait_for_metadata=True)
    finally:
        adm.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks,
                             compression_type=compression, linger_ms=5,
                             request_timeout_ms=20000)
    try:
        futures = []
        for i in range(N_RECORDS):
            futures.append(producer.send(topic_name, key=f"k{i % 11}".encode(),
                                         value=f"kp-{i:04d}".encode(),
                                         partition=i % PARTITIONS))
        producer.flush(timeout=60)
        metas = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    for p in range(PARTITIONS):
        offs = [m.offset for m in metas if m.partition == p]
        assert offs == list(range(len(offs))), f"partition {p}: offsets {offs[:10]}"

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=30000,
                             fetch_max_wait_ms=200)
    try:
        tps = [TopicPartition(topic_name, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        assert sum(ends.values()) == N_RECORDS, ends
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}

        got = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < N_RECORDS:
            assert time.monotonic() < deadline, f"timed out; got {[len(v) for v in got.values()]}"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                for m in msgs:
                    got[tp.partition].append((m.offset, m.key, m.value))
    finally:
        consumer.close()

    for p in range(PARTITIONS):
        expected = [(j, f"k{i % 11}".encode(), f"kp-{i:04d}".encode())
                    for j, i in enumerate(range(p, N_RECORDS, PARTITIONS))]
        assert got[p] == expected, f"partition {p} contents/order"
