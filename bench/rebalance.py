#!/usr/bin/env python3
"""Consumer-group rebalance benchmark: Partita vs Tansu 0.6.0, with confluent-kafka (librdkafka).

Run through bench/rebalance.sh (after bench/setup.sh). See bench/README.md, "Rebalance".

For every (broker, partition count, mode) case, on a fresh broker:
  1. create a topic with P partitions;
  2. start a producer process that writes a steady load round-robin over all partitions, every
     record carrying its produce time (record timestamp, and as text in the value);
  3. start 10 consumer processes in one group; wait until every partition has exactly one owner
     and has been consumed by it, and no assignment changed for a while ("stable and consuming");
  4. event "join": an 11th consumer subscribes; wait until stable again;
  5. event "kill": one of the original consumers is killed with SIGKILL (no LeaveGroup); wait
     until the 10 survivors own and consume every partition again.
Each consumer prints its assign/revoke/lost callbacks and, per consume() batch, which partitions
it consumed (time, count, oldest record's age), as JSON lines; the metrics are computed from
those timelines. A mode is a set of consumer settings (see MODES): eager = range assignor,
cooperative = cooperative-sticky, and consumer = KIP-848 (group.protocol=consumer; not in the
default set until Partita serves KIP-848).

Internal sub-commands (spawned by the benchmark itself): `_member ...`, `_producer ...`.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import re
import shlex
import shutil
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (CHILDREN, REPO, Broker, emit, free_port, git_desc, machine_busy_seconds,
                      machine_info, md_table, proc_cpu_seconds, strip_ansi)

CACHE = Path(
    os.environ.get("PARTITA_BENCH_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "partita-bench"
)


# =============================================================================== modes
#
# A mode is the consumer configuration that selects a rebalance protocol. To add one, add an
# entry here; nothing else in the script depends on the mode's name.
#   conf:            consumer properties of every member
#   client_timeouts: whether session.timeout.ms / heartbeat.interval.ms are client settings
#                    (classic protocol) or the broker's (KIP-848: group.consumer.*)
#   broker_set:      extra broker properties for this mode, per broker ("partita" -> [k=v])


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    conf: dict
    client_timeouts: bool = True
    broker_set: dict = field(default_factory=dict)


MODES = {
    "eager": Mode("eager", "eager (range)", {"partition.assignment.strategy": "range"}),
    "cooperative": Mode("cooperative", "cooperative-sticky",
                        {"partition.assignment.strategy": "cooperative-sticky"}),
    # KIP-848 (issue 5): assignment on the broker; the session timeout and heartbeat interval
    # are the broker's group.consumer.* settings, so the same 6 s / 1 s go to the broker.
    "consumer": Mode("consumer", "KIP-848 (group.protocol=consumer)",
                     {"group.protocol": "consumer", "group.remote.assignor": "uniform"},
                     client_timeouts=False,
                     broker_set={"partita": ["group.consumer.session.timeout.ms={session}",
                                             "group.consumer.heartbeat.interval.ms={heartbeat}"]}),
}
DEFAULT_MODES = "eager,cooperative"

# The consumer members' client (--client). The producer and the admin client are confluent-kafka
# either way. The Java member (bench/java/RebalanceMember.java) takes the same options and prints
# the same events as member_main; it maps the confluent-kafka --conf names to the Java ones.
CLIENTS = {"confluent": "confluent-kafka", "java": "Java kafka-clients"}
JAVA_SRC = REPO / "bench" / "java" / "RebalanceMember.java"
JARS_DIR = REPO / "compat" / "jars"
JVM_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]


# =============================================================================== small helpers


def log(msg: str) -> None:
    print(f"[rebalance {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================== child: member


def member_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="rebalance.py _member")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--conf", action="append", default=[])
    args = ap.parse_args(argv)
    from confluent_kafka import Consumer, KafkaError

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    for kv in args.conf:
        k, v = kv.split("=", 1)
        conf[k] = v

    def on_error(e):
        emit(ev="error", t=time.time(), msg=str(e), code=e.code())

    c = Consumer(conf, error_cb=on_error)

    def cb(kind):
        def f(_c, parts):
            emit(ev=kind, t=time.time(), parts=sorted(p.partition for p in parts))
        return f

    emit(ev="subscribe", t=time.time())
    c.subscribe([args.topic], on_assign=cb("assign"), on_revoke=cb("revoke"), on_lost=cb("lost"))
    member_id = None
    eof = KafkaError._PARTITION_EOF
    while True:  # ends by signal (the benchmark kills its members)
        msgs = c.consume(num_messages=10000, timeout=0.05)
        now = time.time()
        mid = c.memberid()
        if mid and mid != member_id:
            member_id = mid
            emit(ev="member", t=now, id=mid)
        if not msgs:
            continue
        agg: dict = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != eof:
                    emit(ev="error", t=now, msg=str(err), code=err.code())
                continue
            ts = m.timestamp()[1]
            a = agg.get(m.partition())
            if a is None:
                agg[m.partition()] = [1, ts]
            else:
                a[0] += 1
                if ts < a[1]:
                    a[1] = ts
        if agg:
            now_ms = now * 1000.0
            # [partition, records, age in ms of the oldest record of the batch]
            emit(ev="recs", t=now, r=[[p, a[0], round(now_ms - a[1])] for p, a in agg.items()])


def java_member_prefix(rundir: Path) -> list[str]:
    """Compiles RebalanceMember.java once into the run directory (jars: compat/fetch-java-jars.sh)
    and returns the command that runs it, to which the member options are appended."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            raise SystemExit(f"`{tool}` not found: --client java needs a JDK 17 (scripts/setup)")
    subprocess.run(["bash", str(REPO / "compat" / "fetch-java-jars.sh")], check=True, timeout=600)
    classes = rundir / "java-classes"
    classes.mkdir(parents=True, exist_ok=True)
    cp = f"{JARS_DIR / '*'}:{classes}"
    proc = subprocess.run(["javac", "-Xlint:all", "-d", str(classes), "-cp", cp, str(JAVA_SRC)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"javac failed:\n{proc.stdout}\n{proc.stderr}")
    return ["java", *JVM_OPTS, "-cp", cp, "RebalanceMember"]


def java_versions() -> str:
    """'kafka-clients 3.9.1, JDK 17.0.15' from the jar and `java -version`."""
    import zipfile
    kc = "?"
    try:
        with zipfile.ZipFile(JARS_DIR / "kafka-clients.jar") as z:
            for line in z.read("kafka/kafka-version.properties").decode().splitlines():
                if line.startswith("version="):
                    kc = line.split("=", 1)[1].strip()
    except (OSError, KeyError, zipfile.BadZipFile):
        pass
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr
        jdk = re.search(r'version "([^"]+)"', out).group(1)
    except (OSError, subprocess.SubprocessError, AttributeError):
        jdk = "?"
    return f"kafka-clients {kc}, JDK {jdk}"


# =============================================================================== child: producer


def producer_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="rebalance.py _producer")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    args = ap.parse_args(argv)
    from confluent_kafka import Producer

    st = {"delivered": 0, "failed": 0, "errors": []}

    def dr(err, _msg):
        if err is None:
            st["delivered"] += 1
        else:
            st["failed"] += 1
            if len(st["errors"]) < 5:
                st["errors"].append(str(err))

    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "acks": "all",
                  "message.timeout.ms": 60000, "on_delivery": dr,
                  "error_cb": lambda e: emit(ev="error", t=time.time(), msg=str(e))})
    t0 = time.monotonic()
    sent = skipped = 0
    nparts = args.partitions
    next_stats = t0 + 1.0
    while True:  # ends by signal
        now = time.monotonic()
        target = int((now - t0) * args.rate) - skipped
        if target - sent > args.rate:  # more than 1 s behind: do not burst, drop the backlog
            skipped += target - sent
            target = sent
        while sent < target:
            wall = time.time()
            try:
                p.produce(args.topic, value=b"%.6f" % wall, partition=sent % nparts,
                          timestamp=int(wall * 1000))
            except BufferError:
                p.poll(0.01)
                break
            sent += 1
        p.poll(0)
        if now >= next_stats:
            next_stats = now + 1.0
            emit(ev="stats", t=time.time(), sent=sent, delivered=st["delivered"],
                 failed=st["failed"], skipped=skipped, errors=st["errors"][:3])
        time.sleep(0.005)


