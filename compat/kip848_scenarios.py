"""KIP-848 consumer-group scenarios (`group.protocol=consumer`), written once and run with each
client (confluent-kafka / librdkafka 2.16 and the Java kafka-clients 3.9.1 consumer) by
test_kip848_*.py. They mirror the classic scenarios of group_scenarios.py (issue 3 item 4, a-i) as
issue 5 item 5 asks, and reuse its member processes (group_member.py, GroupsTest.java) and helpers
(group_util.py): a member speaks the consumer protocol because it is given
`group.protocol=consumer`, and none of the classic-only settings (session.timeout.ms,
heartbeat.interval.ms, partition.assignment.strategy), which both clients reject with that
protocol: the session timeout and heartbeat interval are the broker's
(`group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`) and the assignor is
chosen with `group.remote.assignor`.

`members` is a group_util.Members. Broker events are read from its INFO log lines
(`event="member_joined"|"member_left"|"member_removed"|"rebalance_started"|"rebalance_completed"|
"static_member_rejoined"`).
"""

from __future__ import annotations

import re
import time
from typing import Dict, List, Optional

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType

from confluent_util import admin_client, create_topic
from group_scenarios import (assert_no_duplicates, assert_one_idle_member, assert_owners_consume,
                             assert_survivor_resumed_at_commit, values_of,
                             victim_processes_and_commits, wait_consumed)
from group_util import (GROUP_DEADLINE, LoopProducer, MemberProc, committed,
                        completed_generations, describe_group, group_log_lines, produce_numbered,
                        wait_stable)
from partita_compat import unique_name, wait_until

# Broker settings for the KIP-848 tests: a 6 s session timeout keeps the eviction tests short and
# a 1 s heartbeat interval keeps healthy members far from it on a busy machine (the broker's
# default is 5 s, which would leave a 6 s session only one second of slack).
SESSION_MS = 6000
KIP848 = {
    "group.consumer.session.timeout.ms": SESSION_MS,
    "group.consumer.heartbeat.interval.ms": 1000,
    # For the classic groups some tests run next to the consumer groups.
    "group.initial.rebalance.delay.ms": 0,
}


def broker_fixture():
    """The `kbroker` fixture of test_kip848_*.py: a broker with the KIP848 settings."""
    @pytest.fixture
    def kbroker(start_broker):
        return start_broker(KIP848)
    return kbroker


CONSUMER = {"group.protocol": "consumer"}

# Classic member settings (for the side-by-side and protocol-mismatch tests).
CLASSIC_FAST = dict(session_timeout_ms=6000, heartbeat_ms=300)


def spawn(members, name: str, broker, group: str, topic, conf: Optional[dict] = None,
          **kw) -> MemberProc:
    """A member speaking the consumer protocol (KIP-848)."""
    c = dict(CONSUMER)
    c.update(conf or {})
    return members.spawn(name, broker.bootstrap, group, topic, conf=c, **kw)


def spawn_classic(members, name: str, broker, group: str, topic, **kw) -> MemberProc:
    """A member speaking the classic protocol (JoinGroup/SyncGroup/Heartbeat)."""
    return members.spawn(name, broker.bootstrap, group, topic, **CLASSIC_FAST, **kw)


# ------------------------------------------------------------------------------------------------
# Broker log


_EVENT = re.compile(r'event="([a-z_]+)"')


def group_events(broker, group: str, since: int = 0) -> List[str]:
    """The group's structured event lines (member_joined, rebalance_started, ...) from line
    `since` of group_log_lines on."""
    return [line for line in group_log_lines(broker, group)[since:] if _EVENT.search(line)]


def events_named(broker, group: str, name: str, since: int = 0) -> List[str]:
    return [line for line in group_events(broker, group, since) if f'event="{name}"' in line]


def log_mark(broker, group: str) -> int:
    return len(group_log_lines(broker, group))


def show_events(broker, group: str, since: int = 0) -> str:
    return "\n".join(group_events(broker, group, since)) or "(no group event lines)"


def member_by_id(admin, group: str, member_id: str):
    d = describe_group(admin, group)
    for m in d.members:
        if m.member_id == member_id:
            return m
    return None


def tps_of(assignment, topic: str) -> List[int]:
    if assignment is None:
        return []
    return sorted(tp.partition for tp in assignment.topic_partitions if tp.topic == topic)


