"""Helpers for the consumer-group tests (test_groups_*.py).

Every group member runs in its own process (compat/group_member.py for confluent-kafka and
kafka-python, compat/java/GroupsTest.java for the Java client) so that a test can SIGKILL it like a
crashed consumer. A member prints one JSON event per line (assign/revoke/lost/member/rec/commit/
error/closed); `MemberProc` reads them in a thread and keeps the member's view: the partitions it
owns, the records it processed, the offsets it committed.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from partita_compat import COMPAT_DIR, _die_with_parent, wait_until

# Generous deadline for anything a group must reach (stable assignment, resumed consumption, ...).
GROUP_DEADLINE = 60.0

# Consumer settings that keep rebalances quick: heartbeats every 300 ms.
FAST = dict(session_timeout_ms=6000, heartbeat_ms=300)

JAVA_DIR = COMPAT_DIR / "java"
JARS_DIR = COMPAT_DIR / "jars"


class MemberProc:
    """A group member in a child process, and what it reported so far."""

    def __init__(self, name: str, cmd: List[str], stderr_path):
        self.name = name
        self.cmd = cmd
        self.stderr_path = stderr_path
        self.lock = threading.Lock()
        self.events: List[dict] = []
        self.owned: set = set()
        self.records: List[dict] = []
        self.commits: Dict[int, int] = {}
        self.member_id: Optional[str] = None
        self.generation: Optional[int] = None
        self.started = time.time()
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, bufsize=1,
                                         preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)
                kind = ev["ev"]
                if kind == "assign":
                    self.owned |= set(ev["parts"])
                elif kind in ("revoke", "lost"):
                    self.owned -= set(ev["parts"])
                elif kind == "rec":
                    self.records.append(ev)
                elif kind == "commit":
                    self.commits[ev["p"]] = ev["o"]
                elif kind == "member":
                    self.member_id = ev["id"]
                    if ev.get("gen") is not None:
                        self.generation = ev["gen"]

    # --- views -------------------------------------------------------------------------------
    def owned_now(self) -> frozenset:
        with self.lock:
            return frozenset(self.owned)

    def events_of(self, kind: str) -> List[dict]:
        with self.lock:
            return [e for e in self.events if e["ev"] == kind]

    def recs(self, partition: Optional[int] = None) -> List[dict]:
        with self.lock:
            return [r for r in self.records if partition is None or r["p"] == partition]

    def errors(self) -> List[str]:
        return [e["msg"] for e in self.events_of("error")]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            text = open(self.stderr_path, errors="replace").read()
        except OSError:
            return ""
        return text[-chars:]

    def describe(self) -> str:
        with self.lock:
            evs = [e for e in self.events if e["ev"] != "rec"]
            n = len(self.records)
        short = [{k: v for k, v in e.items() if k != "t"} for e in evs[-30:]]
        return (f"member {self.name} (alive={self.alive()}, owned={sorted(self.owned)}, "
                f"records={n}, id={self.member_id}, gen={self.generation}) last events {short}"
                f"\n  stderr tail: {self.stderr_tail(1500)!r}")

    # --- control -----------------------------------------------------------------------------
    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def close(self, timeout: float = 30.0) -> int:
        """Close the consumer normally (LeaveGroup for a dynamic member) and wait for the exit."""
        self.send("close")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"member {self.name} did not exit within {timeout}s of close")

    def hold(self) -> None:
        """Stop calling poll (the process keeps running)."""
        self.send("hold")

    def kill(self) -> None:
        """SIGKILL: the consumer dies without LeaveGroup."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def wait_for(self, pred: Callable[["MemberProc"], object], msg: str,
                 timeout: float = GROUP_DEADLINE):
        def cond():
            if not self.alive() and not pred(self):
                raise AssertionError(f"member exited: {self.describe()}")
            return pred(self)
        try:
            return wait_until(cond, timeout, f"{self.name}: {msg}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None


# ------------------------------------------------------------------------------------------------
# Member commands


def member_args(bootstrap: str, group: str, topics, assignor=None, instance_id=None,
                session_timeout_ms=None, heartbeat_ms=None, max_poll_ms=None,
                auto_commit_ms=None, commit_below=None, conf: Optional[dict] = None) -> List[str]:
    topics = [topics] if isinstance(topics, str) else list(topics)
    args = ["--bootstrap", bootstrap, "--group", group, "--topics", ",".join(topics)]
    for flag, val in (("--assignor", assignor), ("--instance-id", instance_id),
                      ("--session-timeout-ms", session_timeout_ms),
                      ("--heartbeat-ms", heartbeat_ms), ("--max-poll-ms", max_poll_ms),
                      ("--auto-commit-ms", auto_commit_ms), ("--commit-below", commit_below)):
        if val is not None:
            args += [flag, str(val)]
    for k, v in (conf or {}).items():
        args += ["--conf", f"{k}={v}"]
    return args


def python_member_cmd(client: str, *a, **kw) -> List[str]:
    return [sys.executable, str(COMPAT_DIR / "group_member.py"), "--client", client,
            *member_args(*a, **kw)]


def java_member_cmd(build_dir, *a, **kw) -> List[str]:
    cp = ":".join([str(JARS_DIR / "*"), str(build_dir)])
    return ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp,
            "GroupsTest", "member", *member_args(*a, **kw)]