# =============================================================================== parent: children


class CpuSampler:
    """Samples utime+stime of the processes it is given (last value kept after they exit)."""

    def __init__(self):
        self.pids: dict[int, float] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def add(self, pid: int) -> None:
        with self.lock:
            self.pids.setdefault(pid, 0.0)

    def sample(self) -> None:
        with self.lock:
            for pid in self.pids:
                v = proc_cpu_seconds(pid)
                if v is not None:
                    self.pids[pid] = v

    def total(self) -> float:
        self.sample()
        with self.lock:
            return sum(self.pids.values())

    def _run(self):
        while not self._stop.wait(0.5):
            self.sample()

    def stop(self):
        self._stop.set()


def make_broker(name: str, workdir: Path, args, mode: Mode) -> Broker:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "partita":
        data = Path(tempfile.mkdtemp(prefix="partita-rebalance-"))
        sets = list(args.partita_set)
        for s in mode.broker_set.get("partita", []):
            sets.append(s.format(session=args.session_timeout_ms, heartbeat=args.heartbeat_ms))
        argv = [str(args.partita_bin), "broker", "--listen", f"127.0.0.1:{port}",
                "--data-dir", str(data)] + [x for kv in sets for x in ("--set", kv)]
        b = Broker(name, argv, port, workdir)
        b.cleanup.append(data)
        return b
    if name == "tansu":
        argv = [str(args.tansu_bin), "broker",
                "--listener-url", f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                "--storage-engine", "memory://tansu/"]
        return Broker(name, argv, port, workdir)
    raise SystemExit(f"unknown broker {name}")