def commit_errors(ms: List[MemberProc]) -> List[str]:
    return [f"{m.name}: {e}" for m in ms for e in m.errors() if "commit failed" in e]


# ------------------------------------------------------------------------------------------------
# a. 4 partitions, 5 members: one owner per partition; the idle member is described with an
#    empty assignment (ConsumerGroupDescribe)


def more_members_than_partitions(broker, members, topic, group, conf=None):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    ms = [spawn(members, f"a{i}", broker, group, topic, conf=conf) for i in range(5)]
    assign = wait_stable(admin, group, topic, ms, 4)
    idle = assert_one_idle_member(assign)

    # confluent-kafka's describe_consumer_groups sends ConsumerGroupDescribe for a consumer
    # group: the group type, the server-side assignor, and per member its current and its target
    # assignment.
    d = describe_group(admin, group)
    assert d.type == ConsumerGroupType.CONSUMER, f"group type {d.type}"
    assert d.state == ConsumerGroupState.STABLE, d.state
    assert d.partition_assignor == (conf or {}).get("group.remote.assignor", "uniform"), \
        d.partition_assignor
    assert not d.is_simple_consumer_group
    idle_member = next(m for m in ms if m.name == idle)
    described = {m.member_id: m for m in d.members}
    assert sorted(described) == sorted(m.member_id for m in ms), (list(described),
                                                                  [m.member_id for m in ms])
    dm = described[idle_member.member_id]
    assert tps_of(dm.assignment, topic) == [], f"the idle member is described with {dm.assignment}"
    assert tps_of(dm.target_assignment, topic) == [], \
        f"the idle member's target assignment is {dm.target_assignment}"
    for m in ms:
        dm = described[m.member_id]
        assert tps_of(dm.target_assignment, topic) == sorted(assign[m.name]), \
            (m.name, dm.target_assignment, assign[m.name])
        assert dm.client_id, dm.client_id

    # Records go to the partition's owner only; the idle member gets none.
    assert_owners_consume(broker, topic, ms, assign, 4)
    assert not idle_member.recs()
    # Members that joined one after the other had partitions revoked, never lost.
    for m in ms:
        assert not m.events_of("lost"), m.describe()
    return assign


# ------------------------------------------------------------------------------------------------
# b. two consumer groups on one topic: each gets every record, each record once per group


def broadcast_two_groups(broker, members, topic, conf=None):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 3)
    groups = [unique_name("k1"), unique_name("k2")]
    per_group = {g: [spawn(members, f"{g[:2]}-{i}", broker, g, topic, conf=conf)
                     for i in range(2)] for g in groups}
    for g in groups:
        wait_stable(admin, g, topic, per_group[g], 3)
    values = produce_numbered(broker.bootstrap, topic, range(3), 20)
    for g in groups:
        ms = per_group[g]
        wait_consumed(ms, values, f"group {g} consumed every record")
        assert_no_duplicates(ms, f"group {g}")
        assert all(values_of(m) for m in ms), f"group {g}: a member consumed nothing"


# ------------------------------------------------------------------------------------------------
# c. commit after processing; a member is SIGKILLed; once the session timeout evicts it, the
#    survivor resumes its partition at the committed offset


def kill_then_resume_at_commit(broker, members, topic, group, conf=None):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 2)
    survivor = spawn(members, "survivor", broker, group, topic, conf=conf, commit_below=-1)
    victim = spawn(members, "victim", broker, group, topic, conf=conf, commit_below=20)
    assign = wait_stable(admin, group, topic, [survivor, victim], 2)
    (vp,) = assign["victim"]
    (sp,) = assign["survivor"]
    values = victim_processes_and_commits(broker, admin, topic, group, victim, vp)
    assert not commit_errors([survivor, victim]), commit_errors([survivor, victim])

    mark = log_mark(broker, group)
    victim_id = victim.member_id
    t_kill = time.time()
    victim.kill()
    survivor.wait_for(lambda m: m.owned_now() == {0, 1},
                      "survivor took over the victim's partition")
    took_over = time.time() - t_kill
    assert_survivor_resumed_at_commit(broker, topic, survivor, victim, vp, sp, values)
    # The dead member was evicted by the broker's session timeout, not earlier.
    removed = [line for line in events_named(broker, group, "member_removed", mark)
               if victim_id in line]
    assert removed and 'reason="session_timeout"' in removed[0], \
        f"no member_removed (session_timeout) line for {victim_id}:\n" + \
        show_events(broker, group, mark)
    assert took_over >= SESSION_MS / 1000 - 1.5, \
        f"the victim's partition moved {took_over:.1f}s after the kill, before the session timeout"
    return took_over


