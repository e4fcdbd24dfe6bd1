"""Consumer groups with kafka-python 3.0 (its own protocol code, classic groups) against Partita:
scenarios a, b, c, e with cooperative-sticky, f, and reading __consumer_offsets with
exclude_internal_topics=False. Members run in their own processes (group_member.py)."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

import group_scenarios as sc
from confluent_util import admin_client, create_topic
from group_util import GROUP_DEADLINE, members_fixture
from partita_compat import unique_name, wait_until

members = members_fixture("kafka-python")

QUICK = {"group.initial.rebalance.delay.ms": 0}


@pytest.fixture
def quick_broker(start_broker):
    return start_broker(QUICK)


@pytest.mark.timeout(120)
def test_kafka_python_a_five_members_four_partitions(quick_broker, members, topic_name,
                                                     group_name):
    sc.more_members_than_partitions(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_kafka_python_b_two_groups_broadcast(quick_broker, members, topic_name):
    sc.broadcast_two_groups(quick_broker, members, topic_name)


@pytest.mark.timeout(120)
def test_kafka_python_c_killed_member_resume_at_committed_offset(quick_broker, members,
                                                                 topic_name, group_name):
    sc.kill_then_resume_at_commit(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(150)
def test_kafka_python_e_cooperative_sticky(quick_broker, members, topic_name, group_name):
    sc.third_member_joins(quick_broker, members, topic_name, group_name, "cooperative-sticky")


@pytest.mark.timeout(120)
def test_kafka_python_f_static_member_restart(quick_broker, members, topic_name, group_name):
    sc.static_member_restart(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(90)
def test_kafka_python_reads_consumer_offsets(quick_broker, topic_name, group_name):
    """A consumer with exclude_internal_topics=False subscribed by pattern reads the group's
    offset-commit record (key version 1, i.e. bytes 0x0001) from __consumer_offsets."""
    b = quick_broker
    create_topic(admin_client(b.bootstrap), topic_name, 1)
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group_name,
                      enable_auto_commit=False, request_timeout_ms=30000)
    try:
        c.assign([TopicPartition(topic_name, 0)])
        c.commit({TopicPartition(topic_name, 0): OffsetAndMetadata(7, "meta", -1)})
    finally:
        c.close()

    r = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=unique_name("reader"),
                      exclude_internal_topics=False, auto_offset_reset="earliest",
                      enable_auto_commit=False, request_timeout_ms=30000,
                      fetch_max_wait_ms=100)
    found = []
    try:
        r.subscribe(pattern="^__consumer_offsets$")

        def seen():
            for _tp, msgs in r.poll(timeout_ms=500).items():
                found.extend(m for m in msgs if m.key and group_name.encode() in m.key)
            return any(m.key[:2] == b"\x00\x01" for m in found)

        wait_until(seen, GROUP_DEADLINE, "the group's offset commit in __consumer_offsets",
                   interval=0)
    finally:
        r.close()
    rec = [m for m in found if m.key[:2] == b"\x00\x01"][-1]
    assert topic_name.encode() in rec.key
    # OffsetCommitValue: version (int16), offset (int64), ...
    assert int.from_bytes(rec.value[2:10], "big") == 7, rec.value
    assert b"meta" in rec.value
