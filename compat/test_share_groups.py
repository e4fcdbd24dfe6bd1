"""Share groups (KIP-932, queues for Kafka) with confluent-kafka 2.16's ShareConsumer
(librdkafka 2.16), against a broker each test starts (issue 8, item 4).

Members that must be killable run in child processes (compat/share_member.py, implicit
acknowledgement: a poll's records are accepted by the next poll or by close). Tests that steer
acknowledgements one record at a time (explicit mode, ACCEPT/RELEASE/REJECT) drive a ShareConsumer
in the test process.

Every share group here gets `share.auto.offset.reset=earliest` through IncrementalAlterConfigs on
its GROUP resource before its first member joins (except the test of the default, latest), so
records produced before the members joined are delivered.

"Never comes back" and "processed exactly once" are checked with a sentinel instead of a sleep:
after the work is done, a new record is produced and the test waits until a member receives it.
A share-partition hands out available records in offset order, so anything still available
below the sentinel would be delivered no later than the sentinel.
"""

from __future__ import annotations

import collections
import time

import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer

from confluent_util import admin_client, create_topic, produce
from group_util import GROUP_DEADLINE
from partita_compat import unique_name, wait_until
from share_util import (ShareMembers, group_config, list_groups_v5, set_share_offset_reset,
                        share_group_describe, share_members)

LOCK_MS = 3000  # group.share.record.lock.duration.ms for the lock-expiry tests


@pytest.fixture
def members(tmp_path, extra_logs):
    ms = ShareMembers(tmp_path)
    extra_logs.append(("share members", ms.describe))
    yield ms
    ms.kill_all()


def share_group(admin, bootstrap: str, partitions: int = 1, earliest: bool = True):
    topic, group = unique_name("t"), unique_name("sg")
    create_topic(admin, topic, partitions)
    if earliest:
        set_share_offset_reset(admin, group, "earliest")
    return topic, group


def wait_members(bootstrap: str, group: str, n: int, timeout: float = GROUP_DEADLINE):
    """Waits until ShareGroupDescribe lists exactly n members, each with an assignment."""
    last = {}

    def cond():
        ms = share_members(bootstrap, group)
        last["m"] = ms
        return len(ms) == n and all(m["assignment"] for m in ms) and ms

    try:
        return wait_until(cond, timeout, f"share group {group} with {n} assigned members")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast ShareGroupDescribe members: {last.get('m')}") from None


def loop_until(step, timeout: float, msg: str):
    """Calls `step` (which polls a consumer) until it returns a truthy value; unlike wait_until,
    an exception in `step` fails the test at once."""
    deadline = time.monotonic() + timeout
    while True:
        v = step()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {msg}")


def deliveries(ms) -> dict:
    """(partition, offset) -> [(member name, delivery count, time)] over the members `ms`."""
    out = collections.defaultdict(list)
    for m in ms:
        for r in m.recs():
            out[(r["p"], r["o"])].append((m.name, r["dc"], r["t"]))
    return out


def produce_values(bootstrap: str, topic: str, values, partitions: int = 1):
    reports = produce(bootstrap, topic, [{"value": v.encode(), "partition": i % partitions}
                                         for i, v in enumerate(values)])
    assert all(r.err is None for r in reports), [r.err for r in reports if r.err]
    return {(r.partition, r.offset) for r in reports}


def check_no_errors(ms):
    errs = {m.name: m.errors() for m in ms if m.errors()}
    assert not errs, f"client errors: {errs}"


def sentinel_check(bootstrap, topic, group, members, name, partitions=1):
    """Produces one sentinel per partition and starts a fresh member; returns what it received
    besides the sentinels (so: whatever was still available below them). Every other member of
    the group must have been closed (or still hold all it acquired), or it may take the
    sentinel."""
    sentinels = produce_values(bootstrap, topic, [f"sentinel-{p}" for p in range(partitions)],
                               partitions)
    fresh = members.spawn(name, bootstrap, group, topic)
    fresh.wait_for(lambda m: sentinels <= {(r["p"], r["o"]) for r in m.recs()},
                   "receives the sentinel record(s)")
    return [r for r in fresh.recs() if (r["p"], r["o"]) not in sentinels]


