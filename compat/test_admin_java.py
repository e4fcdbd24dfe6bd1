"""The consumer-group calls of `kafka-consumer-groups.sh` (the Java AdminClient of kafka-clients
3.9.1, compat/java/AdminGroups.java) against Partita, for a classic group and a KIP-848
(`group.protocol=consumer`) group:

  --list [--state S] [--type T]      listConsumerGroups (inStates / withTypes)
  --describe --members/--offsets     describeConsumerGroups, listConsumerGroupOffsets, listOffsets
  --reset-offsets --execute          alterConsumerGroupOffsets
  --delete-offsets                   deleteConsumerGroupOffsets
  --delete                           deleteConsumerGroups
  (and removeMembersFromConsumerGroup for a static classic member)

The group members are Java consumers (compat/java/GroupsTest.java, one JVM each, see
group_util.py). The expected values are what a Kafka 3.9 broker answers (its group coordinator,
group-coordinator/.../GroupMetadataManager.java and OffsetMetadataManager.java, and the admin
handlers of kafka-clients, clients/.../admin/internals/*Handler.java); each assertion says which.

AdminGroups runs as one JVM per test that reads one command per line and answers each with one
JSON line (`JavaAdmin.call`, compat/java_admin.py).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import pytest

import kip848_scenarios as k
from confluent_util import admin_client, create_topic
from group_util import FAST, MemberProc, committed, members_fixture, produce_numbered, wait_stable
from java_admin import JavaAdmin, jadmin  # noqa: F401 - jadmin is a fixture
from partita_compat import unique_name, wait_until
from test_java import compiled_java  # noqa: F401 - fixture: fetches jars, compiles java/*.java

members = members_fixture("java", java=True)

# The broker settings of the KIP-848 tests (6 s consumer session, 1 s heartbeat interval, no
# initial rebalance delay for the classic groups).
BROKER_SETTINGS = dict(k.KIP848)

# Kafka reports a member's host as the client's InetAddress.toString() (KafkaApis / the group
# coordinator: `request.context.clientAddress.toString`), which kafka-consumer-groups.sh prints.
KAFKA_CLIENT_HOST = "/127.0.0.1"

# GroupType.toString() of the group types (the filters take the lower-case names).
TYPE_NAME = {"classic": "Classic", "consumer": "Consumer"}


@pytest.fixture
def abroker(start_broker):
    return start_broker(BROKER_SETTINGS)


@pytest.fixture
def member_logs(members, extra_logs):
    extra_logs.append(("group members", members.describe))
    return members


# ------------------------------------------------------------------------------------------------
# Checks shared by the tests


def single_node(ja: JavaAdmin) -> dict:
    nodes = ja.ok("cluster")["nodes"]
    assert len(nodes) == 1, nodes
    return nodes[0]


def committed_offsets(ja: JavaAdmin, group: str, topic: str) -> Dict[int, int]:
    """partition -> committed offset per listConsumerGroupOffsets (None for 'no offset')."""
    out = {}
    for key, v in ja.offsets(group).items():
        t, p = key.rsplit(":", 1)
        assert t == topic, f"offset of an unexpected topic {key}: {v}"
        out[int(p)] = None if v is None else v["offset"]
    return out


def assert_listing(ja: JavaAdmin, group: str, state: str, gtype: str, simple: bool = False):
    """`--list`, `--list --state`, `--list --type`: the group appears with `state` and `gtype`
    wherever the filters match it, and nowhere else."""
    everything = ja.listed()
    assert group in everything, f"listConsumerGroups() does not list {group}: {everything}"
    assert everything[group] == {"group": group, "simple": simple, "state": state,
                                 "type": TYPE_NAME[gtype]}, everything[group]
    other_state = "Empty" if state != "Empty" else "Stable"
    assert group in ja.listed(f"states={state}"), f"inStates({state}) leaves out {group}"
    assert group not in ja.listed(f"states={other_state}"), \
        f"inStates({other_state}) lists {group} (state {state})"
    assert group in ja.listed(f"states={state},{other_state}")
    other_type = "consumer" if gtype == "classic" else "classic"
    assert group in ja.listed(f"types={gtype}"), f"withTypes({gtype}) leaves out {group}"
    assert group not in ja.listed(f"types={other_type}"), \
        f"withTypes({other_type}) lists the {gtype} group {group}"


def assert_describe_live(ja: JavaAdmin, group: str, topic: str, partitions: int,
                         ms: List[MemberProc], gtype: str, assignor: str, node: dict,
                         client_ids: Dict[str, str], instance_ids: Dict[str, str]) -> dict:
    d = ja.describe(group)
    assert d["ok"], d
    assert d["state"] == "Stable", d
    assert d["type"] == TYPE_NAME[gtype], d
    assert d["simple"] is False, d
    assert d["assignor"] == assignor, d
    assert d["coordinator"] == node, (d["coordinator"], node)
    by_id = {m["member_id"]: m for m in d["members"]}
    assert sorted(by_id) == sorted(m.member_id for m in ms), (d["members"], [m.describe()
                                                                            for m in ms])
    seen: List[int] = []
    for m in ms:
        dm = by_id[m.member_id]
        assert dm["client_id"] == client_ids[m.name], dm
        assert dm["host"] == KAFKA_CLIENT_HOST, dm
        assert dm["instance_id"] == instance_ids.get(m.name), dm
        parts = sorted(int(x.rsplit(":", 1)[1]) for x in dm["assignment"])
        assert all(x.rsplit(":", 1)[0] == topic for x in dm["assignment"]), dm
        assert parts == sorted(m.owned_now()), (dm, m.describe())
        if gtype == "consumer":
            # ConsumerGroupDescribe: the target assignment of a reconciled member is its
            # assignment.
            assert dm["target"] == dm["assignment"], dm
        else:
            # DescribeGroups has no target assignment: Optional.empty().
            assert dm["target"] is None, dm
        seen += parts
    assert sorted(seen) == list(range(partitions)), f"assignments {d['members']}"
    return d


def assert_non_empty_refusals(ja: JavaAdmin, group: str, topic: str, expected: Dict[int, int]):
    """What Kafka refuses while the group has members. Every refusal is checked; the differences
    are reported together."""
    problems = []

    def expect(line: str, error: str, detail: Callable[[dict], object]):
        r = ja.call(line)
        if r["ok"] or r.get("error") != error or detail(r) != error:
            problems.append(f"{line!r}: expected {error}, got {r}")

    # --delete: DeleteGroups -> NON_EMPTY_GROUP (ClassicGroup/ConsumerGroup.validateDeleteGroup).
    expect(f"delete {group}", "GroupNotEmptyException",
           lambda r: r["groups"][group].get("error"))
    # --delete-offsets of a subscribed topic: per partition GROUP_SUBSCRIBED_TO_TOPIC
    # (OffsetMetadataManager.deleteOffsets: group.isSubscribedToTopic, for a classic group from
    # its members' subscriptions, for a consumer group from subscribedTopicNames).
    expect(f"delete-offsets {group} {topic} 0", "GroupSubscribedToTopicException",
           lambda r: r["partitions"]["0"].get("error"))
    # An admin commit (no member id, generation -1) to a group with members: UNKNOWN_MEMBER_ID
    # (ClassicGroup.validateOffsetCommit; ConsumerGroup.validateOffsetCommit ->
    # getOrMaybeCreateMember("")). kafka-consumer-groups.sh --reset-offsets checks the state first
    # and refuses by itself.
    expect(f"alter {group} {topic} 0=0", "UnknownMemberIdException",
           lambda r: r["partitions"]["0"].get("error"))
    # Nothing changed.
    now = committed_offsets(ja, group, topic)
    if now != expected:
        problems.append(f"committed offsets changed by the refused calls: {expected} -> {now}")
    assert not problems, "\n".join(problems)


def wait_java_state(ja: JavaAdmin, group: str, state: str, members: Optional[int] = None,
                    timeout: float = 60.0) -> dict:
    """Polls describeConsumerGroups until the group is in `state` (with `members` members)."""
    last = {}

    def cond():
        d = ja.describe(group)
        last["d"] = d
        if not d.get("ok") or d.get("state") != state:
            return None
        return d if members is None or len(d["members"]) == members else None
    try:
        return wait_until(cond, timeout, f"describeConsumerGroups({group}) state {state}"
                                         f"{'' if members is None else f', {members} members'}",
                          interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast description: {last.get('d')}") from None


def assert_dead_description(d: dict, group: str):
    """describeConsumerGroups of a group the coordinator does not know: kafka-clients 3.9 sends
    ConsumerGroupDescribe, gets GROUP_ID_NOT_FOUND, retries with DescribeGroups, which Kafka
    answers without error: state Dead, protocol type "" (GroupMetadataManager.describeGroups);
    the client makes that a simple classic group with no members and no assignor."""
    assert d["ok"], f"describe of an unknown group failed instead of returning Dead: {d}"
    assert d == {"ok": True, "group": group, "state": "Dead", "type": "Classic", "simple": True,
                 "assignor": "", "coordinator": d["coordinator"], "members": []}, d


# ------------------------------------------------------------------------------------------------
# 1. classic group, two live members (one static) that committed


PARTS = 3
PER = 5


def assert_live_group(ja, admin, group_name, topic_name, members, kind, assignor, client_ids,
                      instance_ids):
    """What kafka-consumer-groups.sh sees of a Stable group of two members that committed every
    record: listing, description, offsets, several groups described at once, and the changes
    Kafka refuses while the group has members."""
    wait_stable(admin, group_name, topic_name, members, PARTS)
    everything = {p: PER for p in range(PARTS)}
    wait_until(lambda: committed(admin, group_name, topic_name) == everything, 60,
               "both members committed everything")
    node = single_node(ja)
    assert_listing(ja, group_name, "Stable", kind)
    assert_describe_live(ja, group_name, topic_name, PARTS, members, kind, assignor, node,
                         client_ids, instance_ids)
    offs = ja.offsets(group_name)
    assert offs == {f"{topic_name}:{p}": {"offset": PER, "epoch": None, "metadata": ""}
                    for p in range(PARTS)}, offs
    assert ja.ok(f"end-offsets {topic_name} {PARTS}")["offsets"] == \
        {str(p): PER for p in range(PARTS)}
    # --describe --all-groups: one describeConsumerGroups call for several groups (one
    # ConsumerGroupDescribe request; the groups it does not know are asked again with
    # DescribeGroups).
    ghost = unique_name("ghost")
    both = ja.ok(f"describe {group_name},{ghost}")["groups"]
    assert both[group_name]["state"] == "Stable" and len(both[group_name]["members"]) == 2, both
    assert_dead_description(both[ghost], ghost)
    assert_non_empty_refusals(ja, group_name, topic_name, everything)


@pytest.mark.timeout(180)
def test_admin_classic_group_live(abroker, member_logs, jadmin, topic_name, group_name):
    b = abroker
    ms = member_logs
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, PARTS)
    produce_numbered(b.bootstrap, topic_name, range(PARTS), PER)
    inst = f"inst-{group_name}"
    client_ids = {"static": f"cli-static-{group_name}", "dynamic": f"cli-dynamic-{group_name}"}
    s = ms.spawn("static", b.bootstrap, group_name, topic_name, instance_id=inst,
                 commit_below=-1, conf={"client.id": client_ids["static"]}, **FAST)
    d = ms.spawn("dynamic", b.bootstrap, group_name, topic_name, commit_below=-1,
                 conf={"client.id": client_ids["dynamic"]}, **FAST)
    ja = jadmin(b)
    assert_live_group(ja, admin, group_name, topic_name, [s, d], "classic", "range", client_ids,
                      {"static": inst})

    # removeMembersFromConsumerGroup(static instance): LeaveGroup by group instance id. The
    # static member is killed first so that it does not rejoin (one that only stops polling
    # still rejoins from librdkafka's background thread when its next heartbeat is refused;
    # seen once in CI); the group rebalances and the other member gets every partition.
    s.kill()
    r = ja.call(f"remove-static {group_name} {inst}")
    assert r["ok"] and r["members"][inst]["ok"], r
    d.wait_for(lambda m: m.owned_now() == frozenset(range(PARTS)),
               "the remaining member owns every partition")
    desc = wait_java_state(ja, group_name, "Stable", members=1)
    (only,) = desc["members"]
    assert only["member_id"] == d.member_id, (only, d.describe())
    assert only["assignment"] == sorted(f"{topic_name}:{p}" for p in range(PARTS)), only
    # Removing it again: the instance id is unknown now (UNKNOWN_MEMBER_ID for that member).
    r = ja.call(f"remove-static {group_name} {inst}")
    assert not r["ok"] and r["members"][inst]["error"] == "UnknownMemberIdException", r


# ------------------------------------------------------------------------------------------------
# 2. KIP-848 consumer group, two live members that committed


@pytest.mark.timeout(180)
def test_admin_consumer_group_live(abroker, member_logs, jadmin, topic_name, group_name):
    b = abroker
    ms = member_logs
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, PARTS)
    produce_numbered(b.bootstrap, topic_name, range(PARTS), PER)
    client_ids = {n: f"cli-{n}-{group_name}" for n in ("c1", "c2")}
    # c2 is a static member (group.instance.id): ConsumerGroupDescribe reports its instance id.
    instance_ids = {"c2": f"inst-{group_name}"}
    c1, c2 = [k.spawn(ms, n, b, group_name, topic_name, conf={"client.id": client_ids[n]},
                      commit_below=-1, instance_id=instance_ids.get(n)) for n in ("c1", "c2")]
    ja = jadmin(b)
    # The server-side assignor Kafka 3.9 uses by default (group.consumer.assignors): uniform.
    assert_live_group(ja, admin, group_name, topic_name, [c1, c2], "consumer", "uniform",
                      client_ids, instance_ids)


# ------------------------------------------------------------------------------------------------
# 3. once its members closed (Empty): reset offsets, delete offsets, delete the group


@pytest.mark.timeout(180)
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_admin_empty_group_offsets_and_delete(abroker, member_logs, jadmin, topic_name,
                                              group_name, protocol):
    b = abroker
    ms = member_logs
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2)
    produce_numbered(b.bootstrap, topic_name, range(2), 4)
    if protocol == "classic":
        m = ms.spawn("m", b.bootstrap, group_name, topic_name, commit_below=-1, **FAST)
    else:
        m = k.spawn(ms, "m", b, group_name, topic_name, commit_below=-1)
    ja = jadmin(b)
    m.wait_for(lambda m: m.commits == {0: 4, 1: 4}, "committed everything")
    wait_java_state(ja, group_name, "Stable")
    assert m.close() == 0, m.describe()
    # The member left (LeaveGroup / a leave heartbeat): Empty.
    d = wait_java_state(ja, group_name, "Empty")
    # Empty: no members. For a classic group the protocol type stays "consumer" (not simple) and
    # Kafka sends no protocol name (DescribeGroups of a group that is not Stable has no
    # protocolData), so no assignor; a consumer group names its server-side assignor.
    assert d == {"ok": True, "group": group_name, "state": "Empty", "type": TYPE_NAME[protocol],
                 "simple": False, "assignor": "uniform" if protocol == "consumer" else "",
                 "coordinator": single_node(ja), "members": []}, d
    assert_listing(ja, group_name, "Empty", protocol)
    assert committed_offsets(ja, group_name, topic_name) == {0: 4, 1: 4}

    # --reset-offsets --execute: OffsetCommit without member id and generation, accepted by an
    # Empty group. Leader epoch and metadata are stored as given and read back as given.
    r = ja.call(f"alter {group_name} {topic_name} 0=1,1=2:0:reset-by-test")
    assert r["ok"] and r["partitions"] == {"0": {"ok": True}, "1": {"ok": True}}, r
    assert ja.offsets(group_name) == {
        f"{topic_name}:0": {"offset": 1, "epoch": None, "metadata": ""},
        f"{topic_name}:1": {"offset": 2, "epoch": 0, "metadata": "reset-by-test"}}
    # The group is still the same Empty group.
    assert_listing(ja, group_name, "Empty", protocol)

    # --delete-offsets --topic T:0
    r = ja.call(f"delete-offsets {group_name} {topic_name} 0")
    assert r["ok"] and r["partitions"] == {"0": {"ok": True}}, r
    assert committed_offsets(ja, group_name, topic_name) == {1: 2}
    # Asked for by partition (ListConsumerGroupOffsetsSpec.topicPartitions): Kafka answers offset
    # -1 for the partition without an offset, which the client reports as null.
    assert ja.ok(f"offsets {group_name} {topic_name} 0,1")["offsets"] == {
        f"{topic_name}:0": None,
        f"{topic_name}:1": {"offset": 2, "epoch": 0, "metadata": "reset-by-test"}}
    # Deleting an offset that is not there is no error either (no tombstone, partition listed).
    r = ja.call(f"delete-offsets {group_name} {topic_name} 0")
    assert r["ok"] and r["partitions"] == {"0": {"ok": True}}, r

    # --delete
    r = ja.call(f"delete {group_name}")
    assert r["ok"] and r["groups"] == {group_name: {"ok": True}}, r
    assert group_name not in ja.listed(), "the deleted group is still listed"
    assert_dead_description(ja.describe(group_name), group_name)
    assert ja.offsets(group_name) == {}, "the deleted group's offsets are still there"
    # Deleting it again / deleting its offsets: GROUP_ID_NOT_FOUND.
    r = ja.call(f"delete {group_name}")
    assert not r["ok"] and r["groups"][group_name]["error"] == "GroupIdNotFoundException", r
    r = ja.call(f"delete-offsets {group_name} {topic_name} 1")
    assert not r["ok"] and r["error"] == "GroupIdNotFoundException", r


# ------------------------------------------------------------------------------------------------
# 4. a group that never existed; --reset-offsets of a new group creates a simple group


@pytest.mark.timeout(120)
def test_admin_unknown_group(abroker, jadmin, topic_name):
    b = abroker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2)
    ja = jadmin(b)
    ghost = unique_name("ghost")
    assert ghost not in ja.listed()
    assert_dead_description(ja.describe(ghost), ghost)
    # OffsetFetch of an unknown group: no offsets, no error.
    assert ja.offsets(ghost) == {}
    r = ja.call(f"delete {ghost}")
    assert not r["ok"] and r["groups"][ghost]["error"] == "GroupIdNotFoundException", r
    r = ja.call(f"delete-offsets {ghost} {topic_name} 0")
    assert not r["ok"] and r["error"] == "GroupIdNotFoundException", r
    assert r["partitions"]["0"]["error"] == "GroupIdNotFoundException", r

    # Offsets committed by the admin for a group nobody joined yet (the usual way to start a new
    # group at chosen offsets): Kafka creates an Empty classic group with no protocol type, which
    # the AdminClient reports as a simple consumer group.
    fresh = unique_name("fresh")
    r = ja.call(f"alter {fresh} {topic_name} 0=0,1=0")
    assert r["ok"], r
    assert committed_offsets(ja, fresh, topic_name) == {0: 0, 1: 0}
    assert_listing(ja, fresh, "Empty", "classic", simple=True)
    d = ja.describe(fresh)
    assert d == {"ok": True, "group": fresh, "state": "Empty", "type": "Classic", "simple": True,
                 "assignor": "", "coordinator": single_node(ja), "members": []}, d
    r = ja.call(f"delete {fresh}")
    assert r["ok"], r
    assert fresh not in ja.listed()
