"""KIP-848 consumer groups (`group.protocol=consumer`) with confluent-kafka / librdkafka 2.16
against Partita (issue 5 item 5): the classic scenarios a-i redone with the consumer protocol
(kip848_scenarios.py), classic and consumer groups side by side on one topic, each protocol
refused by a group of the other, the online conversion of an empty classic group, and ListGroups'
type filter.

librdkafka refuses the classic-only settings with this protocol ("`session.timeout.ms` is not
supported for `group.protocol=consumer` ... It is defined broker side", likewise
heartbeat.interval.ms; partition.assignment.strategy: "Use `group.remote.assignor` instead"), so
the members set none of them and the broker gets a 6 s session timeout for the eviction tests.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType, KafkaError
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

import kip848_scenarios as k
from confluent_util import admin_client, create_topic
from group_scenarios import values_of, wait_consumed
from group_util import (GROUP_DEADLINE, committed, describe_group, members_fixture,
                        produce_numbered, wait_stable)
from partita_compat import free_port, metric_value, unique_name, wait_until
from share_util import group_config

members = members_fixture("confluent")
kbroker = k.broker_fixture()


# ------------------------------------------------------------------------------------------------
# Scenarios a-i with the consumer protocol


@pytest.mark.timeout(120)
def test_kip848_a_five_members_four_partitions(kbroker, members, topic_name, group_name):
    k.more_members_than_partitions(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_kip848_b_two_groups_broadcast(kbroker, members, topic_name):
    k.broadcast_two_groups(kbroker, members, topic_name)


@pytest.mark.timeout(120)
def test_kip848_c_killed_member_resume_at_committed_offset(kbroker, members, topic_name,
                                                           group_name):
    k.kill_then_resume_at_commit(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_kip848_e_third_member_joins_staying_partitions_flow(kbroker, members, topic_name,
                                                            group_name, assignor):
    before, after, info = k.third_member_joins(kbroker, members, topic_name, group_name,
                                               assignor)
    print(f"{assignor}: {before} -> {after}; {info}")
    if assignor == "range":
        blocks = sorted(sorted(p) for p in after.values())
        assert blocks == [[0, 1], [2, 3], [4, 5]], after


@pytest.mark.timeout(120)
def test_kip848_f_static_member_restart_keeps_partitions(kbroker, members, topic_name,
                                                         group_name):
    k.static_member_restart(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_kip848_g_member_stops_polling_loses_partitions(kbroker, members, topic_name,
                                                        group_name):
    # librdkafka 2.16 with the consumer protocol does not send a leave heartbeat when
    # max.poll.interval.ms expires: it marks its assignment lost, waits for the application's
    # next poll() to run the revocation and stops heartbeating meanwhile ("Application maximum
    # poll interval (4000ms) exceeded ...: leaving group", then no ConsumerGroupHeartbeat); the
    # broker removes it after group.consumer.session.timeout.ms.
    k.missed_polls(kbroker, members, topic_name, group_name, expect_leave=False)


@pytest.mark.timeout(120)
def test_kip848_h_killed_member_evicted_after_session_timeout(kbroker, members, topic_name,
                                                              group_name):
    k.killed_member_evicted(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kill", [False, True], ids=["sigint", "sigkill"])
def test_kip848_i_broker_restart_members_continue(start_broker, members, topic_name, group_name,
                                                  kill):
    settings = dict(k.KIP848)
    if kill:
        settings["log.flush.interval.messages"] = 1
    b = start_broker(settings)
    k.broker_restart(b, members, topic_name, group_name, kill=kill)


# ------------------------------------------------------------------------------------------------
# Classic and consumer groups side by side


@pytest.mark.timeout(120)
def test_kip848_classic_and_consumer_groups_side_by_side(kbroker, members, topic_name):
    b = kbroker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 4)
    g_classic, g_consumer = unique_name("classic"), unique_name("consumer")
    classic = [k.spawn_classic(members, f"cl{i}", b, g_classic, topic_name) for i in range(2)]
    cons = [k.spawn(members, f"co{i}", b, g_consumer, topic_name) for i in range(2)]
    wait_stable(admin, g_classic, topic_name, classic, 4)
    wait_stable(admin, g_consumer, topic_name, cons, 4)
    values = produce_numbered(b.bootstrap, topic_name, range(4), 10)
    for g, ms in ((g_classic, classic), (g_consumer, cons)):
        wait_consumed(ms, values, f"group {g} consumed every record")
        k.assert_no_duplicates(ms, f"group {g}")

    # DescribeGroups for the classic group, ConsumerGroupDescribe for the consumer group.
    dc = describe_group(admin, g_classic)
    dk = describe_group(admin, g_consumer)
    assert dc.type == ConsumerGroupType.CLASSIC, dc.type
    assert dk.type == ConsumerGroupType.CONSUMER, dk.type
    assert dc.partition_assignor == "range", dc.partition_assignor
    assert dk.partition_assignor == "uniform", dk.partition_assignor

    # ListGroups with the type filter (KIP-848's ListGroups v5).
    def listed(**kw):
        res = admin.list_consumer_groups(request_timeout=20, **kw).result(timeout=30)
        assert not res.errors, res.errors
        return {g.group_id: g for g in res.valid}

    everything = listed()
    assert g_classic in everything and g_consumer in everything, sorted(everything)
    assert everything[g_consumer].type == ConsumerGroupType.CONSUMER, everything[g_consumer].type
    assert everything[g_classic].type == ConsumerGroupType.CLASSIC, everything[g_classic].type
    assert everything[g_consumer].state == ConsumerGroupState.STABLE
    only_consumer = listed(types={ConsumerGroupType.CONSUMER})
    assert g_consumer in only_consumer and g_classic not in only_consumer, sorted(only_consumer)
    assert all(g.type == ConsumerGroupType.CONSUMER for g in only_consumer.values())
    only_classic = listed(types={ConsumerGroupType.CLASSIC})
    assert g_classic in only_classic and g_consumer not in only_classic, sorted(only_classic)
    both = listed(types={ConsumerGroupType.CLASSIC, ConsumerGroupType.CONSUMER})
    assert {g_classic, g_consumer} <= set(both)
    stable_consumer = listed(types={ConsumerGroupType.CONSUMER},
                             states={ConsumerGroupState.STABLE})
    assert g_consumer in stable_consumer
    assert g_consumer not in listed(types={ConsumerGroupType.CONSUMER},
                                    states={ConsumerGroupState.EMPTY})


# ------------------------------------------------------------------------------------------------
# A member speaking the other protocol


@pytest.mark.timeout(120)
def test_kip848_protocol_mismatch_is_refused(kbroker, members, topic_name):
    """A classic member joining an active consumer group gets INCONSISTENT_GROUP_PROTOCOL (from
    JoinGroup); a consumer-protocol member joining an active classic group gets GROUP_ID_NOT_FOUND
    (from ConsumerGroupHeartbeat: librdkafka makes it a fatal error). Neither group is disturbed."""
    g_consumer, g_classic, cons, classic, intruder_consumer = k.protocol_mismatch_refused(
        kbroker, members, topic_name,
        classic_refused=lambda m: any(e.get("code") == KafkaError.INCONSISTENT_GROUP_PROTOCOL
                                      for e in m.events_of("error")),
        consumer_refused=lambda m: any("group id does not exist" in e for e in m.errors()))
    errs = intruder_consumer.errors()
    assert any("ConsumerGroupHeartbeat" in e for e in errs), errs
    admin = admin_client(kbroker.bootstrap)
    assert describe_group(admin, g_consumer).type == ConsumerGroupType.CONSUMER
    assert describe_group(admin, g_classic).type == ConsumerGroupType.CLASSIC
    assert not cons.events_of("revoke") and not classic.events_of("revoke")


@pytest.mark.timeout(120)
def test_kip848_empty_classic_group_becomes_consumer_group(kbroker, members, topic_name,
                                                           group_name):
    """Kafka 4's upgrade path for an empty classic group: a consumer-protocol member joins, the
    group becomes a consumer group and resumes at the offsets the classic members committed."""
    b = kbroker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2)
    produce_numbered(b.bootstrap, topic_name, range(2), 10)
    old = k.spawn_classic(members, "classic", b, group_name, topic_name, commit_below=6)
    old.wait_for(lambda m: len(m.recs()) == 20 and m.commits == {0: 6, 1: 6},
                 "classic member read everything and committed 6")
    old.close()
    wait_until(lambda: describe_group(admin, group_name).state == ConsumerGroupState.EMPTY, 30,
               "classic group empty")
    new = k.spawn(members, "consumer", b, group_name, topic_name, commit_below=-1)
    new.wait_for(lambda m: len(m.recs()) >= 8, "consumer-protocol member resumes")
    for p in range(2):
        offs = [r["o"] for r in new.recs(p)]
        assert offs == list(range(6, 10)), f"partition {p} resumed at {offs}, expected 6..9"
    d = describe_group(admin, group_name)
    assert d.type == ConsumerGroupType.CONSUMER, d.type
    wait_until(lambda: committed(admin, group_name, topic_name) == {0: 10, 1: 10}, 30,
               "the consumer-protocol member's commits")


@pytest.mark.timeout(120)
def test_kip848_describe_groups_and_cli_show_consumer_group(kbroker, members, topic_name,
                                                            group_name):
    """The classic DescribeGroups API (kafka-python's admin sends it) and `partita groups
    describe` (issue 5 item 1) show a consumer-protocol group with its members and assignment."""
    import json
    import subprocess

    from kafka import KafkaAdminClient

    from partita_compat import broker_binary

    b = kbroker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 3)
    ms = [k.spawn(members, f"d{i}", b, group_name, topic_name) for i in range(2)]
    assign = wait_stable(admin, group_name, topic_name, ms, 3)
    by_id = {m.member_id: assign[m.name] for m in ms}

    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=20000)
    try:
        d = ka.describe_groups([group_name])[group_name]
    finally:
        ka.close()
    assert d.get("error") is None, d
    assert d["group_state"] == "Stable" and d["protocol_type"] == "consumer", d
    assert d["protocol_data"] == "uniform", d
    got = {}
    for m in d["members"]:
        parts = set()
        for t in m["member_assignment"]["assigned_partitions"]:
            assert t["topic"] == topic_name, t
            parts |= set(t["partitions"])
        got[m["member_id"]] = frozenset(parts)
    assert got == by_id, (got, by_id)

    def cli(*args):
        proc = subprocess.run([str(broker_binary()), "groups", "describe", "--group", group_name,
                               "--bootstrap-server", b.bootstrap, "--output", "json", *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    state = cli("--state")
    assert state["state"] == "Stable" and state["protocol_type"] == "consumer", state
    assert state["protocol"] == "uniform" and state["member_count"] == 2, state
    members_out = cli("--members")["members"]
    got = {m["member_id"]: frozenset(m["assignment"].get(topic_name, [])) for m in members_out}
    assert got == by_id, (got, by_id)


@pytest.mark.timeout(120)
def test_kip848_frozen_member_fenced_then_rejoins(kbroker, members, topic_name, group_name):
    k.zombie_member_rejoins(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(150)
def test_kip848_group_configs_set_one_groups_session_timeout(start_broker, members, topic_name,
                                                             group_name):
    """Kafka 4's group configs on the GROUP resource: consumer.session.timeout.ms and
    consumer.heartbeat.interval.ms, checked against the broker's group.consumer.min/max.*
    bounds, described back, and applied: a killed member of the group is evicted after the
    group's 8 s, where the broker's own setting is 45 s."""
    b = start_broker({"group.consumer.min.session.timeout.ms": 5000,
                      "group.consumer.min.heartbeat.interval.ms": 500})
    admin = admin_client(b.bootstrap)

    def alter(**configs):
        entries = [ConfigEntry(name.replace("_", "."), str(value),
                               incremental_operation=AlterConfigOpType.SET)
                   for name, value in configs.items()]
        resource = ConfigResource("GROUP", group_name, incremental_configs=entries)
        for f in admin.incremental_alter_configs([resource], request_timeout=20).values():
            f.result(timeout=30)

    for refused in [dict(consumer_session_timeout_ms=1000),  # below the broker's minimum
                    dict(consumer_session_timeout_ms=90000),  # above its maximum (60 s)
                    dict(consumer_heartbeat_interval_ms=600, consumer_session_timeout_ms=500),
                    dict(consumer_no_such_config=1)]:
        with pytest.raises(Exception, match="INVALID_CONFIG|nvalid|nknown"):
            alter(**refused)
    assert group_config(admin, group_name)["consumer.session.timeout.ms"] == "45000"
    alter(consumer_session_timeout_ms=8000, consumer_heartbeat_interval_ms=1000)
    described = group_config(admin, group_name)
    assert (described["consumer.session.timeout.ms"],
            described["consumer.heartbeat.interval.ms"]) == ("8000", "1000"), described

    create_topic(admin, topic_name, 4)
    victim = k.spawn(members, "victim", b, group_name, topic_name)
    survivor = k.spawn(members, "survivor", b, group_name, topic_name)
    wait_stable(admin, group_name, topic_name, [victim, survivor], 4)
    mark = k.log_mark(b, group_name)
    victim_id = victim.member_id
    victim.kill()
    # The broker's 45 s would not be over by this deadline; the group's 8 s is.
    wait_until(lambda: not k.member_by_id(admin, group_name, victim_id), 30,
               "the killed member evicted by the group's session timeout")
    removed = [line for line in k.events_named(b, group_name, "member_removed", mark)
               if victim_id in line]
    assert removed and 'reason="session_timeout"' in removed[0], k.show_events(b, group_name,
                                                                                mark)
    survivor.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3}, "survivor owns every partition")


@pytest.mark.timeout(180)
def test_kip848_heartbeats_wait_for_news_at_the_default_interval(start_broker, members,
                                                                 topic_name, group_name):
    """At the default heartbeat interval (5 s), a stable member's heartbeat that has nothing new
    for it is held by the broker: a heartbeat nothing happens to is answered before the next is
    due, a commit the member sends meanwhile on the same connection answers it first, and the
    owner of every partition learns of a newcomer from its held heartbeat, which the join
    answers, instead of at its next heartbeat. Counted in /metrics by why each was answered."""
    http_port = free_port()
    b = start_broker({"http.listen": f"127.0.0.1:{http_port}"})
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 4)

    def held(answered: str) -> float:
        return metric_value(http_port, "partita_consumer_heartbeats_held_total",
                            answered=answered)

    owner = k.spawn(members, "owner", b, group_name, topic_name, commit_below=-1)
    owner.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3}, "the owner holds every partition")
    wait_until(lambda: held("due") >= 2, 60, "heartbeats held until their next one is due")

    # Commits go to the coordinator on the heartbeats' connection: one spaced a little more than
    # a second from the next cannot all fall in the second between two held heartbeats.
    released = held("released")
    for i in range(6):
        produce_numbered(b.bootstrap, topic_name, [i % 4], 1, start=i, tag="c")
        owner.wait_for(lambda m, n=i + 1: len(m.events_of("commit")) >= n, "a commit")
        time.sleep(1.1)
    assert held("released") > released, "no commit answered a held heartbeat first"
    assert not owner.events_of("error"), owner.events_of("error")

    # A commit's answer leaves the member without a heartbeat held until its next one is due:
    # wait for that one to be held and answered, so that the newcomer, started a second after
    # (the next heartbeat is then held for 4.5 s), comes while the owner's heartbeat is held.
    due = held("due")
    wait_until(lambda: held("due") > due, 30, "a heartbeat held until due after the commits")
    time.sleep(1)
    changed = held("changed")
    newcomer = k.spawn(members, "newcomer", b, group_name, topic_name)
    wait_stable(admin, group_name, topic_name, [owner, newcomer], 4)
    assert held("changed") > changed, "the owner was not told by its held heartbeat"
    assert len(newcomer.owned_now()) == 2, newcomer.owned_now()


@pytest.mark.timeout(120)
def test_kip848_regex_subscription_picks_up_new_topics_and_partitions(kbroker, members,
                                                                      group_name):
    """librdkafka sends a `^...` subscription as SubscribedTopicRegex: the broker resolves it,
    and a topic created later, or partitions added later, are assigned without the members
    resubscribing."""
    from confluent_kafka.admin import NewPartitions

    b = kbroker
    admin = admin_client(b.bootstrap)
    prefix = unique_name("rx")
    t_a, t_b = f"{prefix}-a", f"{prefix}-b"
    create_topic(admin, t_a, 2)
    create_topic(admin, unique_name("other"), 2)  # not matched
    conf = {"topic.metadata.refresh.interval.ms": 1000}
    ms = [k.spawn(members, f"x{i}", b, group_name, f"^{prefix}-.*", conf=conf) for i in range(2)]

    def assigned():
        d = describe_group(admin, group_name)
        if d.state != ConsumerGroupState.STABLE or len(d.members) != 2:
            return None
        return sorted((tp.topic, tp.partition) for m in d.members
                      for tp in (m.assignment.topic_partitions if m.assignment else []))

    want = [(t_a, 0), (t_a, 1)]
    wait_until(lambda: assigned() == want, GROUP_DEADLINE, f"{want} assigned")
    create_topic(admin, t_b, 2)
    want = sorted(want + [(t_b, 0), (t_b, 1)])
    wait_until(lambda: assigned() == want, GROUP_DEADLINE, f"new topic assigned: {want}")
    admin.create_partitions([NewPartitions(t_a, 3)], request_timeout=20)[t_a].result(timeout=30)
    want = sorted(want + [(t_a, 2)])
    wait_until(lambda: assigned() == want, GROUP_DEADLINE, f"new partition assigned: {want}")
    va = produce_numbered(b.bootstrap, t_a, range(3), 5, tag="a")
    vb = produce_numbered(b.bootstrap, t_b, range(2), 5, tag="b")
    wait_consumed(ms, va + vb, "records of both matched topics consumed")
    k.assert_no_duplicates(ms, "regex group")
    assert not [v for m in ms for v in values_of(m) if not v.startswith(("a-", "b-"))]


@pytest.mark.timeout(150)
def test_kip848_broker_killed_during_reconciliation(start_broker, members, topic_name,
                                                    group_name):
    b = start_broker(dict(k.KIP848, **{"log.flush.interval.messages": 1}))
    k.broker_killed_during_reconciliation(b, members, topic_name, group_name)


@pytest.mark.timeout(120)
def test_kip848_static_member_killed_replacement_refused_until_session_timeout(
        kbroker, members, topic_name, group_name):
    """A static member killed without its epoch -2 leave still holds its instance id: a
    replacement with the same group.instance.id is refused with UNRELEASED_INSTANCE_ID (as
    Kafka does; librdkafka makes it a fatal error), and the dead member's partitions move once
    the session timeout removes it. Never two live members with one instance id."""
    b = kbroker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 4)
    x = k.spawn(members, "B", b, group_name, topic_name, instance_id="inst-b")
    y = k.spawn(members, "A", b, group_name, topic_name, instance_id="inst-a")
    wait_stable(admin, group_name, topic_name, [x, y], 4)
    old_id = y.member_id
    mark = k.log_mark(b, group_name)
    y.kill()
    t_kill = time.time()
    y2 = k.spawn(members, "A2", b, group_name, topic_name, instance_id="inst-a")
    y2.wait_for(lambda m: any("instance ID is still used" in e or "UNRELEASED_INSTANCE_ID" in e
                              for e in m.errors()),
                "the replacement is told UNRELEASED_INSTANCE_ID")
    d = describe_group(admin, group_name)
    ids = sorted(m.member_id for m in d.members)
    assert ids == sorted([x.member_id, old_id]), (ids, x.member_id, old_id)
    x.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3},
               "the other member gets the dead member's partitions")
    assert time.time() - t_kill >= k.SESSION_MS / 1000 - 1.5
    removed = [line for line in k.events_named(b, group_name, "member_removed", mark)
               if old_id in line]
    assert removed and 'reason="session_timeout"' in removed[0], k.show_events(b, group_name, mark)
    assert not y2.owned_now()
