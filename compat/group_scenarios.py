"""Consumer-group scenarios of issue 3 item 4, written once and run with each client
(confluent-kafka, kafka-python, Java) by test_groups_*.py. `members` is a group_util.Members."""

from __future__ import annotations

import time
from typing import Dict, List

from confluent_util import admin_client, create_topic
from group_util import (FAST, GROUP_DEADLINE, LoopProducer, MemberProc, committed,
                        completed_generations, describe_group, group_log_lines, produce_numbered,
                        wait_stable)
from partita_compat import unique_name, wait_until


def values_of(m: MemberProc, partition=None) -> List[str]:
    return [r["v"] for r in m.recs(partition)]


def wait_consumed(ms: List[MemberProc], expected, msg: str, timeout: float = GROUP_DEADLINE):
    """Waits until the members together have processed every value in `expected`."""
    expected = set(expected)

    def cond():
        got = set()
        for m in ms:
            got.update(values_of(m))
        return expected <= got

    try:
        wait_until(cond, timeout, msg)
    except AssertionError as exc:
        got = set()
        for m in ms:
            got.update(values_of(m))
        missing = sorted(expected - got)
        raise AssertionError(f"{exc}\n{len(missing)} of {len(expected)} records never consumed, "
                             f"e.g. {missing[:10]}\n" + "\n".join(m.describe() for m in ms)) \
            from None


def assert_no_duplicates(ms: List[MemberProc], what: str) -> None:
    """No record was processed twice by the members `ms` (of one group) together."""
    seen: Dict[str, str] = {}
    for m in ms:
        for v in values_of(m):
            if v in seen:
                raise AssertionError(f"{what}: record {v} delivered to both {seen[v]} and "
                                     f"{m.name}\n" + "\n".join(x.describe() for x in ms))
            seen[v] = m.name


def assert_one_idle_member(assign: Dict[str, set]) -> str:
    """Every member of `assign` (name -> partitions) but one owns one partition; returns the name
    of the member that owns none."""
    idle = [name for name, parts in assign.items() if not parts]
    assert len(idle) == 1, f"expected exactly one member without partitions: {assign}"
    busy = {name: parts for name, parts in assign.items() if parts}
    assert all(len(parts) == 1 for parts in busy.values()), assign
    return idle[0]


def assert_owners_consume(broker, topic, ms: List[MemberProc], assign: Dict[str, set],
                          partitions: int) -> None:
    """Records produced to every partition reach its owner in `assign` only, each exactly once."""
    values = produce_numbered(broker.bootstrap, topic, range(partitions), 10)
    wait_consumed(ms, values, "every record consumed")
    for m in ms:
        seen = {r["p"] for r in m.recs()}
        assert seen <= set(assign[m.name]), f"{m.name} owns {assign[m.name]} but consumed {seen}"
    all_vals = [v for m in ms for v in values_of(m)]
    assert sorted(all_vals) == sorted(values), "a record was delivered more than once"


def victim_processes_and_commits(broker, admin, topic, group, victim: MemberProc, vp: int):
    """Produces 40 records to each of the topic's 2 partitions and waits until the victim (a
    member with commit_below=20) has processed its partition `vp` and committed offset 20 there.
    Returns the records' values."""
    values = produce_numbered(broker.bootstrap, topic, range(2), 40)
    victim.wait_for(lambda m: any(r["o"] == 39 for r in m.recs(vp)),
                    f"victim processed partition {vp} up to offset 39")
    victim.wait_for(lambda m: m.commits.get(vp) == 20, "victim committed offset 20")
    wait_until(lambda: committed(admin, group, topic).get(vp) == 20, 30,
               f"committed offset of partition {vp} is 20")
    assert [r["o"] for r in victim.recs(vp)] == list(range(40)), \
        f"victim read {[r['o'] for r in victim.recs(vp)]}"
    return values