class Members:
    """Spawns members of one client kind and kills whatever is left at teardown."""

    def __init__(self, tmp_path, client: str, java_build=None):
        self.tmp_path = tmp_path
        self.client = client
        self.java_build = java_build
        self.all: List[MemberProc] = []

    def spawn(self, name: str, bootstrap: str, group: str, topics, **kw) -> MemberProc:
        if self.client == "java":
            cmd = java_member_cmd(self.java_build, bootstrap, group, topics, **kw)
        else:
            cmd = python_member_cmd(self.client, bootstrap, group, topics, **kw)
        m = MemberProc(name, cmd, self.tmp_path / f"member-{name}-{len(self.all)}.stderr")
        self.all.append(m)
        return m

    def kill_all(self) -> None:
        for m in self.all:
            try:
                m.kill()
            except Exception:  # noqa: BLE001 - teardown
                pass

    def describe(self) -> str:
        return "\n".join(m.describe() for m in self.all)


def members_fixture(client: str, java: bool = False):
    @pytest.fixture
    def members(tmp_path, request):
        build = request.getfixturevalue("compiled_java") if java else None
        ms = Members(tmp_path, client, build)
        yield ms
        ms.kill_all()
    return members


# ------------------------------------------------------------------------------------------------
# Admin views (confluent-kafka AdminClient)


def describe_group(admin, group: str):
    fs = admin.describe_consumer_groups([group], request_timeout=20)
    return fs[group].result(timeout=30)


def group_assignment(admin, group: str, topic: str) -> Optional[Dict[str, frozenset]]:
    """member id -> partitions of `topic` per DescribeGroups, or None unless the group is Stable."""
    from confluent_kafka import ConsumerGroupState
    d = describe_group(admin, group)
    if d.state != ConsumerGroupState.STABLE:
        return None
    out = {}
    for m in d.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        out[m.member_id] = frozenset(tp.partition for tp in tps if tp.topic == topic)
    return out


def committed(admin, group: str, topic: str) -> Dict[int, int]:
    """Committed offsets of `group` on `topic` (partition -> offset; partitions without a
    committed offset are left out)."""
    fs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                           request_timeout=20)
    res = fs[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in res.topic_partitions
            if tp.topic == topic and tp.offset >= 0}


def wait_stable(admin, group: str, topic: str, members: List[MemberProc], partitions: int,
                timeout: float = GROUP_DEADLINE) -> Dict[str, frozenset]:
    """Waits until the group is Stable with exactly `members`, every partition of `topic` has
    exactly one owner per DescribeGroups, and each member's own view (its assign/revoke callbacks)
    agrees with the broker. Returns member name -> partitions."""
    last = {}

    def cond():
        assign = group_assignment(admin, group, topic)
        last["broker"] = assign
        if assign is None or len(assign) != len(members):
            return None
        owners: Dict[int, int] = {}
        for parts in assign.values():
            for p in parts:
                owners[p] = owners.get(p, 0) + 1
        if sorted(owners) != list(range(partitions)) or any(n != 1 for n in owners.values()):
            return None
        out = {}
        for m in members:
            if m.member_id not in assign or assign[m.member_id] != m.owned_now():
                return None
            out[m.name] = assign[m.member_id]
        return out

    try:
        return wait_until(cond, timeout, f"group {group} stable with {len(members)} members "
                                         f"owning all {partitions} partitions")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast DescribeGroups assignment: {last.get('broker')}\n"
                             + "\n".join(m.describe() for m in members)) from None


# ------------------------------------------------------------------------------------------------
# Groups across a cluster (test_cluster_groups.py, bench/failover.py)


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


