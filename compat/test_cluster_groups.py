"""Consumer groups across a cluster: the broker that coordinates a group is killed with SIGKILL
five times in a row (each time the one coordinating it then) and restarted, under load.

What must hold, with librdkafka and the Java client, classic (eager and cooperative) and KIP-848
groups: every record is processed, and exactly once (no partition ever changes owner, so no
member has a reason to read anything twice); no member is told of a rebalance (no assign, revoke
or lost after the group settled); committed offsets never go backwards; and each failover, from
the kill to every member committing again, takes seconds. (While the group first forms, an
eager rebalance may hand a record out twice; that is allowed, before it settles only.) The times are printed; the failover
benchmark (bench/failover.py) measures their distribution.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from group_util import (FailoverGroup, LoopProducer, Members, all_committing_after,
                        coordinator_of, settled_on)
from partita_compat import unique_name, wait_until
from test_java import compiled_java  # noqa: F401 - fixture: fetches jars, compiles java/*.java

# Three brokers, six members settling, five kills and restarts, the final checks.
pytestmark = pytest.mark.timeout(420)

PARTITIONS = 12
MEMBERS = 6
KILLS = 5

VARIANTS = {
    "confluent-eager": ("confluent", {"assignor": "range"}),
    "confluent-cooperative": ("confluent", {"assignor": "cooperative-sticky"}),
    "confluent-kip848": ("confluent", {"conf": {"group.protocol": "consumer"}}),
    "java-eager": ("java", {"assignor": "range"}),
    "java-kip848": ("java", {"conf": {"group.protocol": "consumer"}}),
}


class CommitWatcher:
    """Reads the group's committed offsets every 200 ms and remembers any that went backwards.
    Through kafka-python: librdkafka's admin client crashes the process when an OffsetFetch
    it sent is answered NOT_COORDINATOR, as any broker answers while a coordinator moves."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.highest: dict = {}
        self.backwards: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> dict:
        from kafka import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        try:
            offsets = admin.list_group_offsets(self.group)[self.group]
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == self.topic and meta.offset >= 0}

    def _run(self):
        while not self._stop.wait(0.2):
            try:
                now = self.read()
            except Exception:  # noqa: BLE001 - the coordinator may be moving
                continue
            for p, offset in now.items():
                if offset < self.highest.get(p, -1):
                    self.backwards.append((p, self.highest[p], offset))
                self.highest[p] = max(offset, self.highest.get(p, -1))

    def start(self) -> "CommitWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# Known failing, under work (issue 14): after a failover, a Java KIP-848 member was seen (in CI)
# to stop fetching one of its partitions (its member epoch moved; the partition never resumed).
JAVA_KIP848_STALLS = pytest.mark.xfail(
    reason="a Java KIP-848 member may stop fetching a partition after a coordinator failover",
    strict=False)


@pytest.mark.parametrize("variant", [
    pytest.param(v, marks=JAVA_KIP848_STALLS) if v == "java-kip848" else v for v in VARIANTS])