def run_work_queue(start_broker, members, partitions: int, n_members: int, n_records: int,
                   delay_ms: float = 10, max_poll_records=5):
    b = start_broker()
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap, partitions)
    ms = [members.spawn(f"m{i}", b.bootstrap, group, topic, delay_ms=delay_ms,
                        max_poll_records=max_poll_records)
          for i in range(n_members)]
    described = wait_members(b.bootstrap, group, n_members)
    # Every member of a share group is assigned every partition of the topic.
    for m in described:
        parts = {p for a in m["assignment"] if a["topic"] == topic for p in a["partitions"]}
        assert parts == set(range(partitions)), f"member {m['member_id']} assigned {parts}"
    produced = produce_values(b.bootstrap, topic, [f"r{i}" for i in range(n_records)],
                              partitions)

    def all_seen():
        return produced <= set(deliveries(ms))

    wait_until(all_seen, GROUP_DEADLINE, f"all {n_records} records delivered to the members")
    for m in ms:
        assert m.close() == 0, m.describe()
    check_no_errors(ms)
    per_member = {m.name: len(m.recs()) for m in ms}
    assert all(per_member.values()), f"a member got no work: records per member {per_member}"
    d = deliveries(ms)
    assert set(d) == produced, f"unexpected records: {sorted(set(d) - produced)[:10]}"
    dups = {k: v for k, v in d.items() if len(v) != 1}
    assert not dups, f"{len(dups)} records processed more than once, e.g. {list(dups.items())[:5]}"
    assert all(v[0][1] == 1 for v in d.values()), "a record had delivery count != 1"
    # Every record was accepted: a new member gets the sentinels and nothing older.
    leftover = sentinel_check(b.bootstrap, topic, group, members, "fresh", partitions)
    assert not leftover, f"records delivered again after all were accepted: {leftover[:10]}"
    return per_member


@pytest.mark.timeout(120)
def test_one_partition_three_consumers_share_the_work_exactly_once(start_broker, members):
    per_member = run_work_queue(start_broker, members, partitions=1, n_members=3, n_records=300)
    print("records per member:", per_member)


@pytest.mark.timeout(120)
def test_four_partitions_five_consumers_all_get_work(start_broker, members):
    per_member = run_work_queue(start_broker, members, partitions=4, n_members=5, n_records=400)
    print("records per member:", per_member)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("partitions,n_members,n_records",
                         [(1, 3, 600), (4, 5, 1000), (2, 8, 800)])
def test_a_burst_is_spread_evenly_over_busy_members(start_broker, members, partitions,
                                                     n_members, n_records):
    """Members at the client's default batch size, 5 ms of work per record, a burst produced
    once all have joined: each gets between 0.75 and 1.25 times its even part (one member
    taking the whole burst while the others wait is what this rules out)."""
    per_member = run_work_queue(start_broker, members, partitions, n_members, n_records,
                                delay_ms=5, max_poll_records=None)
    print("records per member:", per_member)
    even = n_records / n_members
    assert all(0.75 * even <= n <= 1.25 * even for n in per_member.values()), (
        f"records per member {per_member}, even part {even:.0f}")


@pytest.mark.timeout(180)
def test_a_slow_member_gets_less_than_a_fast_one(start_broker, members):
    """Two members at the default batch size, one taking 20 ms a record and one 2 ms, a
    burst of 1,000 records in 10 bursts: the fast one processes more, and nothing twice."""
    b = start_broker()
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap, 1)
    slow = members.spawn("slow", b.bootstrap, group, topic, delay_ms=20)
    fast = members.spawn("fast", b.bootstrap, group, topic, delay_ms=2)
    wait_members(b.bootstrap, group, 2)
    produced = set()
    for burst in range(10):
        produced |= produce_values(b.bootstrap, topic,
                                   [f"r{burst}-{i}" for i in range(100)])
    wait_until(lambda: produced <= set(deliveries([slow, fast])), GROUP_DEADLINE,
               "all 1,000 records delivered")
    for m in (slow, fast):
        assert m.close() == 0, m.describe()
    check_no_errors([slow, fast])
    d = deliveries([slow, fast])
    assert not {k: v for k, v in d.items() if len(v) != 1}, "a record processed twice"
    got = {m.name: len(m.recs()) for m in (slow, fast)}
    print("records per member:", got)
    assert got["fast"] > 2 * got["slow"], got