def assert_survivor_resumed_at_commit(broker, topic, survivor: MemberProc, victim: MemberProc,
                                      vp: int, sp: int, values) -> None:
    """Once the survivor owns the killed victim's partition `vp`: it reads `vp` from the
    committed offset 20 on, once, and later records on both partitions; nothing is lost, and
    only the records after the last commit are delivered twice."""
    survivor.wait_for(lambda m: any(r["o"] == 39 for r in m.recs(vp)),
                      f"survivor consumed partition {vp} up to offset 39")
    offs = [r["o"] for r in survivor.recs(vp)]
    assert offs == list(range(20, 40)), (
        f"after the kill the survivor should resume partition {vp} at the committed offset 20 "
        f"and read 20..39 once; it read {offs}")
    # Nothing lost: more records on both partitions reach the survivor.
    more = produce_numbered(broker.bootstrap, topic, range(2), 10, start=40)
    wait_consumed([survivor], more, "survivor consumed records produced after the kill")
    got = set(values_of(victim)) | set(values_of(survivor))
    missing = sorted(set(values) - got)
    assert not missing, f"records lost: {missing[:10]}"
    again = sorted(set(values_of(victim)) & set(values_of(survivor)))
    assert again == sorted(f"r-{vp}-{i}" for i in range(20, 40)), \
        f"records delivered twice should be exactly those after the last commit: {again}"
    survivor_own = [r["o"] for r in survivor.recs(sp)]
    assert survivor_own == list(range(50)), f"survivor's own partition read {survivor_own}"


# ------------------------------------------------------------------------------------------------
# a. 4 partitions, 5 members: one owner per partition, one idle member shown with no assignment


def more_members_than_partitions(broker, members, topic, group, **kw):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    ms = [members.spawn(f"a{i}", broker.bootstrap, group, topic, **FAST, **kw) for i in range(5)]
    assign = wait_stable(admin, group, topic, ms, 4)
    idle = assert_one_idle_member(assign)

    idle_member = next(m for m in ms if m.name == idle)
    d = describe_group(admin, group)
    described = {m.member_id: m for m in d.members}
    assert idle_member.member_id in described, (idle_member.member_id, list(described))
    dm = described[idle_member.member_id]
    parts = dm.assignment.topic_partitions if dm.assignment else []
    assert list(parts) == [], f"DescribeGroups shows the idle member with {parts}"

    # Records go to the partition's owner only; the idle member gets none.
    assert_owners_consume(broker, topic, ms, assign, 4)
    return assign


# ------------------------------------------------------------------------------------------------
# b. two groups on one topic: each gets every record; one member per record within a group


def broadcast_two_groups(broker, members, topic, **kw):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 3)
    groups = [unique_name("g1"), unique_name("g2")]
    per_group = {}
    for g in groups:
        per_group[g] = [members.spawn(f"{g[:2]}-{i}", broker.bootstrap, g, topic, **FAST, **kw)
                        for i in range(2)]
    for g in groups:
        wait_stable(admin, g, topic, per_group[g], 3)
    values = produce_numbered(broker.bootstrap, topic, range(3), 20)
    for g in groups:
        ms = per_group[g]
        wait_consumed(ms, values, f"group {g} consumed every record")
        assert_no_duplicates(ms, f"group {g}")
        assert sorted({v for m in ms for v in values_of(m)}) == sorted(values)
        assert all(values_of(m) for m in ms), f"group {g}: a member consumed nothing"


# ------------------------------------------------------------------------------------------------
# c. commit after processing; a member is SIGKILLed; the other resumes at the committed offset


def kill_then_resume_at_commit(broker, members, topic, group, **kw):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 2)
    survivor = members.spawn("survivor", broker.bootstrap, group, topic, commit_below=-1,
                             **FAST, **kw)
    victim = members.spawn("victim", broker.bootstrap, group, topic, commit_below=20, **FAST,
                           **kw)
    assign = wait_stable(admin, group, topic, [survivor, victim], 2)
    (vp,) = assign["victim"]
    (sp,) = assign["survivor"]
    values = victim_processes_and_commits(broker, admin, topic, group, victim, vp)

    t_kill = time.time()
    victim.kill()
    survivor.wait_for(lambda m: m.owned_now() == {0, 1},
                      "survivor took over the victim's partition")
    assert_survivor_resumed_at_commit(broker, topic, survivor, victim, vp, sp, values)
    return t_kill


