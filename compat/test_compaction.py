"""Compacted topics with real clients: the newest value per key survives at its offset, and a
tombstone stays readable for `delete.retention.ms`, then goes.

The broker checks its logs every 300 ms (`log.retention.check.interval.ms`) and the topic rolls
its segments after 500 ms (`segment.ms`), so compaction runs within about a second of the data.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import ConfigResource

from confluent_util import admin_client, create_topic, produce
from partita_compat import unique_name, wait_until

DELETE_RETENTION_MS = 8000


def read_partition(bootstrap: str, topic: str) -> list:
    """(offset, key, value) of everything from the beginning to the end of partition 0. The
    last offsets may have been compacted away, so the end is the client's end-of-partition
    event, not the record at the high watermark - 1."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return got
                raise KafkaException(msg.error())
            got.append((msg.offset(), msg.key(), msg.value()))
        raise AssertionError(f"no end of partition within 30 s; read {got}")
    finally:
        c.close()


def test_compaction_keeps_the_newest_value_per_key_and_drops_expired_tombstones(
        start_broker, topic_name):
    b = start_broker({"log.retention.check.interval.ms": 300})
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 1, config={
        "cleanup.policy": "compact",
        "segment.ms": "500",
        "delete.retention.ms": str(DELETE_RETENTION_MS),
    })
    # The topic reports the settings it honours.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    assert described["delete.retention.ms"].value == str(DELETE_RETENTION_MS)

    keys = [f"k{i}".encode() for i in range(10)]
    records = [{"key": k, "value": b"v1"} for k in keys]
    records += [{"key": k, "value": b"v2"} for k in keys]
    records += [{"key": k, "value": None} for k in keys[:5]]  # tombstones for k0..k4
    reports = produce(b.bootstrap, topic_name, records, acks="all")
    assert all(r.err is None for r in reports)
    deleted_at = time.monotonic()
    offset_of = {(r.key, r.value): r.offset for r in reports}

    def read():
        return read_partition(b.bootstrap, topic_name)

    # First the superseded values go; the tombstones stay while they are young.
    survivors = [(offset_of[(k, b"v2")], k, b"v2") for k in keys[5:]]
    tombstones = [(offset_of[(k, None)], k, None) for k in keys[:5]]
    compacted = wait_until(lambda: (lambda got: got if got == sorted(survivors + tombstones)
                                    else None)(read()),
                           timeout=60, msg="the superseded values compacted away")
    assert time.monotonic() - deleted_at < DELETE_RETENTION_MS / 1000, \
        "too slow to see the tombstones before they expire; raise DELETE_RETENTION_MS"
    assert compacted == sorted(survivors + tombstones)

    # Then the tombstones go, and every survivor is still at its original offset.
    wait_until(lambda: read() == sorted(survivors), timeout=60, msg="the tombstones removed")
    # Not before the tombstones had their time (counted from their timestamps, a little
    # before `deleted_at`).
    assert time.monotonic() - deleted_at >= DELETE_RETENTION_MS / 1000 * 0.5

    # The offsets of the log did not move, and a restart keeps the compacted log.
    b.restart()
    assert read() == sorted(survivors)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_compacted_and_keyless_records_refused(start_broker, topic_name,
                                                                      codec):
    b = start_broker({"log.retention.check.interval.ms": 300})
    create_topic(admin_client(b.bootstrap), topic_name, 1,
                 config={"cleanup.policy": "compact", "segment.ms": "500"})
    keys = [f"k{i}".encode() for i in range(5)]
    # Batches of many versions of a few keys, compressed by the producer.
    records = [{"key": keys[i % 5], "value": f"v{i}".encode()} for i in range(500)]
    reports = produce(b.bootstrap, topic_name, records, acks="all",
                      **{"compression.type": codec, "linger.ms": 50})
    assert all(r.err is None for r in reports)
    newest = {}
    for r in reports:
        newest[r.key] = (r.offset, r.key, r.value)
    wait_until(lambda: read_partition(b.bootstrap, topic_name) == sorted(newest.values()),
               timeout=60, msg=f"the {codec} batches compacted to the newest value per key")

    # A compacted topic refuses records without a key, compressed or not, as Kafka does.
    for compression in (codec, "none"):
        [refused] = produce(b.bootstrap, topic_name, [{"value": b"no key"}], acks="all",
                            **{"compression.type": compression, "message.send.max.retries": 0})
        assert refused.err is not None and refused.err.code() == KafkaError.INVALID_RECORD, \
            refused.err