class Member:
    """One consumer process and what it reported: its assignment and its consumption."""

    def __init__(self, idx: int, name: str, argv: list[str], workdir: Path, timeline):
        self.idx, self.name = idx, name
        self.lock = threading.Lock()
        self.owned: set[int] = set()
        self.events: list[tuple[float, str, list[int]]] = []  # (t, assign|revoke|lost, parts)
        self.errors: list[tuple[float, str]] = []
        self.member_id: str | None = None
        self.subscribed_at: float | None = None
        self.killed_at: float | None = None
        self.spawned_at = time.time()
        self.timeline = timeline
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = CHILDREN.popen(argv, stdout=subprocess.PIPE, stderr=err,
                                       stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        tl = self.timeline
        idx = self.idx
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind = ev.get("ev")
            t = ev.get("t", time.time())
            if kind == "recs":
                for p, n, age in ev["r"]:
                    tl[p].append((t, idx, n, age))
                continue
            with self.lock:
                if kind == "assign":
                    self.owned |= set(ev["parts"])
                    self.events.append((t, kind, ev["parts"]))
                elif kind in ("revoke", "lost"):
                    self.owned -= set(ev["parts"])
                    self.events.append((t, kind, ev["parts"]))
                elif kind == "error":
                    self.errors.append((t, ev.get("msg", "")))
                elif kind == "member":
                    self.member_id = ev.get("id")
                elif kind == "subscribe":
                    self.subscribed_at = t

    def alive(self) -> bool:
        return self.proc.poll() is None and self.killed_at is None

    def owned_now(self) -> frozenset:
        with self.lock:
            return frozenset(self.owned)

    def events_since(self, t0: float) -> list:
        with self.lock:
            return [e for e in self.events if e[0] >= t0]

    def last_assign_time(self, partition: int) -> float | None:
        with self.lock:
            for t, kind, parts in reversed(self.events):
                if kind == "assign" and partition in parts:
                    return t
        return None

    def kill(self) -> float:
        t = time.time()
        self.killed_at = t
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return t


class Producer:
    def __init__(self, argv: list[str], workdir: Path):
        self.stats: dict = {}
        self.errors: list[str] = []
        with open(workdir / "producer.stderr", "wb") as err:
            self.proc = CHILDREN.popen(argv, stdout=subprocess.PIPE, stderr=err,
                                       stdin=subprocess.DEVNULL)
        self.started = time.time()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("ev") == "stats":
                self.stats = ev
            elif ev.get("ev") == "error" and len(self.errors) < 20:
                self.errors.append(ev.get("msg", ""))


# =============================================================================== parent: one case


class CaseFailed(Exception):
    pass


@dataclass
class EventResult:
    name: str
    ok: bool = False
    reason: str = ""
    t_event: float = 0.0
    resume_s: float | None = None         # event -> first record on the last partition to resume
    last_partition: int | None = None
    max_gap_s: float | None = None        # longest consumption gap of any partition
    max_gap_partition: int | None = None
    unmoved_gap_s: float | None = None    # longest gap among partitions that kept their owner
    moved: int | None = None
    unmoved: int | None = None
    stable_s: float | None = None         # event -> last assign/revoke callback of the rebalance
    baseline_gap_s: float | None = None   # longest gap of any partition in the steady window before
    max_age_ms: int | None = None         # oldest record (now - produce time) consumed after event
    baseline_age_ms: int | None = None
    callbacks: str = ""
    broker_events: list = field(default_factory=list)
    member_errors: list = field(default_factory=list)


@dataclass
class CaseResult:
    broker: str
    partitions: int
    mode: Mode
    ok: bool = False
    reason: str = ""
    events: dict = field(default_factory=dict)
    rate: float = 0.0
    produced: int = 0
    delivered: int = 0
    produce_failed: int = 0
    produce_skipped: int = 0
    form_s: float | None = None
    broker_cpu_s: float | None = None
    our_cpu_s: float | None = None
    other_cores: float | None = None
    wall_s: float = 0.0
    workdir: Path | None = None
    notes: list = field(default_factory=list)
    run: int = 1


def group_snapshot(members: list[Member]) -> dict[int, int]:
    """partition -> member idx, from the members' own views (live members only)."""
    owners: dict[int, int] = {}
    for m in members:
        if m.alive():
            for p in m.owned_now():
                owners[p] = m.idx if p not in owners else -1  # -1: more than one owner
    return owners


def stability(members: list[Member], partitions: int, since: float, timeline,
              settle: float) -> tuple[bool, str]:
    """Stable and consuming: every live member owns partitions, every partition has exactly one
    owner, each was consumed by that owner after it got it (and after `since`), at least one
    assignment change happened after `since`, and none for `settle` seconds."""
    live = [m for m in members if m.alive()]
    owners = group_snapshot(members)
    missing = partitions - len([p for p in owners if 0 <= p < partitions])
    double = sum(1 for o in owners.values() if o == -1)
    empty = [m.name for m in live if not m.owned_now()]
    changes = [e[0] for m in live for e in m.events_since(since)]
    last_change = max(changes) if changes else None
    not_consumed = 0
    if not missing and not double:
        by_idx = {m.idx: m for m in live}
        for p in range(partitions):
            m = by_idx[owners[p]]
            a = m.last_assign_time(p) or since
            start = max(a, since)
            if not any(t >= start and i == m.idx for t, i, _n, _a in reversed(timeline[p][-50:])):
                not_consumed += 1
    quiet = last_change is not None and time.time() - last_change >= settle
    ok = not missing and not double and not empty and not not_consumed and quiet
    state = (f"{len(live)} live members, {partitions - missing}/{partitions} partitions owned, "
             f"{double} with two owners, members without partitions: {empty or 'none'}, "
             f"{not_consumed} owned but not yet consumed, assignment changes since event: "
             f"{len(changes)}")
    return ok, state


def wait_stable(members, partitions, since, timeline, settle, timeout, broker, what) -> float:
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        if not broker.alive():
            raise CaseFailed(f"broker exited during {what}: {broker.log_tail(3)}")
        for m in members:
            if m.killed_at is None and m.proc.poll() is not None:
                raise CaseFailed(f"consumer {m.name} exited (rc {m.proc.returncode}) during "
                                 f"{what}: {m.stderr_path.read_text(errors='replace')[-300:]}")
        ok, state = stability(members, partitions, since, timeline, settle)
        if ok:
            return time.time()
        time.sleep(0.1)
    raise CaseFailed(f"not stable within {timeout:.0f} s after {what} ({state})")


def longest_gap(times: list[float], t0: float, t1: float, clip: bool = False) -> float:
    """Longest interval without consumption that overlaps [t0, t1]: from the last consumption
    at or before t0 to the first at or after t1, over the consumptions in between. With clip,
    only the part inside [t0, t1] counts (for the steady window before an event)."""
    prev = None
    best = 0.0
    for t in times:
        if t <= t0:
            prev = t
            continue
        if prev is None:
            prev = t0
        if clip:
            best = max(best, min(t, t1) - max(prev, t0))
        else:
            best = max(best, t - prev)
        prev = t
        if t >= t1:
            break
    else:
        if clip and prev is not None:
            best = max(best, t1 - max(prev, t0))
    return best


def analyze(ev: EventResult, members: list[Member], partitions: int, timeline, t_event: float,
            before: dict[int, int], after: dict[int, int], t_stable: float, baseline_s: float):
    by_idx = {m.idx: m for m in members}
    resume = {}
    for p in range(partitions):
        m = by_idx[after[p]]
        start = max(t_event, m.last_assign_time(p) or t_event)
        ts = [t for t, i, _n, _a in timeline[p] if i == m.idx and t >= start]
        resume[p] = min(ts) if ts else None
    if any(v is None for v in resume.values()):
        raise CaseFailed("a partition was never consumed by its new owner")
    last_p = max(resume, key=lambda p: resume[p])
    t_end = resume[last_p]
    ev.resume_s = t_end - t_event
    ev.last_partition = last_p
    gaps, base_gaps = {}, {}
    age_after = age_before = 0
    for p in range(partitions):
        entries = sorted(timeline[p])
        times = [e[0] for e in entries]
        gaps[p] = longest_gap(times, t_event, t_end)
        base_gaps[p] = longest_gap(times, t_event - baseline_s, t_event, clip=True)
        for t, _i, _n, age in entries:
            if t_event < t <= t_end + 0.001:
                age_after = max(age_after, age)
            elif t_event - baseline_s <= t <= t_event:
                age_before = max(age_before, age)
    moved = [p for p in range(partitions) if before.get(p) != after[p]]
    unmoved = [p for p in range(partitions) if before.get(p) == after[p]]
    ev.max_gap_partition = max(gaps, key=lambda p: gaps[p])
    ev.max_gap_s = gaps[ev.max_gap_partition]
    ev.unmoved_gap_s = max((gaps[p] for p in unmoved), default=None)
    ev.moved, ev.unmoved = len(moved), len(unmoved)
    ev.baseline_gap_s = max(base_gaps.values())
    ev.max_age_ms, ev.baseline_age_ms = age_after, age_before
    changes = sorted((e[0], e[1], len(e[2]), m.name) for m in members for e in
                     m.events_since(t_event) if e[0] <= t_stable)
    ev.stable_s = (changes[-1][0] - t_event) if changes else None
    kinds: dict = {}
    for _t, k, _n, _name in changes:
        kinds[k] = kinds.get(k, 0) + 1
    ev.callbacks = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))