class FailoverGroup:
    """Three brokers of `cluster` (node ids 1-3), a topic of `partitions` partitions fed
    continuously, and a group of `count` members committing after each record, settled: each
    member owns its share. `kill_coordinator` kills the broker coordinating the group and
    restarts it (test_cluster_groups.py, bench/failover.py)."""

    def __init__(self, cluster, members: Members, partitions: int, count: int, options: dict,
                 settle_timeout: float = 120.0, interval: float = 0.005):
        from confluent_kafka.admin import AdminClient, NewTopic
        from partita_compat import unique_name
        self.brokers = {n: cluster.start_broker(n) for n in (1, 2, 3)}
        self.bootstrap = cluster.bootstrap()
        self.topic, self.group = unique_name("failover"), unique_name("g")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in admin.create_topics([NewTopic(self.topic, num_partitions=partitions,
                                               replication_factor=1)]).values():
            f.result(30)
        self.producer = LoopProducer(self.bootstrap, self.topic, partitions,
                                     interval=interval).start()
        self.members = [members.spawn(f"m{i}", self.bootstrap, self.group, self.topic,
                                      commit_below=-1, **options) for i in range(count)]
        started = time.time()
        wait_until(lambda: settled_on(self.members, partitions), timeout=settle_timeout,
                   msg=f"{count} members sharing {partitions} partitions")
        self.settled_at = time.time()
        self.settle_seconds = self.settled_at - started

    def kill_coordinator(self) -> tuple:
        """Kills the group's coordinator, waits for every member to commit again, restarts
        it (it takes its partitions back: a planned move) and waits again. Returns the
        broker killed and both times in seconds."""
        victim = coordinator_of(self.bootstrap, self.group)
        killed_at = time.time()
        self.brokers[victim].kill()
        failover = all_committing_after(self.members, killed_at)
        restarted_at = time.time()
        self.brokers[victim].start()
        return victim, failover, all_committing_after(self.members, restarted_at)


# ------------------------------------------------------------------------------------------------
# Broker log


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def group_log_lines(broker, group: str) -> List[str]:
    """Broker log lines about `group` (INFO group events: member joined/left/removed, rebalance
    started/complete, ...)."""
    text = _ANSI.sub("", broker.log_text())
    return [line for line in text.splitlines() if group in line]


def completed_generations(broker, group: str) -> List[int]:
    """Generations of the 'rebalance complete' log lines of `group`, in order."""
    out = []
    for line in group_log_lines(broker, group):
        if "rebalance complete" in line:
            m = re.search(r"generation[=:]\s*(\d+)", line)
            if m:
                out.append(int(m.group(1)))
    return out


def produce_numbered(bootstrap: str, topic: str, partitions: Iterable[int], per_partition: int,
                     start: int = 0, tag: str = "r") -> List[str]:
    """Produces `per_partition` records to each partition; value `tag-P-I`. Returns the values."""
    from confluent_util import produce
    recs = []
    for i in range(start, start + per_partition):
        for p in partitions:
            recs.append({"value": f"{tag}-{p}-{i}".encode(), "partition": p})
    produce(bootstrap, topic, recs)
    return [r["value"].decode() for r in recs]


class LoopProducer:
    """Produces numbered records round-robin over the partitions from a thread until stopped."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, interval: float = 0.01):
        from confluent_kafka import Producer
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1,
                           "message.timeout.ms": 30000})
        self.topic = topic
        self.partitions = partitions
        self.interval = interval
        self.sent = 0
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        def report(err, _msg):
            if err is not None:
                self.errors.append(str(err))
        while not self._stop.is_set():
            p = self.sent % self.partitions
            self.p.produce(self.topic, value=f"loop-{p}-{self.sent}".encode(), partition=p,
                           on_delivery=report)
            self.sent += 1
            self.p.poll(0)
            time.sleep(self.interval)

    def start(self) -> "LoopProducer":
        self._thread.start()
        return self

    def stop(self, check: bool = True) -> None:
        """Stops producing; with `check`, asserts everything was delivered."""
        self._stop.set()
        self._thread.join(timeout=10)
        undelivered = self.p.flush(30 if check else 1)
        if check:
            assert undelivered == 0, "loop producer could not deliver everything"
            assert not self.errors, f"loop producer errors: {self.errors[:5]}"


def tp(topic: str, partition: int, offset: int = -1001) -> TopicPartition:
    return TopicPartition(topic, partition, offset)
