"""confluent-kafka (librdkafka 2.16) against Partita: produce/consume, offsets, admin APIs."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import (OFFSET_BEGINNING, KafkaError, KafkaException, Producer,
                             TopicPartition, libversion)
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)

from confluent_util import (OP_TIMEOUT, admin_client, consume_all, consumer, create_topic,
                            produce, topic_metadata, wait_topic_ready)
from partita_compat import unique_name, wait_until

PARTITIONS = 3
N_RECORDS = 300


def test_librdkafka_version():
    # The suite is written against librdkafka 2.16 (confluent-kafka 2.16.x).
    assert libversion()[0].startswith("2.16"), libversion()


def keyed_records(n: int, tag: str):
    # Compressible values of varying size, keys spread over the partitions.
    return [{"key": f"key-{i % 17}".encode(),
             "value": (f"{tag}-value-{i:05d}-" + "abcdefgh" * (i % 50)).encode()}
            for i in range(n)]


def check_roundtrip(bootstrap, topic, sent, reports, acks):
    errors = [(d.value, d.err) for d in reports if d.err is not None]
    assert not errors, f"delivery errors: {errors[:5]}"

    # What each partition must hold, in send order (librdkafka keeps per-partition order).
    partition_of = {d.value: d.partition for d in reports}
    expected = defaultdict(list)
    for r in sent:
        expected[partition_of[r["value"]]].append((r["key"], r["value"]))
    for key, parts in _key_partitions(sent, partition_of).items():
        assert len(parts) == 1, f"key {key!r} went to several partitions {parts}"

    if acks != 0:
        # Offsets are known with acks=1/all: each partition's offsets are 0..n-1 in send order.
        by_partition = defaultdict(list)
        for d in reports:
            by_partition[d.partition].append(d)
        for p, ds in by_partition.items():
            offs = sorted(d.offset for d in ds)
            assert offs == list(range(len(ds))), f"partition {p}: delivered offsets {offs[:10]}..."
            order = [d.value for d in sorted(ds, key=lambda d: d.offset)]
            assert order == [v for _, v in expected[p]], f"partition {p}: offsets not in send order"

    c = consumer(bootstrap)
    try:
        for p in range(PARTITIONS):
            # With acks=0 the producer hears nothing back: the broker may still be appending
            # when the last record is reported sent.
            wait_until(lambda: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                       == (0, len(expected[p])), timeout=30 if acks == 0 else 0.1,
                       msg=f"partition {p} watermarks")
    finally:
        c.close()

    got = consume_all(bootstrap, topic, range(PARTITIONS))
    assert len(got) == len(sent), f"consumed {len(got)} records, produced {len(sent)}"
    for p in range(PARTITIONS):
        recs = [r for r in got if r.partition == p]
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {p} offsets"
        assert [(r.key, r.value) for r in recs] == expected[p], f"partition {p} contents/order"
        assert all(r.timestamp > 0 for r in recs), f"partition {p}: missing timestamps"


def _key_partitions(sent, partition_of):
    out = defaultdict(set)
    for r in sent:
        out[r["key"]].add(partition_of[r["value"]])
    return out


@pytest.mark.parametrize("acks", [0, 1, "all"], ids=lambda a: f"acks={a}")
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_roundtrip(broker, topic_name, codec, acks):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, PARTITIONS)
    sent = keyed_records(N_RECORDS, codec)
    reports = produce(broker.bootstrap, topic_name, sent, **{
        "compression.type": codec, "acks": acks, "enable.idempotence": False,
        "batch.num.messages": 50})
    check_roundtrip(broker.bootstrap, topic_name, sent, reports, acks)


def test_idempotent_producer_roundtrip(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, PARTITIONS)
    sent = keyed_records(N_RECORDS, "idem")
    reports = produce(broker.bootstrap, topic_name, sent, **{
        "enable.idempotence": True, "acks": "all", "compression.type": "lz4"})
    check_roundtrip(broker.bootstrap, topic_name, sent, reports, "all")


def test_headers_and_null_key_value(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, 1)
    reports = produce(broker.bootstrap, topic_name, [
        {"value": b"v1", "headers": [("h1", b"x"), ("h2", b"")], "partition": 0},
        {"key": b"k-null-value", "value": None, "partition": 0},
        {"value": b"", "partition": 0},
    ], acks="all")
    assert all(d.err is None for d in reports), reports
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic_name, 0, OFFSET_BEGINNING)])
        msgs = []
        deadline = time.monotonic() + 30
        while len(msgs) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            msgs.append(m)
        assert len(msgs) == 3, f"read {len(msgs)} of 3 records"
        assert msgs[0].key() is None and msgs[0].value() == b"v1"
        assert msgs[0].headers() == [("h1", b"x"), ("h2", b"")]
        assert msgs[1].key() == b"k-null-value" and msgs[1].value() is None
        assert msgs[2].value() == b""
    finally:
        c.close()


def test_watermark_offsets(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, PARTITIONS)
    c = consumer(broker.bootstrap)
    try:
        for p in range(PARTITIONS):
            assert c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10) == (0, 0)
        counts = {0: 7, 1: 0, 2: 12}
        recs = [{"value": f"p{p}-{i}".encode(), "partition": p}
                for p, n in counts.items() for i in range(n)]
        produce(broker.bootstrap, topic_name, recs, acks="all")
        for p, n in counts.items():
            assert c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10) == (0, n), p
    finally:
        c.close()


def test_offsets_for_times(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, 1)
    base = int(time.time() * 1000) - 3_600_000  # an hour ago, so no clash with "now"
    recs = [{"value": f"ts-{i}".encode(), "partition": 0, "timestamp": base + i * 1000}
            for i in range(10)]
    reports = produce(broker.bootstrap, topic_name, recs, acks="all")
    assert all(d.err is None for d in reports)

    c = consumer(broker.bootstrap)
    try:
        def lookup(ts):
            res = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=10)
            assert res[0].error is None, res[0].error
            return res[0].offset

        assert lookup(base + 5000) == 5, "exact timestamp of the middle record"
        assert lookup(base + 4500) == 5, "first record with timestamp >= target"
        assert lookup(base - 10_000) == 0, "before the first record"
        assert lookup(base + 60_000) == -1, "after the last record: no offset (-1)"

        # Reading from the looked-up offset starts at the middle record.
        c.assign([TopicPartition(topic_name, 0, 5)])
        m = wait_until(lambda: c.poll(0.5), 30, "a record from offset 5")
        assert m.error() is None, m.error()
        assert (m.offset(), m.value(), m.timestamp()[1]) == (5, b"ts-5", base + 5000)
    finally:
        c.close()

    # The same records read from the beginning carry exactly the timestamps given.
    got = consume_all(broker.bootstrap, topic_name, [0])
    assert [r.timestamp for r in got] == [base + i * 1000 for i in range(10)]


def test_list_topics_metadata(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, PARTITIONS)
    md = admin.list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    (b,) = md.brokers.values()
    assert (b.host, b.port) == ("127.0.0.1", broker.port), "advertised address"
    assert md.controller_id == b.id
    t = md.topics[topic_name]
    assert t.error is None
    assert sorted(t.partitions) == list(range(PARTITIONS))
    for p in t.partitions.values():
        assert p.error is None
        assert p.leader == b.id
        assert list(p.replicas) == [b.id]
        assert list(p.isrs) == [b.id]

    # A request for just this topic, from a fresh client.
    md1 = admin_client(broker.bootstrap).list_topics(topic=topic_name, timeout=10)
    assert topic_name in md1.topics and md1.topics[topic_name].error is None


def test_describe_cluster(broker):
    admin = admin_client(broker.bootstrap)
    desc = admin.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    assert desc.cluster_id, "cluster id should be set"
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert desc.controller is not None and desc.controller.id == node.id


def test_delete_topic_and_recreate(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, PARTITIONS)
    produce(broker.bootstrap, topic_name,
            [{"value": f"old-{i}".encode(), "partition": i % PARTITIONS} for i in range(30)],
            acks="all")

    fs = admin.delete_topics([topic_name], operation_timeout=OP_TIMEOUT,
                             request_timeout=OP_TIMEOUT)
    fs[topic_name].result(timeout=OP_TIMEOUT)
    wait_until(lambda: topic_metadata(admin, topic_name) is None, 30,
               f"{topic_name} to disappear from metadata")

    # Deleting it again: UNKNOWN_TOPIC_OR_PARTITION.
    fs = admin.delete_topics([topic_name], operation_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value

    # Re-created under the same name, it starts empty.
    create_topic(admin, topic_name, 1)
    produce(broker.bootstrap, topic_name, [{"value": b"new", "partition": 0}], acks="all")
    got = consume_all(broker.bootstrap, topic_name, [0])
    assert [(r.offset, r.value) for r in got] == [(0, b"new")]


def test_auto_create_on_produce(start_broker, topic_name):
    b = start_broker({"auto.create.topics.enable": "true", "num.partitions": 3})
    sent = [{"key": f"k{i}".encode(), "value": f"auto-{i}".encode()} for i in range(50)]
    reports = produce(b.bootstrap, topic_name, sent, acks="all")
    assert all(d.err is None for d in reports), [d.err for d in reports if d.err][:3]
    admin = admin_client(b.bootstrap)
    t = wait_topic_ready(admin, topic_name, 3)
    assert len(t.partitions) == 3, "auto-created topics get num.partitions partitions"
    got = consume_all(b.bootstrap, topic_name, range(3))
    assert sorted(r.value for r in got) == sorted(r["value"] for r in sent)


def test_unknown_topic_without_auto_create(start_broker, topic_name):
    b = start_broker({"auto.create.topics.enable": "false"})
    admin = admin_client(b.bootstrap)

    # The broker answers Metadata for the topic with UNKNOWN_TOPIC_OR_PARTITION.
    md = admin.list_topics(topic=topic_name, timeout=10)
    t = md.topics.get(topic_name)
    assert t is not None and t.error is not None, "metadata should carry a topic error"
    assert t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t.error

    # A producer's messages fail (librdkafka reports the broker's UNKNOWN_TOPIC_OR_PART or its
    # local equivalent once topic.metadata.propagation.max.ms has passed).
    p = Producer({"bootstrap.servers": b.bootstrap, "topic.metadata.propagation.max.ms": 1000,
                  "message.timeout.ms": 20000})
    errs = []
    p.produce(topic_name, b"nowhere", on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(40) == 0
    assert len(errs) == 1 and errs[0] is not None, "delivery should fail"
    assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errs[0]

    assert topic_metadata(admin, topic_name) is None, "the topic must not have been created"


@pytest.mark.parametrize("bad_name", [
    "bad name", "bad/slash", "bad:colon", ".", "..", "x" * 250, "caf\u00e9",
], ids=["space", "slash", "colon", "dot", "dotdot", "too-long", "non-ascii"])
def test_create_invalid_topic_name(broker, bad_name):
    admin = admin_client(broker.bootstrap)
    fs = admin.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)],
                             operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[bad_name].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value
    assert bad_name not in admin.list_topics(timeout=10).topics


def test_create_topic_collision_and_duplicates(broker):
    admin = admin_client(broker.bootstrap)
    base = unique_name("coll")
    create_topic(admin, f"{base}.a", 1)
    # Same name again: TOPIC_ALREADY_EXISTS.
    fs = admin.create_topics([NewTopic(f"{base}.a", 1, 1)], operation_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[f"{base}.a"].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, ei.value
    # '.' and '_' collide in Kafka's metric names: INVALID_TOPIC_EXCEPTION.
    fs = admin.create_topics([NewTopic(f"{base}_a", 1, 1)], operation_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[f"{base}_a"].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value


def test_create_topics_validate_only(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)],
                             validate_only=True, operation_timeout=OP_TIMEOUT)
    fs[topic_name].result(timeout=OP_TIMEOUT)
    # Validation only: nothing is created.
    assert topic_metadata(admin, topic_name) is None
    fs = admin.create_topics([NewTopic("bad name", 1, 1)], validate_only=True,
                             operation_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs["bad name"].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert topic_metadata(admin, topic_name) is None
    # The real creation still works afterwards.
    create_topic(admin, topic_name, 3)


def test_create_partitions(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, 2)
    fs = admin.create_partitions([NewPartitions(topic_name, 5)], operation_timeout=OP_TIMEOUT,
                                 request_timeout=OP_TIMEOUT)
    fs[topic_name].result(timeout=OP_TIMEOUT)
    wait_topic_ready(admin, topic_name, 5)

    # The new partitions take writes and reads.
    reports = produce(broker.bootstrap, topic_name,
                      [{"value": f"p{p}".encode(), "partition": p} for p in range(5)], acks="all")
    assert all(d.err is None for d in reports), [d.err for d in reports]
    got = consume_all(broker.bootstrap, topic_name, range(5))
    assert sorted((r.partition, r.value) for r in got) == [(p, f"p{p}".encode()) for p in range(5)]

    # Fewer partitions than now: INVALID_PARTITIONS.
    fs = admin.create_partitions([NewPartitions(topic_name, 3)], operation_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS, ei.value


def _source(entry):
    src = entry.source
    return src if isinstance(src, ConfigSource) else ConfigSource(int(src))


def _describe_topic_configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    fs = admin.describe_configs([res], request_timeout=OP_TIMEOUT)
    (f,) = fs.values()
    return f.result(timeout=OP_TIMEOUT)


def test_describe_and_alter_topic_configs(broker, topic_name):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, 1, config={"cleanup.policy": "delete"})

    cfg = _describe_topic_configs(admin, topic_name)
    assert "retention.ms" in cfg, sorted(cfg)[:20]
    assert cfg["retention.ms"].value == "604800000", "Kafka's default retention is 7 days"
    assert cfg["cleanup.policy"].value == "delete"
    assert _source(cfg["cleanup.policy"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG

    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT).values():
        f.result(timeout=OP_TIMEOUT)
    def altered():
        c = _describe_topic_configs(admin, topic_name)
        return c if c["retention.ms"].value == "3600000" else None

    cfg = wait_until(altered, 15, "retention.ms=3600000 to show in DescribeConfigs")
    assert _source(cfg["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not cfg["retention.ms"].is_default

    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    for f in admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT).values():
        f.result(timeout=OP_TIMEOUT)
    wait_until(lambda: _describe_topic_configs(admin, topic_name)["retention.ms"].value
               == "604800000", 15, "retention.ms back to its default")

    # An unknown topic config is refused (INVALID_CONFIG).
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as ei:
        for f in admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT).values():
            f.result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG, ei.value