_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+(\w+)\s+(.*)$")


def broker_group_lines(broker: Broker, group: str, t_ref: float, t1: float,
                       before: float = 0.5) -> list[str]:
    """Broker log lines about `group` from `before` s ahead of t_ref to t1, as
    '+S.SSS s <line>' relative to t_ref."""
    t0 = t_ref - before
    out = []
    for line in strip_ansi(broker.log_text()).splitlines():
        if group not in line:
            continue
        m = _TS.match(line)
        if not m:
            continue
        stamp = m.group(1)
        if "." in stamp:
            head, frac = stamp.split(".")
            stamp = f"{head}.{frac[:6]}"
        t = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc).timestamp()
        if t0 <= t <= t1:
            msg = re.sub(r"\s+", " ", m.group(3))
            msg = re.sub(r"partita_\w+(::\w+)*: ", "", msg)
            out.append(f"{t - t_ref:+8.3f} s {m.group(2)} {msg}")
    return out


def summarize_broker_lines(lines: list[str]) -> str:
    keys = ["member joined", "member left", "member removed", "rebalance started",
            "join phase complete", "rebalance complete", "group is empty"]
    counts = []
    for k in keys:
        n = sum(1 for line in lines if k in line)
        if n:
            counts.append(f"{k} x{n}")
    return ", ".join(counts) if counts else "-"