def test_a_group_survives_its_coordinator_killed_five_times(cluster, tmp_path, request,
                                                            variant):
    client, options = VARIANTS[variant]
    java_build = request.getfixturevalue("compiled_java") if client == "java" else None
    members = Members(tmp_path, client, java_build)
    try:
        # Java members commit each record synchronously, one JVM each on two cores: fed at a
        # quarter of the rate, so that the backlog they build while the group first settles
        # (a minute for Java's KIP-848 members) is worked off within the test's time.
        interval = 0.02 if client == "java" else 0.005
        run = FailoverGroup(cluster, members, PARTITIONS, MEMBERS, options, interval=interval)
        producer, group_members = run.producer, run.members
        topic, group, settled_at = run.topic, run.group, run.settled_at
        print(f"{variant}: settled {run.settle_seconds:.1f} s after the members started",
              flush=True)
        watcher = CommitWatcher(run.bootstrap, group, topic).start()
        failovers, moves_back = [], []
        for _ in range(KILLS):
            victim, failover, move_back = run.kill_coordinator()
            failovers.append(failover)
            moves_back.append(move_back)
            print(f"killed coordinator {victim}: every member committing again after "
                  f"{failover:.2f} s", flush=True)
        producer.stop()
        watcher.stop()

        total = producer.sent

        def unprocessed() -> list:
            values = {r["v"] for m in group_members for r in m.recs()}
            return [f"loop-{i % PARTITIONS}-{i}" for i in range(total)
                    if f"loop-{i % PARTITIONS}-{i}" not in values]
        # By value, not by count: records read twice while the group formed must not make
        # up for one not read yet.
        # Members that commit each record synchronously may still have a backlog (Java members
        # on two cores, behind a slow first settling); what must not happen is a stop: fail
        # only once nothing more was processed for a minute.
        left, last_progress = unprocessed(), time.monotonic()
        while left:
            assert time.monotonic() - last_progress < 60, (
                f"processing stopped with {len(left)} of {total} records never processed "
                f"(first {left[:5]}); owners "
                f"{[(m.name, sorted(m.owned_now())) for m in group_members]}")
            time.sleep(0.2)
            now = unprocessed()
            if len(now) < len(left):
                last_progress = time.monotonic()
            left = now

        def processed() -> dict:
            seen: dict = {}
            for m in group_members:
                for r in m.recs():
                    seen.setdefault((r["p"], r["o"]), []).append((r["t"], m.name))
            return seen

        def all_committed():
            ends = {}
            for p, o in processed():
                ends[p] = max(ends.get(p, 0), o + 1)
            return ends if watcher.read() == ends else None
        ends = wait_until(all_committed, timeout=60, msg="every processed record committed")
        seen = processed()
        # While the group first formed, a record could be read again after a rebalance; from
        # then on no partition changes owner, so none may be.
        twice = {k: v for k, v in seen.items() if len(v) > 1 and min(v)[0] > settled_at}
        assert not twice, f"processed more than once: {list(twice.items())[:5]}"
        gaps = [(p, o) for p, end in ends.items() for o in range(end) if (p, o) not in seen]
        assert not gaps, f"offsets skipped: {gaps[:5]}"
        for m in group_members:
            moved = [e for kind in ("assign", "revoke", "lost") for e in m.events_of(kind)
                     if e["t"] > settled_at]
            assert not moved, f"{m.name} saw a rebalance after a failover: {moved}"
        assert not watcher.backwards, f"committed offsets went backwards: {watcher.backwards}"
        print(f"\n{variant}: failover after SIGKILL of the coordinator (s): "
              f"{[round(x, 2) for x in failovers]}, median {statistics.median(failovers):.2f}; "
              f"after its restart: {[round(x, 2) for x in moves_back]}")
    finally:
        members.kill_all()
        for m in members.all:  # for a failure's post-mortem
            (tmp_path / f"events-{m.name}.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in list(m.events)))


def log_time(line: str) -> float:
    """The time of a broker log line (its RFC 3339 timestamp), in seconds since the epoch."""
    import datetime as dt
    stamp = ANSI.sub("", line).split()[0]
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_a_coordinator_cut_off_stops_before_another_takes_its_groups(cluster, tmp_path):
    """The coordinator of a group loses its network link (to PostgreSQL and everyone): it stops
    serving when its session lapses by its own clock, before PostgreSQL's clock lets another
    broker take its groups; the group carries on with the new coordinator, with no rebalance
    and its offsets."""
    from cluster_engines import Netns
    netns = Netns().create()
    members = Members(tmp_path, "confluent")
    try:
        brokers = [cluster.start_broker(n) for n in (1, 2)]
        isolated = cluster.start_broker(3, netns=netns)
        outside = ",".join(b.bootstrap for b in brokers)
        group = next(g for g in (unique_name("cut") for _ in range(400))
                     if coordinator_of(outside, g) == 3)
        topic = unique_name("cutoff")
        admin = AdminClient({"bootstrap.servers": outside})
        for f in admin.create_topics([NewTopic(topic, num_partitions=6,
                                               replication_factor=1)]).values():
            f.result(30)
        producer = LoopProducer(outside, topic, 6, interval=0.01).start()
        group_members = [members.spawn(f"m{i}", cluster.bootstrap(), group, topic,
                                       commit_below=-1, assignor="range") for i in range(3)]
        wait_until(lambda: settled_on(group_members, 6), timeout=120,
                   msg="3 members sharing 6 partitions")
        settled_at = time.time()
        cut_at = time.time()
        netns.cut()
        moved_after = all_committing_after(group_members, cut_at)
        # Records in flight to the cut-off broker time out: that is the network's doing.
        producer.stop(check=False)
        assert coordinator_of(outside, group) in (1, 2)
        for m in group_members:
            moved = [e for kind in ("assign", "revoke", "lost") for e in m.events_of(kind)
                     if e["t"] > settled_at]
            assert not moved, f"{m.name} saw a rebalance after the cut: {moved}"
        stopped = [log_time(line) for line in isolated.log_text().splitlines()
                   if "stopped serving its partitions" in line]
        assert stopped, "the cut-off broker never said it stopped serving"
        taken = [log_time(line) for b in brokers for line in b.log_text().splitlines()
                 if "coordinating this shard's groups" in line and log_time(line) > cut_at]
        assert taken, "no other broker took the shards over"
        assert stopped[0] < min(taken), (
            f"the cut-off broker stopped serving at {stopped[0]:.3f}, after another broker "
            f"took one of its shards at {min(taken):.3f}")
        print(f"\ncut-off coordinator: stopped {stopped[0] - cut_at:.2f} s after the cut, "
              f"its shards taken {min(taken) - cut_at:.2f} s after; every member committing "
              f"again {moved_after:.2f} s after")
    finally:
        members.kill_all()
        netns.remove()


def test_operators_see_one_cluster_through_any_broker(cluster):
    """`partita groups list/describe/reset-offsets` through any broker see and change every
    group of the cluster, whichever broker coordinates it."""
    import subprocess

    from confluent_kafka import Consumer, TopicPartition

    from confluent_util import produce
    from partita_compat import broker_binary

    brokers = [cluster.start_broker(n) for n in (1, 2, 3)]
    topic = unique_name("ops")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    for f in admin.create_topics([NewTopic(topic, num_partitions=3,
                                           replication_factor=1)]).values():
        f.result(30)
    produce(cluster.bootstrap(), topic,
            [{"value": f"v{i}".encode(), "partition": i % 3} for i in range(30)])
    # One group coordinated by each broker.
    groups: dict = {}
    for name in (unique_name("ops-g") for _ in range(400)):
        groups.setdefault(coordinator_of(cluster.bootstrap(), name), name)
        if len(groups) == 3:
            break
    assert sorted(groups) == [1, 2, 3], groups
    for group in groups.values():
        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                      "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(topic, p, 7) for p in range(3)], asynchronous=False)
        c.close()

    def cli(broker, *args):
        proc = subprocess.run([str(broker_binary()), "groups", *args, "--bootstrap-server",
                               broker.bootstrap, "--output", "json"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"partita groups {args} via {broker.bootstrap}:\n" \
                                     f"{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)

    for broker in brokers:
        listed = {g["group"] for g in cli(broker, "list")}
        assert set(groups.values()) <= listed, (broker.bootstrap, listed)
        for coordinator, group in groups.items():
            described = cli(broker, "describe", "--group", group)
            offsets = {r["partition"]: r["current_offset"] for r in described["rows"]}
            assert offsets == {0: 7, 1: 7, 2: 7}, (broker.bootstrap, coordinator, described)
    # Reset through a broker that does not coordinate the group.
    group = groups[1]
    cli(brokers[2], "reset-offsets", "--group", group, "--topic", topic, "--to-earliest",
        "--execute")
    described = cli(brokers[1], "describe", "--group", group)
    assert {r["partition"]: r["current_offset"] for r in described["rows"]} == \
        {0: 0, 1: 0, 2: 0}, described