# ------------------------------------------------------------------------------------------------
# e. a third member joins a group of two: only the partitions that move are revoked (each
#    before its new owner gets it); the others are never revoked and keep flowing


def max_gap(recs: List[dict], t0: float, t1: float) -> float:
    """Longest time without a consumed record in [t0, t1], from `recs` (sorted by time)."""
    ts = [t0] + sorted(r["t"] for r in recs if t0 <= r["t"] <= t1) + [t1]
    return max(b - a for a, b in zip(ts, ts[1:]))


def third_member_joins(broker, members, topic, group, assignor="uniform", conf=None,
                       gap_limit_s: float = 1.5, strict_commits: bool = True):
    """`strict_commits`: also require that no synchronous commit failed during the
    reconciliation (see the STALE_MEMBER_EPOCH note at the end)."""
    admin = admin_client(broker.bootstrap)
    partitions = 6
    create_topic(admin, topic, partitions)
    conf = dict(conf or {}, **{"group.remote.assignor": assignor})
    a = spawn(members, "A", broker, group, topic, conf=conf, commit_below=-1)
    b = spawn(members, "B", broker, group, topic, conf=conf, commit_below=-1)
    before = wait_stable(admin, group, topic, [a, b], partitions)
    assert sorted(len(p) for p in before.values()) == [3, 3], before
    assert describe_group(admin, group).partition_assignor == assignor

    loop = LoopProducer(broker.bootstrap, topic, partitions, interval=0.005).start()
    try:
        for m in (a, b):
            m.wait_for(lambda m: len({r["p"] for r in m.recs()}) == 3,
                       "consumed from each of its partitions")
        mark = log_mark(broker, group)
        t_join = time.time()
        c = spawn(members, "C", broker, group, topic, conf=conf, commit_below=-1)
        after = wait_stable(admin, group, topic, [a, b, c], partitions)
        t_stable = time.time()
        assert sorted(len(p) for p in after.values()) == [2, 2, 2], after
        c.wait_for(lambda m: len({r["p"] for r in m.recs()}) == 2,
                   "new member consumes from both its partitions")
        t_c = min(e["t"] for e in c.events_of("assign") if e["parts"])
        n = loop.sent
        wait_until(lambda: loop.sent >= n + 200, 30, "loop producer progress")
        # Let the members drain what was produced before comparing gaps.
        t_end = time.time()
    finally:
        loop.stop()
    expected = [f"loop-{i % partitions}-{i}" for i in range(loop.sent)]
    wait_consumed([a, b, c], expected, "every produced record consumed by the group")
    assert_no_duplicates([a, b, c], "after the third member joined (every record is committed "
                                    "synchronously after processing)")

    staying = {name: before[name] & after[name] for name in ("A", "B")}
    moved = {name: before[name] - after[name] for name in ("A", "B")}
    if assignor == "uniform":
        assert sum(len(p) for p in staying.values()) == 4, \
            f"the uniform assignor should keep 2 partitions with each old owner: {before} -> {after}"
    gained = {name: after[name] - before.get(name, frozenset()) for name in ("A", "B", "C")}
    assert set().union(*moved.values()) == set().union(*gained.values()), (before, after)
    by_name = {"A": a, "B": b, "C": c}
    report = []
    # A partition that moves is revoked by its old owner before its new owner gets it (never two
    # owners at once).
    for old_name in ("A", "B"):
        for p in moved[old_name]:
            new_name = next(n for n, ps in gained.items() if p in ps)
            revs = [e["t"] for e in by_name[old_name].events_of("revoke")
                    if e["t"] >= t_join and p in e["parts"]]
            gots = [e["t"] for e in by_name[new_name].events_of("assign")
                    if e["t"] >= t_join and p in e["parts"]]
            assert revs and gots, (p, old_name, new_name, by_name[old_name].describe(),
                                   by_name[new_name].describe())
            assert min(revs) <= min(gots) + 0.05, (
                f"partition {p} assigned to {new_name} at {min(gots):.3f} before {old_name} "
                f"revoked it at {min(revs):.3f}")
    for m in (a, b):
        revoked_evs = [e for e in m.events_of("revoke") + m.events_of("lost") if e["t"] >= t_join]
        revoked = set().union(*[set(e["parts"]) for e in revoked_evs]) if revoked_evs else set()
        assert not m.events_of("lost"), f"{m.name} lost partitions: {m.describe()}"
        assert not (revoked & staying[m.name]), (
            f"{m.name} had staying partitions {sorted(revoked & staying[m.name])} revoked "
            f"(staying {sorted(staying[m.name])}): {m.describe()}")
        assert revoked == moved[m.name], (f"{m.name} should have revoked exactly "
                                          f"{sorted(moved[m.name])}, revoked {sorted(revoked)}")
        # The staying partitions kept flowing through the whole reconciliation.
        for p in staying[m.name]:
            gap = max_gap(m.recs(p), t_join, t_stable)
            report.append((m.name, p, round(gap, 3)))
            assert gap < gap_limit_s, (
                f"{m.name}'s staying partition {p} went {gap:.2f}s without a record between the "
                f"join and the group being stable again ({t_stable - t_join:.2f}s): the rebalance "
                f"paused a partition that did not move. gaps {report}")
            if t_c - t_join > 0.5:
                during = [r for r in m.recs(p) if t_join < r["t"] < t_c]
                assert during, (f"{m.name} consumed nothing from staying partition {p} during "
                                f"the rebalance ({t_c - t_join:.2f}s window)")
    # One reconciliation: the group epoch was bumped once, for the join.
    started = events_named(broker, group, "rebalance_started", mark)
    assert len(started) == 1 and 'cause="join"' in started[0], show_events(broker, group, mark)
    assert events_named(broker, group, "rebalance_completed", mark), \
        show_events(broker, group, mark)
    # Commits of the partitions that stay keep working too. A member's commit can race with the
    # heartbeat that acknowledges its revocation and moves it to the new epoch; Kafka 3.9/4.0
    # then answer STALE_MEMBER_EPOCH (librdkafka does not retry it; the Java consumer retries
    # commitSync with its new epoch). KIP-1251 (assignment epochs) accepts the older epoch for
    # partitions that were not revoked since, which is what "the partitions that stay keep
    # flowing" needs.
    failed = [(m.name, e) for m in (a, b, c) for e in m.events_of("error")
              if "commit failed" in e["msg"]]
    assert not failed or not strict_commits, (
        f"synchronous commits failed during the reconciliation (partition p, offset o): "
        f"{[(n, e.get('p'), e.get('o'), e['msg']) for n, e in failed]}; staying partitions "
        f"{staying}")
    return before, after, {"t_assign_c": t_c - t_join, "t_stable": t_stable - t_join,
                           "gaps": report, "t_end": t_end}