def run_case(broker_name: str, partitions: int, mode: Mode, args, rundir: Path,
             run: int = 1) -> CaseResult:
    res = CaseResult(broker_name, partitions, mode, run=run)
    workdir = rundir / f"{broker_name}-{partitions}p-{mode.name}" / f"run{run}"
    res.workdir = workdir
    t_start = time.time()
    broker = make_broker(broker_name, workdir, args, mode)
    members: list[Member] = []
    producer: Producer | None = None
    cpu = CpuSampler()
    busy0 = machine_busy_seconds()
    self0 = sum(os.times()[:2])
    topic = f"rebalance-{partitions}"
    group = f"rebalance-{mode.name}"
    timeline: list[list] = [[] for _ in range(partitions)]
    rate = min(args.max_rate, args.rate_per_partition * partitions)
    res.rate = rate
    for e in args.events:
        res.events[e] = EventResult(e)
    broker_cpu0 = None
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        log(f"[{broker_name} {partitions}p {mode.name}] starting: {shlex.join(broker.argv)}")
        try:
            broker.start()
        except RuntimeError as exc:
            raise CaseFailed(f"broker start: {exc}") from None
        cpu.add(broker.proc.pid)
        broker_cpu0 = proc_cpu_seconds(broker.proc.pid) or 0.0

        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        try:
            fut = admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=30)
            fut[topic].result(timeout=40)
        except Exception as exc:  # noqa: BLE001 - reported
            raise CaseFailed(f"create topic with {partitions} partitions: {exc}") from None
        deadline = time.time() + 30
        while True:
            md = admin.list_topics(topic, timeout=10)
            t = md.topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                break
            if time.time() > deadline:
                raise CaseFailed(f"topic metadata does not show {partitions} partitions")
            time.sleep(0.2)

        me = [sys.executable, str(Path(__file__).resolve())]
        producer = Producer(me + ["_producer", "--bootstrap", broker.bootstrap, "--topic", topic,
                                  "--partitions", str(partitions), "--rate", str(rate)], workdir)
        cpu.add(producer.proc.pid)
        deadline = time.time() + 30
        while producer.stats.get("delivered", 0) == 0:
            if time.time() > deadline or producer.proc.poll() is not None:
                raise CaseFailed(f"producer delivered nothing within 30 s "
                                 f"({producer.stats}, errors {producer.errors[:3]})")
            time.sleep(0.1)

        conf = dict(mode.conf)
        conf.update({"enable.auto.commit": "true",
                     "auto.commit.interval.ms": str(args.auto_commit_ms),
                     "fetch.wait.max.ms": "100"})
        if mode.client_timeouts:
            conf["session.timeout.ms"] = str(args.session_timeout_ms)
            conf["heartbeat.interval.ms"] = str(args.heartbeat_ms)
        for kv in args.consumer_conf:
            k, v = kv.split("=", 1)
            conf[k] = v
        res.notes.append("consumer conf: " + ", ".join(f"{k}={v}" for k, v in conf.items()))

        def spawn(i: int) -> Member:
            argv = args.member_cmd + ["--bootstrap", broker.bootstrap, "--group", group,
                                      "--topic", topic] + [x for k, v in conf.items()
                                                           for x in ("--conf", f"{k}={v}")]
            m = Member(i, f"c{i:02d}", argv, workdir, timeline)
            cpu.add(m.proc.pid)
            members.append(m)
            return m

        t_form = time.time()
        for i in range(1, args.consumers + 1):
            spawn(i)
        t_stable = wait_stable(members, partitions, t_form, timeline, args.settle_s,
                               args.form_timeout_s, broker, f"{args.consumers} consumers start")
        res.form_s = t_stable - t_form
        log(f"[{broker_name} {partitions}p {mode.name}] {args.consumers} consumers stable after "
            f"{res.form_s:.1f} s; steady for {args.baseline_s:.0f} s")
        time.sleep(args.baseline_s)

        # ---- event 1: an 11th consumer joins, at a random point of the members' heartbeat
        # cycles (they started together, so their cycles are in step with this script's waits)
        time.sleep(random.uniform(0, args.heartbeat_ms / 1000))
        ev = res.events["join"]
        before = group_snapshot(members)
        newcomer = spawn(args.consumers + 1)
        deadline = time.time() + 30
        while newcomer.subscribed_at is None:
            if time.time() > deadline or newcomer.proc.poll() is not None:
                raise CaseFailed(f"the joining consumer did not start: "
                                 f"{newcomer.stderr_path.read_text(errors='replace')[-300:]}")
            time.sleep(0.02)
        ev.t_event = newcomer.subscribed_at
        before = group_snapshot(members)  # the newcomer owns nothing yet
        try:
            t_stable = wait_stable(members, partitions, ev.t_event, timeline, args.settle_s,
                                   args.event_timeout_s, broker, "the join")
        except CaseFailed as exc:
            ev.reason = str(exc)
            if "kill" in res.events:
                res.events["kill"].reason = "not run (the join did not settle)"
            raise
        analyze(ev, members, partitions, timeline, ev.t_event, before,
                group_snapshot(members), t_stable, args.baseline_s)
        ev.ok = True
        ev.broker_events = broker_group_lines(broker, group, ev.t_event, t_stable)
        log(f"[{broker_name} {partitions}p {mode.name}] join: all consumed again after "
            f"{ev.resume_s:.2f} s, max gap {ev.max_gap_s:.2f} s, moved {ev.moved}")
        if "kill" not in res.events:
            res.ok = True
            return res
        time.sleep(args.baseline_s)

        # ---- event 2: one of the original consumers is killed (SIGKILL, no LeaveGroup)
        ev = res.events["kill"]
        victim = members[args.kill_index - 1]
        before = group_snapshot(members)
        if not victim.owned_now():
            raise CaseFailed(f"victim {victim.name} owns nothing")
        ev.t_event = victim.kill()
        res.notes.append(f"killed {victim.name} (member id {victim.member_id}), which owned "
                         f"{len(victim.owned_now())} partitions")
        try:
            t_stable = wait_stable(members, partitions, ev.t_event, timeline, args.settle_s,
                                   args.event_timeout_s + args.session_timeout_ms / 1000,
                                   broker, "the kill")
        except CaseFailed as exc:
            ev.reason = str(exc)
            raise
        analyze(ev, members, partitions, timeline, ev.t_event, before,
                group_snapshot(members), t_stable, args.baseline_s)
        ev.ok = True
        ev.broker_events = broker_group_lines(broker, group, ev.t_event, t_stable)
        log(f"[{broker_name} {partitions}p {mode.name}] kill: all consumed again after "
            f"{ev.resume_s:.2f} s, max gap {ev.max_gap_s:.2f} s, moved {ev.moved}")
        res.ok = True
    except CaseFailed as exc:
        res.reason = str(exc)
        for e in res.events.values():
            if not e.ok and not e.reason:
                e.reason = str(exc)
        log(f"[{broker_name} {partitions}p {mode.name}] failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected client error: report it
        res.reason = f"{type(exc).__name__}: {exc}"
        for e in res.events.values():
            if not e.ok and not e.reason:
                e.reason = res.reason
        log(f"[{broker_name} {partitions}p {mode.name}] error: {res.reason}")
    finally:
        for e in res.events.values():
            if e.t_event:
                e.member_errors = sorted({msg for m in members for t, msg in m.errors
                                          if t >= e.t_event - 1})[:8]
            if not e.ok and e.t_event:
                e.broker_events = broker_group_lines(broker, group, e.t_event, time.time())
        if producer is not None and producer.stats:
            s = producer.stats
            res.produced, res.delivered = s.get("sent", 0), s.get("delivered", 0)
            res.produce_failed, res.produce_skipped = s.get("failed", 0), s.get("skipped", 0)
            if s.get("errors"):
                res.notes.append(f"producer delivery errors: {s['errors']}")
        if broker.alive() and broker_cpu0 is not None:
            res.broker_cpu_s = (proc_cpu_seconds(broker.proc.pid) or 0.0) - broker_cpu0
        ours = cpu.total() + sum(os.times()[:2]) - self0
        cpu.stop()
        wall = time.time() - t_start
        res.wall_s = wall
        res.our_cpu_s = ours
        res.other_cores = max(0.0, (machine_busy_seconds() - busy0 - ours) / wall)
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
        if producer is not None and producer.proc.poll() is None:
            producer.proc.kill()
        for m in members:
            m.proc.wait()
        if producer is not None:
            producer.proc.wait()
        broker.stop()
        # raw per-event numbers and the broker's group lines for later digging
        with open(workdir / "summary.json", "w") as f:
            json.dump({"case": f"{broker_name}-{partitions}-{mode.name}", "ok": res.ok,
                       "reason": res.reason,
                       "events": {k: {kk: vv for kk, vv in vars(v).items()}
                                  for k, v in res.events.items()},
                       "members": {m.name: {"id": m.member_id, "subscribed": m.subscribed_at,
                                            "killed": m.killed_at,
                                            "callbacks": [[round(t, 4), k, ps]
                                                          for t, k, ps in m.events]}
                                   for m in members}}, f, indent=1, default=str)
        # per-partition consumption timeline: [t, member, records, age of oldest ms]
        with open(workdir / "timeline.json", "w") as f:
            json.dump([[[round(t, 4), i, n, a] for t, i, n, a in sorted(tl)] for tl in timeline], f)
    return res


# =============================================================================== report


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def cell(runs: list[CaseResult] | None, event: str) -> str:
    """One case's numbers; over several runs, the median of each (and the range of the first)."""
    if not runs:
        return "not run"
    evs = [r.events[event] for r in runs if event in r.events]
    ok = [ev for ev in evs if ev.ok]
    if not ok:
        return f"failed: {evs[0].reason}" if evs else "not run"
    if len(evs) == 1:
        ev = ok[0]
        return (f"{fmt_s(ev.resume_s)} / {fmt_s(ev.max_gap_s)} / {fmt_s(ev.unmoved_gap_s)} / "
                f"{ev.moved}")
    resume = [ev.resume_s for ev in ok]
    failed = len(evs) - len(ok)
    return (f"{fmt_s(statistics.median(resume))} ({fmt_s(min(resume))}-{fmt_s(max(resume))}) / "
            f"{fmt_s(statistics.median(ev.max_gap_s for ev in ok))} / "
            f"{fmt_s(statistics.median(ev.unmoved_gap_s for ev in ok))} / "
            f"{statistics.median(ev.moved for ev in ok):.0f}; median of {len(ok)}"
            + (f", {failed} failed" if failed else ""))


EVENT_LABEL = {"join": "11th consumer joins", "kill": "1 of 11 killed (SIGKILL)"}


def main_table(results: dict, brokers: list[str], cases: list[tuple[int, Mode]],
               client: str, events: list[str]) -> str:
    rows = []
    for partitions, mode in cases:
        for event in events:
            rows.append([f"{partitions} partitions, {mode.label}, {CLIENTS[client]}: "
                         f"{EVENT_LABEL[event]}"] +
                        [cell(results.get((b, partitions, mode.name)), event) for b in brokers])
    return md_table(["scenario x event"] + [b.capitalize() for b in brokers], rows)


def detail_table(results: list[CaseResult]) -> str:
    header = ["broker", "partitions", "mode", "event", "all consumed again s (last partition)",
              "max gap s (partition)", "max gap, unmoved s", "moved / unmoved",
              "last callback s", "steady max gap s", "max record age ms (steady)",
              "client callbacks", "broker group log"]
    rows = []
    for r in results:
        for name, ev in r.events.items():
            if not ev.ok:
                rows.append([r.broker, str(r.partitions), f"{r.mode.name} #{r.run}", name,
                             f"failed: {ev.reason}"] + ["-"] * 7 +
                            [summarize_broker_lines(ev.broker_events)])
                continue
            rows.append([
                r.broker, str(r.partitions), f"{r.mode.name} #{r.run}", name,
                f"{fmt_s(ev.resume_s)} (p{ev.last_partition})",
                f"{fmt_s(ev.max_gap_s)} (p{ev.max_gap_partition})",
                fmt_s(ev.unmoved_gap_s), f"{ev.moved} / {ev.unmoved}",
                fmt_s(ev.stable_s), fmt_s(ev.baseline_gap_s),
                f"{ev.max_age_ms} ({ev.baseline_age_ms})", ev.callbacks or "-",
                summarize_broker_lines(ev.broker_events)])
    return md_table(header, rows)


def case_table(results: list[CaseResult]) -> str:
    header = ["broker", "partitions", "mode", "target rate rec/s", "produced / delivered / failed",
              "group formed s", "broker CPU s", "bench CPU s", "other processes, cores",
              "case wall s"]
    rows = []
    for r in results:
        rows.append([r.broker, str(r.partitions), f"{r.mode.name} #{r.run}", f"{r.rate:.0f}",
                     f"{r.produced} / {r.delivered} / {r.produce_failed}"
                     + (f" (dropped {r.produce_skipped})" if r.produce_skipped else ""),
                     fmt_s(r.form_s), fmt_s(r.broker_cpu_s), fmt_s(r.our_cpu_s),
                     fmt_s(r.other_cores), f"{r.wall_s:.0f}"])
    return md_table(header, rows)


# =============================================================================== main


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Consumer-group rebalance benchmark (join and kill) for Partita and Tansu.")
    ap.add_argument("--brokers", default="partita,tansu")
    ap.add_argument("--modes", default=DEFAULT_MODES,
                    help=f"comma list of {', '.join(MODES)} (default {DEFAULT_MODES})")
    ap.add_argument("--partitions", default="100,900", help="partition counts for Partita")
    ap.add_argument("--tansu-partitions", default=None,
                    help="partition counts run on Tansu (default: the same as --partitions)")
    ap.add_argument("--consumers", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of every case, each on a fresh broker; the results table shows "
                         "the median (and the range of the first number)")
    ap.add_argument("--events", default="join,kill",
                    help="events to run, in order: join, or join,kill (default)")
    ap.add_argument("--kill-index", type=int, default=5,
                    help="which of the original consumers (1-based) is killed")
    ap.add_argument("--rate-per-partition", type=float, default=30.0)
    ap.add_argument("--max-rate", type=float, default=3000.0,
                    help="produce rate = min(max-rate, rate-per-partition x partitions)")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--auto-commit-ms", type=int, default=1000)
    ap.add_argument("--consumer-conf", action="append", default=[], metavar="K=V",
                    help="consumer property (confluent-kafka name; the Java member maps it)")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="confluent",
                    help="consumer members: confluent-kafka (librdkafka) processes, or Java "
                         "kafka-clients JVMs (bench/java/RebalanceMember.java; the producer stays "
                         "confluent-kafka)")
    ap.add_argument("--baseline-s", type=float, default=3.0,
                    help="steady consumption before each event (also the window for the steady "
                         "gap)")
    ap.add_argument("--settle-s", type=float, default=2.0,
                    help="no assignment change for this long = stable")
    ap.add_argument("--form-timeout-s", type=float, default=60.0)
    ap.add_argument("--event-timeout-s", type=float, default=45.0,
                    help="per event (the kill event adds the session timeout)")
    ap.add_argument("--budget-min", type=float, default=15.0,
                    help="skip the remaining cases after this many minutes")
    ap.add_argument("--partita-bin", type=Path)
    ap.add_argument("--tansu-bin", type=Path, default=CACHE / "bin" / "tansu")
    ap.add_argument("--partita-set", action="append", default=None, metavar="NAME=VALUE",
                    help="broker property for Partita (default group.initial.rebalance.delay.ms=0)")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/rebalance-DATE.md)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: Partita only, 100 partitions, both modes")
    args = ap.parse_args(argv)
    args.events = [e for e in args.events.split(",") if e]
    if args.events not in (["join"], ["join", "kill"]):
        raise SystemExit("--events: join, or join,kill")
    if args.partita_set is None:
        args.partita_set = ["group.initial.rebalance.delay.ms=0"]
    if args.quick:
        args.brokers, args.partitions = "partita", "100"
    args.partita_bin_note = ""
    if args.partita_bin is None:
        args.partita_bin, args.partita_bin_note = pick_partita_bin()
    return args