# ------------------------------------------------------------------------------------------------
# e. a third member joins a group of two


def third_member_joins(broker, members, topic, group, assignor, **kw):
    admin = admin_client(broker.bootstrap)
    partitions = 6
    create_topic(admin, topic, partitions)
    a = members.spawn("A", broker.bootstrap, group, topic, assignor=assignor, commit_below=-1,
                      **FAST, **kw)
    b = members.spawn("B", broker.bootstrap, group, topic, assignor=assignor, commit_below=-1,
                      **FAST, **kw)
    before = wait_stable(admin, group, topic, [a, b], partitions)
    assert sorted(len(p) for p in before.values()) == [3, 3], before

    loop = LoopProducer(broker.bootstrap, topic, partitions, interval=0.005).start()
    try:
        for m in (a, b):
            m.wait_for(lambda m: len({r["p"] for r in m.recs()}) == 3,
                       "consumed from each of its partitions")
        t_join = time.time()
        c = members.spawn("C", broker.bootstrap, group, topic, assignor=assignor,
                          commit_below=-1, **FAST, **kw)
        after = wait_stable(admin, group, topic, [a, b, c], partitions)
        assert sorted(len(p) for p in after.values()) == [2, 2, 2], after
        c.wait_for(lambda m: len({r["p"] for r in m.recs()}) == 2,
                   "new member consumes from both its partitions")
        t_c = min(e["t"] for e in c.events_of("assign") if e["parts"])
        # A little more traffic after the rebalance, on every partition.
        n = loop.sent
        wait_until(lambda: loop.sent >= n + 200, 30, "loop producer progress")
    finally:
        loop.stop()
    expected = [f"loop-{i % partitions}-{i}" for i in range(loop.sent)]
    wait_consumed([a, b, c], expected, "every produced record consumed by the group")

    if assignor == "cooperative-sticky":
        staying = {p for name in ("A", "B") for p in before[name] & after[name]}
        assert len(staying) == 4, (f"cooperative-sticky should keep 2 partitions with each old "
                                   f"owner: before {before}, after {after}")
        for m in (a, b):
            revoked = set()
            for e in m.events_of("revoke") + m.events_of("lost"):
                if e["t"] >= t_join:
                    revoked |= set(e["parts"])
            assert not (revoked & staying), (
                f"{m.name} had staying partitions {sorted(revoked & staying)} revoked "
                f"(staying {sorted(staying)}): {m.describe()}")
        # The staying partitions kept being consumed while the group rebalanced: between the
        # new member's start and its first assignment each one delivered records.
        for m in (a, b):
            name = m.name
            for p in before[name] & after[name]:
                during = [r for r in m.recs(p) if t_join < r["t"] < t_c]
                assert during, (f"{name} consumed nothing from staying partition {p} during the "
                                f"rebalance ({t_c - t_join:.2f}s window)")
    return before, after


# ------------------------------------------------------------------------------------------------
# f. a static member restarts within session.timeout.ms: no rebalance, same partitions


