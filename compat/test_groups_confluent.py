"""Consumer groups (classic protocol) with confluent-kafka / librdkafka 2.16 against Partita:
the scenarios of issue 3 item 4 (a-i), group admin through the AdminClient, bad input (item 6)
and reading __consumer_offsets.

Each member runs in its own process (group_member.py) so that it can be SIGKILLed; see
group_util.py. Most tests set group.initial.rebalance.delay.ms=0 to stay quick;
test_default_initial_rebalance_delay keeps Kafka's default of 3000 ms.
"""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, TopicPartition)

import group_scenarios as sc
from confluent_util import admin_client, consumer, create_topic
from group_util import (FAST, GROUP_DEADLINE, committed, completed_generations, describe_group,
                        group_log_lines, members_fixture, produce_numbered, wait_stable)
from partita_compat import unique_name, wait_until

members = members_fixture("confluent")

QUICK = {"group.initial.rebalance.delay.ms": 0}
# For eviction tests: a session timeout of 3 s is allowed.
EVICT = {"group.initial.rebalance.delay.ms": 0, "group.min.session.timeout.ms": 1000}


@pytest.fixture
def quick_broker(start_broker):
    return start_broker(QUICK)


# ------------------------------------------------------------------------------------------------
# Scenarios a-i


@pytest.mark.timeout(120)
def test_a_five_members_four_partitions(quick_broker, members, topic_name, group_name):
    sc.more_members_than_partitions(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_b_two_groups_broadcast(quick_broker, members, topic_name):
    sc.broadcast_two_groups(quick_broker, members, topic_name)


@pytest.mark.timeout(120)
def test_c_killed_member_resume_at_committed_offset(quick_broker, members, topic_name,
                                                     group_name):
    sc.kill_then_resume_at_commit(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_d_auto_commit_on_interval(quick_broker, members, topic_name, group_name):
    b = quick_broker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2)
    m = members.spawn("auto", b.bootstrap, group_name, topic_name, auto_commit_ms=500, **FAST)
    wait_stable(admin, group_name, topic_name, [m], 2)
    for round_ in range(3):
        produce_numbered(b.bootstrap, topic_name, range(2), 10, start=10 * round_)
        want = {0: 10 * (round_ + 1), 1: 10 * (round_ + 1)}
        m.wait_for(lambda m: len(m.recs()) == 20 * (round_ + 1), f"round {round_}: consumed")
        t0 = time.monotonic()
        wait_until(lambda: committed(admin, group_name, topic_name) == want, 30,
                   f"round {round_}: auto-committed offsets reach {want}")
        # The commit comes from the interval timer: well within a few intervals.
        assert time.monotonic() - t0 < 10
    assert not m.commits, "the member must not have committed explicitly"
    # The consumer's own view agrees (Consumer.committed from another client of the group).
    c = consumer(b.bootstrap, **{"group.id": group_name})
    try:
        got = c.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)],
                          timeout=20)
        assert [(t.partition, t.offset) for t in got] == [(0, 30), (1, 30)], got
    finally:
        c.close()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_e_third_member_joins(quick_broker, members, topic_name, group_name, assignor):
    before, after = sc.third_member_joins(quick_broker, members, topic_name, group_name,
                                          assignor)
    if assignor == "range":
        # Range on one topic: contiguous blocks in member-id order.
        blocks = sorted(sorted(p) for p in after.values())
        assert blocks == [[0, 1], [2, 3], [4, 5]], after