def has_group_coordinator(path: Path) -> bool:
    """Whether a Partita binary has the classic group coordinator (its INFO message text)."""
    try:
        return b"rebalance complete" in path.read_bytes()
    except OSError:
        return False


def pick_partita_bin() -> tuple[Path, str]:
    """target/release/partita if it exists and has the group coordinator, else target/debug."""
    rel, deb = REPO / "target/release/partita", REPO / "target/debug/partita"
    if rel.exists() and has_group_coordinator(rel):
        return rel, "release build"
    if deb.exists():
        why = ("target/release/partita has no group coordinator (it was built before it)"
               if rel.exists() else "there is no release build")
        return deb, f"debug build, unoptimized and slower than a release build: {why}"
    return rel, "release build"


def main(argv) -> int:
    args = parse_args(argv)
    brokers = [b for b in args.brokers.split(",") if b]
    for m in args.modes.split(","):
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r}; known: {', '.join(MODES)}")
    modes = [MODES[m] for m in args.modes.split(",")]
    parts = [int(x) for x in args.partitions.split(",")]
    tansu_parts = parts if args.tansu_partitions is None else \
        [int(x) for x in args.tansu_partitions.split(",") if x]
    if "partita" in brokers and not args.partita_bin.exists():
        raise SystemExit(f"no Partita binary at {args.partita_bin} (cargo build --release)")
    if "tansu" in brokers and not args.tansu_bin.exists():
        raise SystemExit(f"no Tansu binary at {args.tansu_bin}: run bench/setup.sh "
                         f"(BENCH_SKIP_PARTITA=1 skips the cargo build)")

    def cleanup(*_):
        CHILDREN.kill_all()
    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: (cleanup(), sys.exit(128 + s)))

    started = dt.datetime.now(dt.timezone.utc)
    rundir = CACHE / "runs" / ("rebalance-" + started.strftime("%Y-%m-%dT%H%M%SZ"))
    rundir.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    log(f"run directory {rundir}")
    partita_src = args.partita_bin
    partita_built = dt.datetime.fromtimestamp(partita_src.stat().st_mtime, dt.timezone.utc) \
        if partita_src.exists() else None
    if "partita" in brokers and not any(kv.startswith("http.listen=") for kv in args.partita_set):
        try:
            if b"http.listen" in partita_src.read_bytes():
                # The metrics/dashboard listener (default 127.0.0.1:9644) is not benchmarked and
                # may be taken by another broker on the machine: off.
                args.partita_set.append("http.listen=")
        except OSError:
            pass
    if "partita" in brokers:
        # A private copy: a rebuild of target/ during the run must not change the broker.
        shutil.copy2(partita_src, rundir / "partita")
        args.partita_bin = rundir / "partita"
        log(f"partita: {partita_src} ({args.partita_bin_note or 'given'})")
    if args.client == "java":
        args.member_cmd = java_member_prefix(rundir)
        log(f"java member: {shlex.join(args.member_cmd)}")
    else:
        args.member_cmd = [sys.executable, str(Path(__file__).resolve()), "_member"]
    cases = [(p, m) for p in parts for m in modes]
    plan = [(b, p, m, run) for p, m in cases for run in range(1, args.repeat + 1)
            for b in brokers if b != "tansu" or p in tansu_parts]
    results: dict = {}
    ordered: list[CaseResult] = []
    t0 = time.time()
    for b, p, m, run in plan:
        elapsed = (time.time() - t0) / 60
        if elapsed > args.budget_min - 1.0:
            r = CaseResult(b, p, m, reason=f"skipped: time budget of {args.budget_min:.0f} min",
                           run=run)
            for e in args.events:
                r.events[e] = EventResult(e, reason=r.reason)
        else:
            r = run_case(b, p, m, args, rundir, run)
        results.setdefault((b, p, m.name), []).append(r)
        ordered.append(r)
    total = time.time() - t0

    table = main_table(results, brokers, cases, args.client, args.events)
    legend = ("Each cell: all consumed again s / max gap s / max gap of unmoved partitions s / "
              "partitions moved. `not run`: that broker was not run with that partition count.")
    print()
    print(legend)
    print(table)
    print()
    if args.no_write:
        return 0 if all(r.ok for r in ordered) else 1

    out = args.out or REPO / "bench" / "results" / f"rebalance-{started.strftime('%Y-%m-%d')}.md"
    cmd = "bash bench/rebalance.sh" + ("" if not argv else " " + shlex.join(argv))
    tansu_ver = ""
    if "tansu" in brokers:
        try:
            tansu_ver = subprocess.run([str(args.tansu_bin), "--version"], capture_output=True,
                                       text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            tansu_ver = "?"
    import confluent_kafka
    ck_version = confluent_kafka.version()
    ck_version = ck_version if isinstance(ck_version, str) else ck_version[0]
    lines = [
        f"# Rebalance benchmark, {started.strftime('%Y-%m-%d %H:%M')} UTC", "",
        f"Command: `{cmd}`  ",
        f"Date: {started.isoformat(timespec='seconds')}, {total / 60:.1f} min  ",
        f"Machine: {machine_info()}  ",
        f"Load average (1/5/15 min) at start: {'/'.join(f'{x:.2f}' for x in load0)}, at end: "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}  ",
        (f"Partita: `{partita_src.relative_to(REPO) if partita_src.is_relative_to(REPO) else partita_src}`"
         f" ({args.partita_bin_note or 'given with --partita-bin'}; built "
         f"{partita_built.strftime('%Y-%m-%d %H:%M') if partita_built else '?'} UTC), "
         f"repository HEAD {git_desc()}, "
         f"`--set {' --set '.join(args.partita_set)}` (Kafka's default for "
         f"group.initial.rebalance.delay.ms is 3000; it only delays the first rebalance of an "
         f"empty group, so it does not touch the join and kill events)  ")
        if "partita" in brokers else "",
        f"Tansu: {tansu_ver}, `tansu broker --storage-engine memory://tansu/` (no group settings "
        f"given)  " if tansu_ver else "",
        (f"Clients: confluent-kafka {ck_version} / librdkafka "
         f"{confluent_kafka.libversion()[0]}, one process per consumer and one producer process  "
         if args.client == "confluent" else
         f"Clients: consumers (--client java): Java {java_versions()}, one JVM per consumer "
         f"(bench/java/RebalanceMember.java, `java {' '.join(JVM_OPTS)}`, poll(50 ms); the "
         f"confluent-kafka settings below are mapped to the Java ones: fetch.wait.max.ms -> "
         f"fetch.max.wait.ms, range/cooperative-sticky -> RangeAssignor/CooperativeStickyAssignor, "
         f"and with group.protocol=consumer no assignor/session/heartbeat setting); producer and "
         f"admin: confluent-kafka {ck_version} / librdkafka {confluent_kafka.libversion()[0]}  "),
        f"Consumers: {args.consumers}, then an 11th joins, then consumer c{args.kill_index:02d} "
        f"(one of the original ones) is killed; session.timeout.ms={args.session_timeout_ms}, "
        f"heartbeat.interval.ms={args.heartbeat_ms} (Partita's group.min.session.timeout.ms "
        f"default is 6000, so this is the shortest session it accepts; the kill case is "
        f"dominated by it), enable.auto.commit=true with auto.commit.interval.ms="
        f"{args.auto_commit_ms}, auto.offset.reset=earliest, fetch.wait.max.ms=100, "
        f"max.poll.interval.ms default (300000)  ",
        f"Load: records of ~17 B (the produce time as text; the record timestamp is the same "
        f"time), round-robin over all partitions, min({args.max_rate:.0f}, "
        f"{args.rate_per_partition:.0f} x partitions) records/s ("
        + ", ".join(f"{p} partitions: {min(args.max_rate, args.rate_per_partition * p):.0f}/s, "
                    f"one record per partition every "
                    f"{1000 / (min(args.max_rate, args.rate_per_partition * p) / p):.0f} ms"
                    for p in parts)
        + "; a gap shorter than that interval cannot be seen, see the steady max gap column), "
        f"acks=all, linger.ms=5  ",
        f"Timings: {args.baseline_s:.0f} s of steady consumption before each event; stable = "
        f"every partition owned by exactly one live consumer and consumed by it since it got it, "
        f"and no assign/revoke callback for {args.settle_s:.0f} s  ",
        "",
        "## Results", "",
        legend, "",
        table, "",
        "- **all consumed again**: from the event (the 11th consumer's `subscribe()` call; the "
        "SIGKILL) to the first record consumed on the last partition to resume, each partition "
        "counted once its final owner has consumed from it after the event and after its last "
        "assign callback. It includes the session timeout in the kill case.",
        "- **max gap**: the longest time any partition went without a record being consumed, "
        "over intervals that overlap the span from the event to that last resume (the gap that "
        "straddles the event counts). The record rate per partition limits the resolution: the "
        "\"steady max gap\" column of the detail table is the same measure over the "
        f"{args.baseline_s:.0f} s before the event, i.e. the noise floor.",
        "- **max gap of unmoved partitions**: the same, over partitions whose owner after the "
        "rebalance is the owner before it (eager rebalancing still stops them).",
        "- **moved**: partitions whose owner after the rebalance differs from the owner before "
        "(in the kill case this includes the killed consumer's partitions).",
        "",
        "## Details", "",
        detail_table(ordered), "",
        "- **last callback**: from the event to the last assign/revoke callback of the rebalance "
        "on any member (the group is stable from there on).",
        "- **max record age**: the oldest record consumed after the event and up to the last "
        "resume, as consume time minus produce time; in brackets the same over the steady window "
        "before. Records consumed again after a kill (from the last auto-commit) count too.",
        "- **broker group log**: INFO lines of the group in the broker's log from 0.5 s before "
        "the event to stable (Partita; Tansu logs no group events at its default level).",
        "",
        case_table(ordered), "",
        "- **bench CPU s**: the producer, the consumers and this script; **other processes**: "
        "the rest of the machine's busy time over the case, in cores (noise if well above 0).",
        "",
    ]
    failures = [r for r in ordered if not r.ok]
    if failures:
        lines += ["## Failures", ""]
        for r in failures:
            lines.append(f"- {r.broker} {r.partitions}p {r.mode.name}: {r.reason}")
            for ev in r.events.values():
                if ev.member_errors:
                    lines.append(f"  - client errors after {ev.name}: {ev.member_errors}")
        lines.append("")
    lines += ["## Broker group log around each event", "",
              "Times relative to the event.", ""]
    for r in ordered:
        for name, ev in r.events.items():
            if not ev.broker_events and not ev.member_errors:
                continue
            lines.append(f"{r.broker}, {r.partitions} partitions, {r.mode.name}, {name}:")
            lines.append("")
            lines.append("```")
            lines += ev.broker_events[:40]
            if len(ev.broker_events) > 40:
                lines.append(f"... {len(ev.broker_events) - 40} more")
            for msg in ev.member_errors:
                lines.append(f"client error: {msg}")
            lines.append("```")
            lines.append("")
    lines += [f"Run directory (broker logs, client stderr, per-case summary.json): `{rundir}`", ""]
    notes = sorted({n for r in ordered for n in r.notes if n.startswith("consumer conf")})
    lines += [f"- {n}" for n in notes] + [""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(x for x in lines if x is not None))
    log(f"wrote {out}")
    return 0 if all(r.ok for r in ordered) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_member":
        member_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_producer":
        producer_main(sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