# ------------------------------------------------------------------------------------------------
# f. a static member (group.instance.id) closes (a leave with epoch -2) and comes back within
#    the session timeout: same partitions, no epoch bump, the other member never notices


def static_member_restart(broker, members, topic, group, conf=None):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    b = spawn(members, "B", broker, group, topic, conf=conf, instance_id="inst-b",
              commit_below=-1)
    b.wait_for(lambda m: len(m.owned_now()) == 4, "first member owns everything")
    a = spawn(members, "A", broker, group, topic, conf=conf, instance_id="inst-a",
              commit_below=-1)
    before = wait_stable(admin, group, topic, [a, b], 4)
    values = produce_numbered(broker.bootstrap, topic, range(4), 5)
    wait_consumed([a, b], values, "records consumed before the restart")
    a.wait_for(lambda m: all(m.commits.get(p) == 5 for p in before["A"]),
               "A committed what it consumed")
    gens_before = completed_generations(broker, group)
    gen_a = a.generation
    gen_b = b.generation
    b_events_before = len(b.events_of("assign")) + len(b.events_of("revoke"))
    mark = log_mark(broker, group)
    old_id = a.member_id

    t_close = time.time()
    a.close()
    left = events_named(broker, group, "member_left", mark)
    assert any(old_id in line for line in left), \
        "closing the static member sent no leave:\n" + show_events(broker, group, mark)
    a2 = spawn(members, "A2", broker, group, topic, conf=conf, instance_id="inst-a",
               commit_below=-1)
    a2.wait_for(lambda m: m.owned_now() == before["A"], f"restarted member gets {before['A']}")
    more = produce_numbered(broker.bootstrap, topic, range(4), 5, start=5)
    wait_consumed([a2, b], more, "records consumed after the restart")
    for p in before["A"]:
        offs = [r["o"] for r in a2.recs(p)]
        assert offs == list(range(5, 10)), f"A2 partition {p}: resumed at {offs}, expected 5..9"
    assert {r["p"] for r in a2.recs()} <= before["A"]

    # Nothing happens for longer than the session timeout: no epoch bump, B never disturbed.
    quiet_until = t_close + SESSION_MS / 1000 + 2
    while time.time() < quiet_until:
        started = events_named(broker, group, "rebalance_started", mark)
        removed = events_named(broker, group, "member_removed", mark)
        assert not started and not removed, (
            "a static member restarting within the session timeout bumped the group epoch or "
            "was removed:\n" + show_events(broker, group, mark))
        assert len(b.events_of("assign")) + len(b.events_of("revoke")) == b_events_before, \
            f"the other member saw a reconciliation: {b.describe()}"
        time.sleep(0.2)
    after = wait_stable(admin, group, topic, [a2, b], 4)
    assert after["A2"] == before["A"] and after["B"] == before["B"], (before, after)
    assert completed_generations(broker, group) == gens_before, \
        f"epochs completed before {gens_before}, now {completed_generations(broker, group)}"
    rejoined = events_named(broker, group, "static_member_rejoined", mark)
    assert rejoined and old_id in rejoined[0] and a2.member_id in rejoined[0], \
        show_events(broker, group, mark)
    d = describe_group(admin, group)
    assert sorted(m.group_instance_id for m in d.members) == ["inst-a", "inst-b"], \
        [(m.member_id, m.group_instance_id) for m in d.members]
    if gen_a is not None:  # the Java client reports its member epoch (groupMetadata())
        a2.wait_for(lambda m: m.generation is not None, "restarted member reports its epoch")
        assert a2.generation == gen_a, f"member epoch was {gen_a}, after the restart {a2.generation}"
        assert b.generation == gen_b, f"B's epoch moved from {gen_b} to {b.generation}"