@pytest.mark.timeout(120)
def test_f_static_member_restart_no_rebalance(quick_broker, members, topic_name, group_name):
    sc.static_member_restart(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_g_member_stops_polling_is_removed(start_broker, members, topic_name, group_name):
    b = start_broker(EVICT)
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 4)
    opts = dict(session_timeout_ms=3000, heartbeat_ms=300, max_poll_ms=4000)
    x = members.spawn("stuck", b.bootstrap, group_name, topic_name, **opts)
    y = members.spawn("live", b.bootstrap, group_name, topic_name, **opts)
    before = wait_stable(admin, group_name, topic_name, [x, y], 4)
    assert len(before["stuck"]) == 2
    t_hold = time.time()
    x.hold()
    # The stuck member keeps its process (and librdkafka's heartbeats) but stops polling.
    y.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3},
               "the live member owns every partition", timeout=GROUP_DEADLINE)
    elapsed = time.time() - t_hold
    assert elapsed >= 3.0, f"partitions moved {elapsed:.1f}s after polling stopped, before " \
                           f"max.poll.interval.ms (4 s)"
    d = describe_group(admin, group_name)
    assert [m.member_id for m in d.members] == [y.member_id], d.members
    values = produce_numbered(b.bootstrap, topic_name, range(4), 5)
    sc.wait_consumed([y], values, "live member consumes every partition")
    lines = group_log_lines(b, group_name)
    assert any(re.search(r"member (left|removed)", line) and x.member_id in line
               for line in lines), "no broker log line says the stuck member left/was removed:\n" \
        + "\n".join(lines)


@pytest.mark.timeout(120)
def test_h_killed_member_removed_after_session_timeout(start_broker, members, topic_name,
                                                       group_name):
    b = start_broker(EVICT)
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 4)
    session_ms = 3000
    opts = dict(session_timeout_ms=session_ms, heartbeat_ms=300)
    x = members.spawn("victim", b.bootstrap, group_name, topic_name, **opts)
    y = members.spawn("survivor", b.bootstrap, group_name, topic_name, **opts)
    wait_stable(admin, group_name, topic_name, [x, y], 4)
    victim_id = x.member_id
    t_kill = time.monotonic()
    x.kill()

    def evicted():
        d = describe_group(admin, group_name)
        return [m.member_id for m in d.members] == [y.member_id]

    wait_until(evicted, GROUP_DEADLINE, "killed member gone from DescribeGroups")
    elapsed = time.monotonic() - t_kill
    # Not before the session timeout (minus the last heartbeat's age), but soon after it.
    assert elapsed >= session_ms / 1000 - 0.5, f"member removed {elapsed:.1f}s after the kill"
    assert elapsed <= session_ms / 1000 + 15, f"member removed only {elapsed:.1f}s after kill"
    y.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3}, "survivor owns every partition")
    values = produce_numbered(b.bootstrap, topic_name, range(4), 5)
    sc.wait_consumed([y], values, "survivor consumes every partition")
    lines = group_log_lines(b, group_name)
    assert any("session timed out" in line and victim_id in line for line in lines), \
        "no 'member removed: session timed out' log line for the victim:\n" + "\n".join(lines)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kill", [False, True], ids=["sigint", "sigkill"])
def test_i_offsets_survive_broker_restart(start_broker, members, topic_name, kill):
    settings = dict(QUICK)
    if kill:
        settings["log.flush.interval.messages"] = 1
    b = start_broker(settings)
    sc.offsets_survive_restart(b, members, topic_name, kill=kill)


@pytest.mark.timeout(120)
def test_default_initial_rebalance_delay(broker, members, topic_name, group_name):
    """With the default group.initial.rebalance.delay.ms (3000), members that join an empty group
    within the delay all land in its first generation, which completes after the delay."""
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic_name, 3)
    t0 = time.time()
    ms = [members.spawn(f"d{i}", broker.bootstrap, group_name, topic_name, **FAST)
          for i in range(3)]
    assign = wait_stable(admin, group_name, topic_name, ms, 3)
    assert sorted(len(p) for p in assign.values()) == [1, 1, 1], assign
    first = min(e["t"] for m in ms for e in m.events_of("assign"))
    ready = min(e["t"] for m in ms for e in m.events_of("ready"))
    assert first - ready >= 2.5, (f"first assignment {first - ready:.2f}s after the first "
                                  f"member subscribed: the 3 s initial delay was not applied")
    assert first - t0 < 30
    for m in ms:
        assigns = m.events_of("assign")
        assert len(assigns) == 1 and not m.events_of("revoke"), \
            f"{m.name} went through more than one rebalance: {m.describe()}"
    assert completed_generations(broker, group_name) == [1], group_log_lines(broker, group_name)


# ------------------------------------------------------------------------------------------------
# Group admin and bad input (issue 3 item 6)


def _group_error(fut) -> KafkaError:
    with pytest.raises(KafkaException) as exc:
        fut.result(timeout=30)
    return exc.value.args[0]