def static_member_restart(broker, members, topic, group, session_timeout_ms=8000, **kw):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    opts = dict(session_timeout_ms=session_timeout_ms, heartbeat_ms=300, **kw)
    # "B" joins first so that it leads; the member that restarts is a follower.
    b = members.spawn("B", broker.bootstrap, group, topic, instance_id="inst-b", **opts)
    b.wait_for(lambda m: len(m.owned_now()) == 4, "first member owns everything")
    a = members.spawn("A", broker.bootstrap, group, topic, instance_id="inst-a", **opts)
    before = wait_stable(admin, group, topic, [a, b], 4)
    values = produce_numbered(broker.bootstrap, topic, range(4), 5)
    wait_consumed([a, b], values, "records consumed before the restart")
    gens_before = completed_generations(broker, group)
    gen_a = a.generation
    b_events_before = len(b.events_of("assign")) + len(b.events_of("revoke"))
    log_before = len(group_log_lines(broker, group))

    t_kill = time.time()
    a.kill()
    a2 = members.spawn("A2", broker.bootstrap, group, topic, instance_id="inst-a", **opts)
    a2.wait_for(lambda m: m.owned_now() == before["A"], f"restarted member gets {before['A']}")
    more = produce_numbered(broker.bootstrap, topic, range(4), 5, start=5)
    wait_consumed([a2, b], more, "records consumed after the restart")
    assert {r["p"] for r in a2.recs()} <= before["A"]

    # Nothing happens for longer than the session timeout: no rebalance, B is never disturbed.
    quiet_until = t_kill + session_timeout_ms / 1000 + 3
    while time.time() < quiet_until:
        new_lines = group_log_lines(broker, group)[log_before:]
        started = [line for line in new_lines if "rebalance started" in line]
        assert not started, ("a static member restarting within session.timeout.ms triggered a "
                             "rebalance:\n" + "\n".join(new_lines))
        assert len(b.events_of("assign")) + len(b.events_of("revoke")) == b_events_before, \
            f"the other member saw a rebalance: {b.describe()}"
        time.sleep(0.2)
    after = wait_stable(admin, group, topic, [a2, b], 4)
    assert after["A2"] == before["A"] and after["B"] == before["B"], (before, after)
    assert completed_generations(broker, group) == gens_before, \
        f"generations completed before {gens_before}, now {completed_generations(broker, group)}"
    if gen_a is not None:  # clients that report their generation (Java, kafka-python)
        a2.wait_for(lambda m: m.generation is not None, "restarted member reports a generation")
        assert a2.generation == gen_a, f"generation was {gen_a}, after restart {a2.generation}"
    lines = group_log_lines(broker, group)[log_before:]
    assert any("static member rejoined" in line for line in lines), "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# i. committed offsets survive a broker restart; consumers resume from them


def offsets_survive_restart(broker, members, topic, kill=False, **kw):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 3)
    produce_numbered(broker.bootstrap, topic, range(3), 10)
    g_all, g_half = unique_name("gall"), unique_name("ghalf")
    m1 = members.spawn("all", broker.bootstrap, g_all, topic, commit_below=-1, **FAST, **kw)
    m2 = members.spawn("half", broker.bootstrap, g_half, topic, commit_below=5, **FAST, **kw)
    m1.wait_for(lambda m: m.commits == {0: 10, 1: 10, 2: 10}, "committed 10 on every partition")
    m2.wait_for(lambda m: len(m.recs()) == 30 and m.commits == {0: 5, 1: 5, 2: 5},
                "read everything and committed 5 on every partition")
    m1.close()
    m2.close()
    want = {g_all: {0: 10, 1: 10, 2: 10}, g_half: {0: 5, 1: 5, 2: 5}}
    for g, offs in want.items():
        assert committed(admin, g, topic) == offs

    broker.restart(kill=kill)
    admin = admin_client(broker.bootstrap)
    for g, offs in want.items():
        wait_until(lambda: committed(admin, g, topic) == offs, GROUP_DEADLINE,
                   f"committed offsets of {g} back after the restart ({offs})")
    produce_numbered(broker.bootstrap, topic, range(3), 5, start=10)
    n1 = members.spawn("all-2", broker.bootstrap, g_all, topic, **FAST, **kw)
    n2 = members.spawn("half-2", broker.bootstrap, g_half, topic, **FAST, **kw)
    n1.wait_for(lambda m: len(m.recs()) >= 15, "15 new records")
    n2.wait_for(lambda m: len(m.recs()) >= 30, "30 records from offset 5")
    for m, start in ((n1, 10), (n2, 5)):
        for p in range(3):
            offs = [r["o"] for r in m.recs(p)]
            assert offs == list(range(start, 15)), (
                f"{m.name}: partition {p} should resume at committed offset {start}: read {offs}")