# ------------------------------------------------------------------------------------------------
# g. a member that stops polling beyond max.poll.interval.ms loses its partitions


def missed_polls(broker, members, topic, group, conf=None, max_poll_ms=4000,
                 expect_leave: bool = True):
    """`expect_leave`: the client sends a leave heartbeat (epoch -1) by itself when its poll
    timer expires (the Java consumer). librdkafka 2.16 instead stops heartbeating and waits for
    the application's next poll, so the broker removes it on the session timeout."""
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    x = spawn(members, "stuck", broker, group, topic, conf=conf, max_poll_ms=max_poll_ms)
    y = spawn(members, "live", broker, group, topic, conf=conf, max_poll_ms=max_poll_ms)
    before = wait_stable(admin, group, topic, [x, y], 4)
    assert len(before["stuck"]) == 2
    mark = log_mark(broker, group)
    stuck_id = x.member_id
    t_hold = time.time()
    x.hold()
    y.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3}, "the live member owns every partition")
    elapsed = time.time() - t_hold
    assert elapsed >= max_poll_ms / 1000 - 1.0, \
        f"partitions moved {elapsed:.1f}s after polling stopped, before max.poll.interval.ms"
    wait_until(lambda: [m.member_id for m in describe_group(admin, group).members]
               == [y.member_id], 30, "only the live member is described")
    values = produce_numbered(broker.bootstrap, topic, range(4), 5)
    wait_consumed([y], values, "live member consumes every partition")
    lines = [line for line in group_events(broker, group, mark) if stuck_id in line]
    left = [line for line in lines if 'event="member_left"' in line]
    removed = [line for line in lines if 'event="member_removed"' in line]
    if expect_leave:
        assert left, ("the stuck member did not leave by itself (no member_left line):\n"
                      + show_events(broker, group, mark))
        assert elapsed < max_poll_ms / 1000 + SESSION_MS / 1000 - 0.5, \
            f"partitions moved only {elapsed:.1f}s after polling stopped"
    else:
        assert left or removed, ("no broker line says the stuck member left or was removed:\n"
                                 + show_events(broker, group, mark))
    return elapsed, ("left" if left else "removed")