@pytest.mark.timeout(60)
def test_describe_unknown_group_is_dead(quick_broker):
    admin = admin_client(quick_broker.bootstrap)
    g = unique_name("nogroup")
    d = describe_group(admin, g)
    assert d.state == ConsumerGroupState.DEAD, d.state
    assert list(d.members) == []
    assert committed(admin, g, "whatever") == {}


@pytest.mark.timeout(120)
def test_list_delete_groups(quick_broker, members, topic_name, group_name):
    b = quick_broker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2)
    produce_numbered(b.bootstrap, topic_name, range(2), 5)
    m = members.spawn("m", b.bootstrap, group_name, topic_name, commit_below=-1, **FAST)
    wait_stable(admin, group_name, topic_name, [m], 2)
    m.wait_for(lambda m: m.commits == {0: 5, 1: 5}, "committed everything")

    listed = admin.list_consumer_groups(request_timeout=20).result(timeout=30)
    states = {g.group_id: g.state for g in listed.valid}
    assert states.get(group_name) == ConsumerGroupState.STABLE, states
    assert not listed.errors, listed.errors
    # The states filter.
    empty_only = admin.list_consumer_groups(
        request_timeout=20, states={ConsumerGroupState.EMPTY}).result(timeout=30)
    assert group_name not in {g.group_id for g in empty_only.valid}

    err = _group_error(admin.delete_consumer_groups([group_name], request_timeout=20)[group_name])
    assert err.code() == KafkaError.NON_EMPTY_GROUP, err

    m.close()
    wait_until(lambda: describe_group(admin, group_name).state == ConsumerGroupState.EMPTY, 30,
               "group Empty after its only member left")
    empty_only = admin.list_consumer_groups(
        request_timeout=20, states={ConsumerGroupState.EMPTY}).result(timeout=30)
    assert group_name in {g.group_id for g in empty_only.valid}
    assert committed(admin, group_name, topic_name) == {0: 5, 1: 5}

    admin.delete_consumer_groups([group_name], request_timeout=20)[group_name].result(timeout=30)
    listed = admin.list_consumer_groups(request_timeout=20).result(timeout=30)
    assert group_name not in {g.group_id for g in listed.valid}
    assert describe_group(admin, group_name).state == ConsumerGroupState.DEAD
    assert committed(admin, group_name, topic_name) == {}, "offsets survive DeleteGroups"
    # A deleted group's offsets stay deleted across a restart (tombstones were written).
    b.restart()
    admin = admin_client(b.bootstrap)
    wait_until(lambda: describe_group(admin, group_name).state == ConsumerGroupState.DEAD, 30,
               "deleted group still dead after restart")
    assert committed(admin, group_name, topic_name) == {}
    # A new member starts from the beginning again.
    m2 = members.spawn("m2", b.bootstrap, group_name, topic_name, **FAST)
    m2.wait_for(lambda m: len(m.recs()) == 10, "all 10 records again after the delete")
    unknown = unique_name("nogroup")
    err = _group_error(admin.delete_consumer_groups([unknown], request_timeout=20)[unknown])
    assert err.code() == KafkaError.GROUP_ID_NOT_FOUND, err


