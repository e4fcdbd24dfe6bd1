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

from group_util import LoopProducer, Members
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


def coordinator_of(bootstrap: str, group: str) -> int:
    """The group's coordinator, by FindCoordinator (kafka-python's own lookup)."""
    from kafka import KafkaAdminClient

    def ask():
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            return admin._manager.run(admin._find_coordinator_id, group)
        finally:
            admin.close()
    return wait_until(ask, timeout=60, msg=f"the coordinator of {group}", interval=0.2)


def all_committing_after(members: list, since: float) -> float:
    """Waits until every member committed successfully after `since`; the time the last one
    first did, in seconds after `since`."""
    def firsts():
        out = []
        for m in members:
            times = [e["t"] for e in m.events_of("commit") if e["t"] > since]
            if not times:
                return None
            out.append(min(times))
        return out
    got = wait_until(firsts, timeout=90, msg="every member committing again",
                     interval=0.05)
    return max(got) - since


def settled_on(members: list, partitions: int) -> bool:
    """Every partition owned by one member, and each member owning its share."""
    owners = [p for m in members for p in m.owned_now()]
    share = partitions // len(members)
    return (sorted(owners) == list(range(partitions))
            and all(len(m.owned_now()) == share for m in members))


def settled(members: list) -> bool:
    return settled_on(members, PARTITIONS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_group_survives_its_coordinator_killed_five_times(cluster, tmp_path, request,
                                                            variant):
    client, options = VARIANTS[variant]
    java_build = request.getfixturevalue("compiled_java") if client == "java" else None
    brokers = {n: cluster.start_broker(n) for n in (1, 2, 3)}
    topic, group = unique_name("failover"), unique_name("g")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                           replication_factor=1)]).values():
        f.result(30)
    producer = LoopProducer(cluster.bootstrap(), topic, PARTITIONS, interval=0.005).start()
    members = Members(tmp_path, client, java_build)
    try:
        group_members = [members.spawn(f"m{i}", cluster.bootstrap(), group, topic,
                                       commit_below=-1, **options) for i in range(MEMBERS)]
        started = time.time()
        wait_until(lambda: settled(group_members), timeout=120,
                   msg=f"{MEMBERS} members sharing {PARTITIONS} partitions")
        settled_at = time.time()
        print(f"{variant}: settled {settled_at - started:.1f} s after the members started",
              flush=True)
        watcher = CommitWatcher(cluster.bootstrap(), group, topic).start()
        failovers, moves_back = [], []
        for _ in range(KILLS):
            victim = coordinator_of(cluster.bootstrap(), group)
            killed_at = time.time()
            brokers[victim].kill()
            failovers.append(all_committing_after(group_members, killed_at))
            print(f"killed coordinator {victim}: every member committing again after "
                  f"{failovers[-1]:.2f} s", flush=True)
            restarted_at = time.time()
            brokers[victim].start()
            # The restarted broker takes its share of partitions back, maybe this group's
            # coordinator too: a planned move, which must not disturb the group either.
            moves_back.append(all_committing_after(group_members, restarted_at))
        producer.stop()
        watcher.stop()

        total = producer.sent
        wait_until(lambda: sum(len(m.recs()) for m in group_members) >= total, timeout=120,
                   msg=f"all {total} records processed")

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
        values = {r["v"] for m in group_members for r in m.recs()}
        missing = [f"loop-{i % PARTITIONS}-{i}" for i in range(total)
                   if f"loop-{i % PARTITIONS}-{i}" not in values]
        assert not missing, f"{len(missing)} produced records never processed: {missing[:5]}"
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