# ------------------------------------------------------------------------------------------------
# h. a member killed without leaving is removed after the session timeout


def killed_member_evicted(broker, members, topic, group, conf=None):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    x = spawn(members, "victim", broker, group, topic, conf=conf)
    y = spawn(members, "survivor", broker, group, topic, conf=conf)
    wait_stable(admin, group, topic, [x, y], 4)
    mark = log_mark(broker, group)
    victim_id = x.member_id
    t_kill = time.monotonic()
    x.kill()
    # Until the session timeout passes the victim is still a member holding its partitions.
    time_left = SESSION_MS / 1000 - 2.0
    wait_until(lambda: time.monotonic() - t_kill >= time_left
               or not member_by_id(admin, group, victim_id), time_left + 5,
               "session timeout window")
    if time.monotonic() - t_kill < time_left:
        raise AssertionError(f"the victim was removed {time.monotonic() - t_kill:.1f}s after the "
                             f"kill, before the {SESSION_MS} ms session timeout:\n"
                             + show_events(broker, group, mark))
    y.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3}, "survivor owns every partition")
    elapsed = time.monotonic() - t_kill
    assert elapsed < SESSION_MS / 1000 + 10, f"eviction took {elapsed:.1f}s"
    removed = [line for line in events_named(broker, group, "member_removed", mark)
               if victim_id in line]
    assert removed and 'reason="session_timeout"' in removed[0], show_events(broker, group, mark)
    d = describe_group(admin, group)
    assert [m.member_id for m in d.members] == [y.member_id], d.members
    values = produce_numbered(broker.bootstrap, topic, range(4), 5)
    wait_consumed([y], values, "survivor consumes every partition")
    return elapsed


# ------------------------------------------------------------------------------------------------
# i. broker restart: running members continue (same member ids, no rejoin) or rejoin, and resume
#    from the committed offsets; nothing committed is read again, nothing is lost


def broker_restart(broker, members, topic, group, conf=None, kill=False,
                   expect_continue: bool = True):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 3)
    ms = [spawn(members, f"r{i}", broker, group, topic, conf=conf, commit_below=-1)
          for i in range(2)]
    before = wait_stable(admin, group, topic, ms, 3)
    values = produce_numbered(broker.bootstrap, topic, range(3), 10)
    wait_consumed(ms, values, "records consumed before the restart")
    wait_until(lambda: committed(admin, group, topic) == {0: 10, 1: 10, 2: 10}, 30,
               "every record committed")
    ids_before = sorted(m.member_id for m in ms)
    gens_before = {m.name: m.generation for m in ms}
    mark = log_mark(broker, group)

    broker.restart(kill=kill)
    admin = admin_client(broker.bootstrap)
    wait_until(lambda: committed(admin, group, topic) == {0: 10, 1: 10, 2: 10}, GROUP_DEADLINE,
               "committed offsets back after the restart")
    more = produce_numbered(broker.bootstrap, topic, range(3), 5, start=10)
    wait_consumed(ms, more, "records produced after the restart consumed")
    after = wait_stable(admin, group, topic, ms, 3)
    for p in range(3):
        offs = sorted(r["o"] for m in ms for r in m.recs(p))
        assert offs == list(range(15)), (
            f"partition {p}: the group should read 0..14 exactly once across the restart "
            f"(resuming at the committed offset 10); it read {offs}")
    wait_until(lambda: committed(admin, group, topic) == {0: 15, 1: 15, 2: 15}, 30,
               "commits after the restart")
    lines = group_events(broker, group, mark)
    rejoined = [line for line in lines
                if re.search(r'event="(member_joined|member_removed|member_left)"', line)]
    outcome = {"before": before, "after": after, "rejoined": rejoined}
    if expect_continue:
        assert sorted(m.member_id for m in ms) == ids_before, (ids_before, ms)
        assert not rejoined, ("after the broker restart the members had to rejoin instead of "
                              "continuing with their epochs and assignments:\n"
                              + show_events(broker, group, mark))
        assert after == before, f"assignment before the restart {before}, after {after}"
        for m in ms:
            if gens_before[m.name] is not None:
                assert m.generation == gens_before[m.name], \
                    f"{m.name}: epoch {gens_before[m.name]} -> {m.generation}"
    errors = [e for m in ms for e in m.errors() if "commit failed" in e]
    outcome["commit_errors"] = errors
    return outcome