@pytest.mark.timeout(120)
def test_alter_list_and_delete_offsets(quick_broker, members, topic_name, group_name):
    b = quick_broker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 3)
    produce_numbered(b.bootstrap, topic_name, range(3), 10)

    # Alter offsets of a group with no members (generation -1 commit, like kafka-consumer-groups).
    req = ConsumerGroupTopicPartitions(group_name, [TopicPartition(topic_name, 0, 3),
                                                    TopicPartition(topic_name, 1, 7),
                                                    TopicPartition(topic_name, 2, 10)])
    res = admin.alter_consumer_group_offsets([req], request_timeout=20)[group_name] \
        .result(timeout=30)
    assert all(tp.error is None for tp in res.topic_partitions), res.topic_partitions
    assert committed(admin, group_name, topic_name) == {0: 3, 1: 7, 2: 10}
    # list with explicit partitions, including one without a committed offset.
    fs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group_name, [TopicPartition(topic_name, 1), TopicPartition(topic_name + "-none", 0)])],
        request_timeout=20)
    res = fs[group_name].result(timeout=30)
    got = {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}
    assert got == {(topic_name, 1): 7, (topic_name + "-none", 0): -1001}, got

    # A consumer of the group starts at those offsets.
    m = members.spawn("m", b.bootstrap, group_name, topic_name, **FAST)
    m.wait_for(lambda m: len(m.recs()) == 7 + 3, "read from the altered offsets")
    assert {p: [r["o"] for r in m.recs(p)][0] for p in (0, 1)} == {0: 3, 1: 7}
    assert m.recs(2) == []

    # Altering offsets of an active group is refused (UNKNOWN_MEMBER_ID as in Kafka).
    req = ConsumerGroupTopicPartitions(group_name, [TopicPartition(topic_name, 0, 0)])
    fut = admin.alter_consumer_group_offsets([req], request_timeout=20)[group_name]
    try:
        res = fut.result(timeout=30)
        errs = [tp.error for tp in res.topic_partitions]
        assert errs[0] is not None, "altering offsets of an active group succeeded"
        code = errs[0].code()
    except KafkaException as exc:
        code = exc.args[0].code()
    assert code == KafkaError.UNKNOWN_MEMBER_ID, KafkaError(code)
    assert committed(admin, group_name, topic_name) == {0: 3, 1: 7, 2: 10}

    # OffsetDelete: refused for a partition the group consumes, allowed once it is empty.
    m.close()
    wait_until(lambda: describe_group(admin, group_name).state == ConsumerGroupState.EMPTY, 30,
               "group empty")
    # (confluent-kafka's AdminClient has no OffsetDelete; test_groups_java.py covers it.)


@pytest.mark.timeout(60)
def test_invalid_session_timeout(quick_broker, topic_name, group_name):
    """A session timeout below group.min.session.timeout.ms (6000) gets INVALID_SESSION_TIMEOUT."""
    admin = admin_client(quick_broker.bootstrap)
    create_topic(admin, topic_name, 1)
    c = consumer(quick_broker.bootstrap, **{"group.id": group_name, "session.timeout.ms": 2000,
                                            "heartbeat.interval.ms": 500})
    errors = []
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not errors:
            msg = c.poll(0.2)
            if msg is not None and msg.error():
                errors.append(msg.error())
    finally:
        c.close()
    assert errors, "no error for session.timeout.ms=2000 below the broker's minimum of 6000"
    assert errors[0].code() == KafkaError.INVALID_SESSION_TIMEOUT, errors


@pytest.mark.timeout(90)
def test_group_max_size(start_broker, members, topic_name, group_name):
    b = start_broker({"group.initial.rebalance.delay.ms": 0, "group.max.size": 2})
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 3)
    m1 = members.spawn("m1", b.bootstrap, group_name, topic_name, **FAST)
    m2 = members.spawn("m2", b.bootstrap, group_name, topic_name, **FAST)
    before = wait_stable(admin, group_name, topic_name, [m1, m2], 3)
    m3 = members.spawn("m3", b.bootstrap, group_name, topic_name, **FAST)
    m3.wait_for(lambda m: any("GROUP_MAX_SIZE_REACHED" in e or "maximum size" in e
                              for e in m.errors()), "third member told the group is full")
    assert not m3.owned_now()
    # The group itself is undisturbed.
    after = wait_stable(admin, group_name, topic_name, [m1, m2], 3)
    assert after == before
    values = produce_numbered(b.bootstrap, topic_name, range(3), 5)
    sc.wait_consumed([m1, m2], values, "the two members still consume")


