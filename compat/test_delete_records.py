"""DeleteRecords (`kafka-delete-records.sh`, `Admin.deleteRecords`) with confluent-kafka's
AdminClient: the log start offset moves up, consumers and ListOffsets see it, and it survives a
restart; Kafka's errors for a compact-only topic and for an offset past the high watermark."""

from __future__ import annotations

from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from confluent_util import admin_client, consume_all, create_topic, produce


def earliest(admin, topic, partitions):
    wanted = {TopicPartition(topic, p): OffsetSpec.earliest() for p in partitions}
    return {tp.partition: f.result(timeout=30).offset
            for tp, f in admin.list_offsets(wanted).items()}


def delete(admin, topic, offsets):
    """{partition: low watermark or the KafkaError} for DeleteRecords of `offsets`."""
    futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in offsets.items()],
                                   request_timeout=30)
    out = {}
    for tp, future in futures.items():
        try:
            out[tp.partition] = future.result(timeout=30).low_watermark
        except KafkaException as e:
            out[tp.partition] = e.args[0]
    return out


def test_delete_records_moves_the_log_start_offset(start_broker, topic_name):
    b = start_broker()
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2, config={"segment.bytes": "2048"})
    records = [{"value": f"v{i}".encode(), "partition": i % 2} for i in range(400)]
    assert all(r.err is None for r in produce(b.bootstrap, topic_name, records, acks="all"))

    # Up to offset 40 in partition 0; everything (the high watermark) in partition 1.
    assert delete(admin, topic_name, {0: 40, 1: OFFSET_END}) == {0: 40, 1: 200}
    assert earliest(admin, topic_name, [0, 1]) == {0: 40, 1: 200}
    first = consume_all(b.bootstrap, topic_name, [0])
    assert [r.offset for r in first] == list(range(40, 200))

    # An offset below the start is a no-op; one past the high watermark is refused.
    assert delete(admin, topic_name, {0: 10}) == {0: 40}
    [error] = delete(admin, topic_name, {0: 201}).values()
    assert error.code() == KafkaError.OFFSET_OUT_OF_RANGE

    b.restart()
    admin = admin_client(b.bootstrap)
    assert earliest(admin, topic_name, [0, 1]) == {0: 40, 1: 200}
    assert [r.offset for r in consume_all(b.bootstrap, topic_name, [0])] == list(range(40, 200))


def test_delete_records_is_refused_on_a_compacted_topic(start_broker, topic_name):
    b = start_broker()
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 1, config={"cleanup.policy": "compact"})
    produce(b.bootstrap, topic_name, [{"key": b"k", "value": b"v"}] * 3, acks="all")
    [error] = delete(admin, topic_name, {0: 2}).values()
    assert error.code() == KafkaError.POLICY_VIOLATION
    assert earliest(admin, topic_name, [0]) == {0: 0}