# ------------------------------------------------------------------------------------------------
# A member speaking the other protocol is refused; neither group is disturbed


def protocol_mismatch_refused(broker, members, topic, classic_refused, consumer_refused):
    """A classic member joins an active consumer group (refused with INCONSISTENT_GROUP_PROTOCOL,
    from JoinGroup) and a consumer-protocol member an active classic group (GROUP_ID_NOT_FOUND,
    from ConsumerGroupHeartbeat); `classic_refused(m)` and `consumer_refused(m)` say whether the
    intruder m reported its refusal, as its client words it. Both groups keep their one member and
    their assignment, and records still flow. Returns (g_consumer, g_classic, the consumer group's
    member, the classic group's member, the consumer-protocol intruder) for the client's own
    checks."""
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 2)
    g_consumer, g_classic = unique_name("consumer"), unique_name("classic")
    cons = spawn(members, "consumer", broker, g_consumer, topic)
    classic = spawn_classic(members, "classic", broker, g_classic, topic)
    wait_stable(admin, g_consumer, topic, [cons], 2)
    wait_stable(admin, g_classic, topic, [classic], 2)
    gens_classic = completed_generations(broker, g_classic)
    mark = log_mark(broker, g_consumer)

    intruder_classic = spawn_classic(members, "classic-into-consumer", broker, g_consumer, topic)
    intruder_consumer = spawn(members, "consumer-into-classic", broker, g_classic, topic)
    intruder_classic.wait_for(classic_refused, "classic member told INCONSISTENT_GROUP_PROTOCOL")
    intruder_consumer.wait_for(consumer_refused,
                               "consumer-protocol member told GROUP_ID_NOT_FOUND")
    assert not intruder_classic.owned_now() and not intruder_consumer.owned_now()

    # Both groups keep their one member and their assignment; records still flow.
    assert wait_stable(admin, g_consumer, topic, [cons], 2) == {"consumer": {0, 1}}
    assert wait_stable(admin, g_classic, topic, [classic], 2) == {"classic": {0, 1}}
    assert completed_generations(broker, g_classic) == gens_classic
    assert not events_named(broker, g_consumer, "rebalance_started", mark), \
        show_events(broker, g_consumer, mark)
    values = produce_numbered(broker.bootstrap, topic, range(2), 5)
    wait_consumed([cons], values, "the consumer group still consumes")
    wait_consumed([classic], values, "the classic group still consumes")
    return g_consumer, g_classic, cons, classic, intruder_consumer


# ------------------------------------------------------------------------------------------------
# A member frozen (SIGSTOP) beyond the session timeout is fenced; when it wakes up (SIGCONT) it
# finds its partitions lost (UNKNOWN_MEMBER_ID / FENCED_MEMBER_EPOCH), rejoins with epoch 0 and
# gets a share again; nothing is consumed twice past the last commit, nothing is lost