@pytest.mark.timeout(60)
def test_offset_metadata_too_large(quick_broker, topic_name, group_name):
    admin = admin_client(quick_broker.bootstrap)
    create_topic(admin, topic_name, 1)
    c = consumer(quick_broker.bootstrap, **{"group.id": group_name})
    try:
        c.assign([TopicPartition(topic_name, 0)])
        ok = c.commit(offsets=[TopicPartition(topic_name, 0, 1, metadata="m" * 100)],
                      asynchronous=False)
        assert ok[0].error is None
        with pytest.raises(KafkaException) as exc:
            res = c.commit(offsets=[TopicPartition(topic_name, 0, 2, metadata="m" * 5000)],
                           asynchronous=False)
            if res[0].error is not None:
                raise KafkaException(res[0].error)
        assert exc.value.args[0].code() == KafkaError.OFFSET_METADATA_TOO_LARGE, exc.value
        got = c.committed([TopicPartition(topic_name, 0)], timeout=20)
        assert got[0].offset == 1 and got[0].metadata == "m" * 100, got
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_manual_assign_commit_and_fetch(quick_broker, topic_name, group_name):
    """A consumer that assigns partitions itself commits with generation -1 (no membership)."""
    admin = admin_client(quick_broker.bootstrap)
    create_topic(admin, topic_name, 2)
    produce_numbered(quick_broker.bootstrap, topic_name, range(2), 3)
    c = consumer(quick_broker.bootstrap, **{"group.id": group_name})
    try:
        c.assign([TopicPartition(topic_name, 0, 0), TopicPartition(topic_name, 1, 0)])
        c.commit(offsets=[TopicPartition(topic_name, 0, 2), TopicPartition(topic_name, 1, 3)],
                 asynchronous=False)
    finally:
        c.close()
    assert committed(admin, group_name, topic_name) == {0: 2, 1: 3}
    d = describe_group(admin, group_name)
    assert d.state == ConsumerGroupState.EMPTY, d.state


# ------------------------------------------------------------------------------------------------
# __consumer_offsets is readable


def kafka_partition_for(group: str, partitions: int = 50) -> int:
    """Kafka's coordinator partition: Utils.abs(groupId.hashCode()) % partitions, where
    Utils.abs(Integer.MIN_VALUE) is 0."""
    units = group.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 2 ** 31:
        h -= 2 ** 32
    return (0 if h == -2 ** 31 else abs(h)) % partitions


def test_kafka_partition_for():
    # Java: "billing".hashCode() == -109829509, "g-e6e2cca63212".hashCode() == -559692583.
    assert kafka_partition_for("billing") == 109829509 % 50
    assert kafka_partition_for("g-e6e2cca63212") == 559692583 % 50 == 33
    assert kafka_partition_for("") == 0


@pytest.mark.timeout(90)
def test_consumer_offsets_topic_readable(quick_broker, topic_name, group_name):
    b = quick_broker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 1)
    c = consumer(b.bootstrap, **{"group.id": group_name})
    try:
        c.assign([TopicPartition(topic_name, 0)])
        c.commit(offsets=[TopicPartition(topic_name, 0, 42)], asynchronous=False)
    finally:
        c.close()
    md = admin.list_topics(timeout=20)
    assert "__consumer_offsets" in md.topics, sorted(md.topics)
    assert len(md.topics["__consumer_offsets"].partitions) == 50
    expected_partition = kafka_partition_for(group_name)

    # librdkafka has no exclude.internal.topics (kafka-python's test subscribes by pattern with
    # it); here the reader assigns every partition of the topic from the beginning.
    r = consumer(b.bootstrap, **{"group.id": unique_name("reader")})
    found = []
    try:
        r.assign([TopicPartition("__consumer_offsets", p, OFFSET_BEGINNING) for p in range(50)])

        def seen():
            for msg in r.consume(num_messages=500, timeout=0.5):
                if msg.error() is None and msg.key() and group_name.encode() in msg.key():
                    found.append(msg)
            return any(m.key()[:2] == b"\x00\x01" for m in found)

        wait_until(seen, GROUP_DEADLINE, "an offset-commit record of the group in "
                                         "__consumer_offsets", interval=0)
    finally:
        r.close()
    commits = [m for m in found if m.key()[:2] == b"\x00\x01"]
    m = commits[-1]
    assert m.partition() == expected_partition, (m.partition(), expected_partition)
    # OffsetCommitKey v1: group (int16 len + bytes), topic, partition (int32).
    key = m.key()
    glen = int.from_bytes(key[2:4], "big")
    assert key[4:4 + glen] == group_name.encode()
    tlen = int.from_bytes(key[4 + glen:6 + glen], "big")
    assert key[6 + glen:6 + glen + tlen] == topic_name.encode()
    assert int.from_bytes(key[6 + glen + tlen:], "big") == 0
    # OffsetCommitValue: version (int16) then the committed offset (int64).
    value = m.value()
    assert int.from_bytes(value[2:10], "big") == 42, value