@pytest.mark.timeout(90)
def test_explicit_release_reject_and_delivery_limit(start_broker):
    limit = 3
    b = start_broker({"group.share.delivery.count.limit": limit})
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap)
    produce_values(b.bootstrap, topic, [f"k{i}" for i in range(10)])
    RELEASE_ONCE, REJECT, RELEASE_ALWAYS = 2, 4, 6

    c = ShareConsumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                       "share.acknowledgement.mode": "explicit", "max.poll.records": 5,
                       "socket.timeout.ms": 20000})
    seen = collections.defaultdict(list)  # value -> delivery counts, in order
    accepted, errors = set(), []
    try:
        c.subscribe([topic])

        def pump(until, what):
            def step():
                msgs = c.poll(0.5)
                for m in msgs:
                    if m.error():
                        errors.append(str(m.error()))
                        continue
                    v, dc = m.value().decode(), m.delivery_count()
                    seen[v].append(dc)
                    if m.offset() == REJECT:
                        act = AcknowledgeType.REJECT
                    elif m.offset() == RELEASE_ALWAYS or (m.offset() == RELEASE_ONCE and dc == 1):
                        act = AcknowledgeType.RELEASE
                    else:
                        act = AcknowledgeType.ACCEPT
                    c.acknowledge(m, act)
                    if act == AcknowledgeType.ACCEPT:
                        accepted.add(v)
                if msgs:
                    res = c.commit_sync(30)
                    bad = {str(tp): e for tp, e in res.items() if e is not None}
                    assert not bad, f"acknowledgement commit failed: {bad}"
                return until()
            loop_until(step, GROUP_DEADLINE, what)

        normal = {f"k{i}" for i in range(10)} - {"k4", "k6"}
        pump(lambda: normal <= accepted and len(seen["k6"]) >= limit,
             f"every record accepted and k6 delivered {limit} times; seen {dict(seen)}")
        for s in ("s1", "s2"):  # two sentinels: two more fetches after the last release
            produce_values(b.bootstrap, topic, [s])
            pump(lambda: s in accepted, f"sentinel {s} received; seen {dict(seen)}")
    finally:
        c.close()
    print("deliveries:", dict(seen))
    assert not errors, errors
    assert seen["k2"] == [1, 2], f"released record: delivery counts {seen['k2']}, want [1, 2]"
    assert seen["k4"] == [1], f"rejected record came back: delivery counts {seen['k4']}"
    assert seen["k6"] == list(range(1, limit + 1)), \
        f"record released every time: delivery counts {seen['k6']}, want 1..{limit} then archived"
    for v in normal - {"k2"}:
        assert seen[v] == [1], f"{v}: delivery counts {seen[v]}"