def zombie_member_rejoins(broker, members, topic, group, conf=None):
    import signal

    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    z = spawn(members, "zombie", broker, group, topic, conf=conf, commit_below=-1)
    y = spawn(members, "live", broker, group, topic, conf=conf, commit_below=-1)
    before = wait_stable(admin, group, topic, [z, y], 4)
    values = produce_numbered(broker.bootstrap, topic, range(4), 5)
    wait_consumed([z, y], values, "records consumed before the freeze")
    wait_until(lambda: committed(admin, group, topic) == {p: 5 for p in range(4)}, 30,
               "everything committed")
    mark = log_mark(broker, group)
    zombie_id = z.member_id
    z.proc.send_signal(signal.SIGSTOP)
    try:
        t_stop = time.time()
        y.wait_for(lambda m: m.owned_now() == {0, 1, 2, 3},
                   "the live member owns every partition while the other is frozen")
        assert time.time() - t_stop >= SESSION_MS / 1000 - 1.5
        more = produce_numbered(broker.bootstrap, topic, range(4), 5, start=5)
        wait_consumed([y], more, "the live member consumes the frozen member's partitions")
        wait_until(lambda: committed(admin, group, topic) == {p: 10 for p in range(4)}, 30,
                   "the live member committed")
    finally:
        t_wake = time.time()
        z.proc.send_signal(signal.SIGCONT)
    z.wait_for(lambda m: [e for e in m.events_of("lost") + m.events_of("revoke")
                          if e["t"] >= t_wake],
               "the woken member gives up its old partitions")
    t_gave_up = min(e["t"] for e in z.events_of("lost") + z.events_of("revoke")
                    if e["t"] >= t_wake)
    after = wait_stable(admin, group, topic, [z, y], 4)
    assert all(len(p) == 2 for p in after.values()), after
    last = produce_numbered(broker.bootstrap, topic, range(4), 5, start=10)
    wait_consumed([z, y], last, "both members consume again")
    wait_until(lambda: committed(admin, group, topic) == {p: 15 for p in range(4)}, 30,
               "commits reach 15 on every partition")
    # The woken member may process records it fetched before it learnt it was fenced (a zombie
    # does); its commits of them must be refused, so that the committed offsets never go back.
    zombie_window = [r for r in z.recs() if t_wake <= r["t"] <= t_gave_up + 0.5]
    ok_commits = [e for e in z.events_of("commit") if t_wake <= e["t"] <= t_gave_up]
    assert not ok_commits, (f"commits of the fenced member were accepted after it woke up: "
                            f"{ok_commits}\n{z.describe()}")
    refused = [e["msg"] for e in z.events_of("error")
               if "commit failed" in e["msg"] and e["t"] >= t_wake]
    assert all(re.search(r"UNKNOWN_MEMBER_ID|unknown member|FENCED_MEMBER_EPOCH|fenced|"
                         r"STALE_MEMBER_EPOCH|stale member epoch", msg) for msg in refused), refused
    seen: Dict[str, str] = {}
    window_values = {r["v"] for r in zombie_window}
    for m in (z, y):
        for v in values_of(m):
            if v in seen:
                assert v in window_values, (
                    f"record {v} delivered to both {seen[v]} and {m.name}, and not in the "
                    f"zombie's window between waking up and learning it was fenced\n"
                    + z.describe() + "\n" + y.describe())
            seen[v] = m.name
    removed = [line for line in events_named(broker, group, "member_removed", mark)
               if zombie_id in line]
    assert removed and 'reason="session_timeout"' in removed[0], show_events(broker, group, mark)
    return before, after, z.member_id == zombie_id


# ------------------------------------------------------------------------------------------------
# The broker is SIGKILLed in the middle of a reconciliation (a third member just joined, the
# partitions that move are being revoked) and restarted: the group finishes reconciling from the
# replayed records, ends with one owner per partition, and consumes everything from the commits


def broker_killed_during_reconciliation(broker, members, topic, group, conf=None):
    admin = admin_client(broker.bootstrap)
    partitions = 6
    create_topic(admin, topic, partitions)
    a = spawn(members, "A", broker, group, topic, conf=conf, commit_below=-1)
    b = spawn(members, "B", broker, group, topic, conf=conf, commit_below=-1)
    wait_stable(admin, group, topic, [a, b], partitions)
    values = produce_numbered(broker.bootstrap, topic, range(partitions), 5)
    wait_consumed([a, b], values, "records consumed before the join")
    mark = log_mark(broker, group)
    c = spawn(members, "C", broker, group, topic, conf=conf, commit_below=-1)
    wait_until(lambda: events_named(broker, group, "member_joined", mark), GROUP_DEADLINE,
               "the third member joined")
    broker.restart(kill=True)
    admin = admin_client(broker.bootstrap)
    after = wait_stable(admin, group, topic, [a, b, c], partitions)
    assert sorted(len(p) for p in after.values()) == [2, 2, 2], after
    more = produce_numbered(broker.bootstrap, topic, range(partitions), 5, start=5)
    wait_consumed([a, b, c], values + more, "every record consumed across the restart")
    wait_until(lambda: committed(admin, group, topic) == {p: 10 for p in range(partitions)}, 30,
               "commits reach the end of every partition")
    # Records before the join were committed before the restart: none is read again.
    again = [r["v"] for m in (a, b, c) for r in m.recs() if r["o"] < 5]
    assert sorted(again) == sorted(values), \
        f"records committed before the restart were read again: {sorted(again)}"
    for m in (a, b, c):
        assert not m.events_of("lost"), f"{m.name} lost its partitions: {m.describe()}"
    return after