@pytest.mark.timeout(120)
def test_killed_consumer_records_go_to_the_others(start_broker, members):
    b = start_broker({"group.share.record.lock.duration.ms": LOCK_MS})
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap)
    hog = members.spawn("hog", b.bootstrap, group, topic, max_poll_records=20, hold_after=1)
    wait_members(b.bootstrap, group, 1)
    produced = produce_values(b.bootstrap, topic, [f"r{i}" for i in range(100)])
    hog.wait_for(lambda m: m.events_of("held"), "acquires records and holds them")
    held = {(r["p"], r["o"]) for r in hog.recs()}
    hog.kill()
    t_kill = time.time()
    others = [members.spawn(f"m{i}", b.bootstrap, group, topic, delay_ms=5, max_poll_records=5)
              for i in range(2)]
    wait_until(lambda: produced <= set(deliveries(others)), GROUP_DEADLINE,
               "every record delivered to the surviving members")
    d = deliveries(others)
    for m in others:
        assert m.close() == 0, m.describe()
    check_no_errors(others)
    assert held and held <= set(d), f"held records not redelivered: {sorted(held - set(d))}"
    redelivery = {k: d[k][0] for k in held}
    assert all(dc >= 2 for _, dc, _ in redelivery.values()), \
        f"held records came back without a higher delivery count: {redelivery}"
    lag = max(t for _, _, t in redelivery.values()) - t_kill
    print(f"hog held {len(held)} records; all redelivered {lag:.2f}s after the kill "
          f"(lock {LOCK_MS} ms)")
    dups = {k: v for k, v in d.items() if len(v) != 1}
    assert not dups, f"records processed twice by the survivors: {list(dups.items())[:5]}"


@pytest.mark.timeout(120)
def test_lock_expires_for_a_live_consumer_that_stopped_polling(start_broker, members):
    b = start_broker({"group.share.record.lock.duration.ms": LOCK_MS})
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap)
    hog = members.spawn("hog", b.bootstrap, group, topic, max_poll_records=20, hold_after=1)
    wait_members(b.bootstrap, group, 1)
    produced = produce_values(b.bootstrap, topic, [f"r{i}" for i in range(60)])
    hog.wait_for(lambda m: m.events_of("held"), "acquires records and holds them")
    held = {(r["p"], r["o"]): r["t"] for r in hog.recs()}
    other = members.spawn("other", b.bootstrap, group, topic, max_poll_records=5)
    wait_until(lambda: produced <= set(deliveries([other])), GROUP_DEADLINE,
               "every record delivered to the other member")
    d = deliveries([other])
    assert hog.alive(), hog.describe()
    waited = {k: d[k][0][2] - t for k, t in held.items()}
    assert all(d[k][0][1] >= 2 for k in held), {k: d[k] for k in held}
    # The hog is alive and its locks hold until they expire.
    assert min(waited.values()) >= LOCK_MS / 1000 - 0.5, \
        f"held records redelivered before the lock expired: seconds after acquisition {waited}"
    print(f"{len(held)} held records redelivered {min(waited.values()):.2f}-"
          f"{max(waited.values()):.2f}s after acquisition (lock {LOCK_MS} ms)")
    check_no_errors([other])


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_restart_keeps_accepted_records_accepted(start_broker, members, how):
    b = start_broker({"log.flush.interval.messages": 1})
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap)
    produced = produce_values(b.bootstrap, topic, [f"r{i}" for i in range(100)])
    ACCEPT_BELOW = 40

    c = ShareConsumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                       "share.acknowledgement.mode": "explicit", "max.poll.records": 10,
                       "socket.timeout.ms": 10000})
    accepted, held = set(), set()
    try:
        c.subscribe([topic])

        def step():
            msgs = c.poll(0.5)
            for m in msgs:
                assert m.error() is None, m.error()
                if m.offset() < ACCEPT_BELOW:
                    c.acknowledge(m, AcknowledgeType.ACCEPT)
                    accepted.add((m.partition(), m.offset()))
                else:
                    held.add((m.partition(), m.offset()))
            if accepted and msgs:
                res = c.commit_sync(30)
                bad = {str(tp): e for tp, e in res.items() if e is not None}
                assert not bad, f"acknowledgement commit failed: {bad}"
            return held
        loop_until(step, GROUP_DEADLINE, f"records below {ACCEPT_BELOW} accepted, some held")
        assert accepted == {(0, o) for o in range(ACCEPT_BELOW)}, sorted(accepted)

        b.restart(kill=(how == "kill"))
        # The old consumer stays alive (holding, never polling) across the restart.
        after = members.spawn("after", b.bootstrap, group, topic, max_poll_records=10)
        rest = produced - accepted
        after.wait_for(lambda m: rest <= {(r["p"], r["o"]) for r in m.recs()},
                       "receives every record not accepted before the restart")
        assert after.close() == 0, after.describe()
        leftover = sentinel_check(b.bootstrap, topic, group, members, "fresh")
    finally:
        try:
            c.close()
        except Exception as exc:  # noqa: BLE001 - the held records are no longer ours
            print("closing the pre-restart consumer:", exc)
    got = deliveries([after])
    again = sorted(k for k in got if k in accepted)
    assert not again, f"accepted records delivered again after the restart: {again}"
    assert not leftover, f"records still available after all were consumed: {leftover[:10]}"
    print(f"held {len(held)} acquired records across the restart; their delivery counts after: "
          f"{sorted({got[k][0][1] for k in held})}")
    check_no_errors([after])


@pytest.mark.timeout(90)
def test_list_groups_describe_and_group_config(start_broker, members):
    b = start_broker()
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap, partitions=3)
    assert group_config(admin, group).get("share.auto.offset.reset") == "earliest"
    ms = [members.spawn(f"m{i}", b.bootstrap, group, topic) for i in range(2)]
    wait_members(b.bootstrap, group, 2)

    listed = {g["group_id"]: g for g in list_groups_v5(b.bootstrap)}
    assert group in listed, listed
    assert listed[group]["type"] == "share" and listed[group]["state"] == "Stable", listed[group]
    assert group in {g["group_id"] for g in list_groups_v5(b.bootstrap, types=["share"])}
    assert group not in {g["group_id"] for g in list_groups_v5(b.bootstrap, types=["consumer"])}
    assert group not in {g["group_id"] for g in list_groups_v5(b.bootstrap, types=["classic"])}
    # confluent-kafka's list_consumer_groups() (KIP-848 types only) may leave share groups out;
    # what it shows is printed, not asserted.
    res = admin.list_consumer_groups(request_timeout=20).result()
    print("AdminClient.list_consumer_groups:",
          [(g.group_id, str(g.type), str(g.state)) for g in res.valid], res.errors)

    [d] = share_group_describe(b.bootstrap, [group])
    assert d["error_code"] == 0 and d["state"] == "Stable", d
    assert len(d["members"]) == 2, d
    for m in d["members"]:
        assert m["subscribed"] == [topic], m
        assert [(a["topic"], sorted(a["partitions"])) for a in m["assignment"]] == \
            [(topic, [0, 1, 2])], m
    [unknown] = share_group_describe(b.bootstrap, [unique_name("nope")])
    assert unknown["error_code"] != 0, unknown

    assert ms[0].close() == 0
    wait_members(b.bootstrap, group, 1)
    assert ms[1].close() == 0
    wait_until(lambda: share_group_describe(b.bootstrap, [group])[0]["state"] == "Empty",
               GROUP_DEADLINE, "share group Empty after both members left")
    assert {g["group_id"]: g["state"] for g in list_groups_v5(b.bootstrap)}.get(group) == "Empty"
    check_no_errors(ms)


@pytest.mark.timeout(90)
def test_default_offset_reset_is_latest(start_broker, members):
    b = start_broker()
    admin = admin_client(b.bootstrap)
    topic, group = share_group(admin, b.bootstrap, earliest=False)
    assert group_config(admin, group).get("share.auto.offset.reset", "latest") == "latest"
    produce_values(b.bootstrap, topic, [f"old{i}" for i in range(20)])
    m = members.spawn("m", b.bootstrap, group, topic)
    wait_members(b.bootstrap, group, 1)
    i = 0
    deadline = time.monotonic() + GROUP_DEADLINE
    while not m.recs():  # produce new records until the member starts receiving them
        assert time.monotonic() < deadline, m.describe()
        produce_values(b.bootstrap, topic, [f"new{i}"])
        i += 1
        time.sleep(0.2)
    m.wait_for(lambda m: any(r["v"] == f"new{i - 1}" for r in m.recs()), "gets the last record")
    vals = [r["v"] for r in m.recs()]
    assert not [v for v in vals if v.startswith("old")], f"latest group got old records: {vals}"
    check_no_errors([m])
