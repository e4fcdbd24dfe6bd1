#!/usr/bin/env python3
"""Share-group benchmark (issue 8, item 7): one partition drained by 1, 2, 4 and 8 share
consumers, beside a classic consumer group on the same topic.

    python3 bench/share_groups.py [--records 3000] [--delay-ms 5] [--sizes 1,2,4,8]
        [--classic-sizes 1,2] [--max-poll-records 10] [--run-timeout 120] [--no-write]

A fresh Partita broker (private copy of the binary, fresh data directory) gets a one-partition
topic pre-filled with --records records. Then, for each size n, a new share group (with
share.auto.offset.reset=earliest) of n consumer processes (confluent-kafka ShareConsumer,
implicit acknowledgement, max.poll.records as given) drains the topic, each consumer sleeping
--delay-ms per record (the "processing"). The classic group rows do the same with n classic
consumers (confluent-kafka Consumer, auto-commit), of which only one can own the partition.
Each run stops by itself once every record was processed, or after --run-timeout seconds.

All consumer processes of a run are started and have created their consumer before any of them
subscribes (a "go" line on stdin), so the group forms at the same moment for every size.
records/s = records / (time the last record was processed - time the first record arrived).

It prints a table and writes it with the command, date, machine and broker binary to
bench/results/share-groups-<date>.md (not with --no-write).

Internal sub-command (spawned by the benchmark itself): `_member share|classic ...`.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchlib import (CHILDREN, REPO, Broker, emit, free_port, git_desc, machine_busy_seconds,
                      machine_info, md_table, proc_cpu_seconds)


def log(msg: str) -> None:
    print(f"[share-groups {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================== child: member


def member_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["share", "classic"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--max-poll-records", type=int, default=None)
    a = ap.parse_args(argv)
    from confluent_kafka import Consumer, ShareConsumer

    common = {"bootstrap.servers": a.bootstrap, "group.id": a.group,
              "error_cb": lambda e: emit(ev="error", msg=str(e))}
    if a.kind == "share":
        conf = dict(common)
        if a.max_poll_records:
            conf["max.poll.records"] = a.max_poll_records
        c = ShareConsumer(conf)

        def batch():
            return c.poll(0.2)
    else:
        c = Consumer({**common, "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 1000, "fetch.wait.max.ms": 100,
                      "enable.partition.eof": False})

        def batch():
            return c.consume(num_messages=a.max_poll_records or 10, timeout=0.2)

    stop = threading.Event()
    emit(ev="created")
    if sys.stdin.readline().strip() != "go":
        return
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    c.subscribe([a.topic])
    delay = a.delay_ms / 1000.0
    while not stop.is_set():
        msgs = batch()
        for m in msgs:
            if m.error():
                emit(ev="error", msg=str(m.error()))
                continue
            t_recv = time.time()
            time.sleep(delay)
            emit(ev="rec", o=m.offset(), r=t_recv, d=time.time())
    try:
        c.close()
    except Exception as exc:  # noqa: BLE001
        emit(ev="error", msg=f"close: {exc!r}")
    emit(ev="closed")


# =============================================================================== parent


class Member:
    def __init__(self, name: str, argv: list[str], stderr_path: Path):
        self.name = name
        self.lock = threading.Lock()
        self.recs: list[dict] = []
        self.errors: list[str] = []
        self.created = threading.Event()
        self.closed = threading.Event()
        self.err = open(stderr_path, "wb")
        self.proc = CHILDREN.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=self.err, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind = ev.get("ev")
            with self.lock:
                if kind == "rec":
                    self.recs.append(ev)
                elif kind == "error":
                    self.errors.append(ev["msg"])
            if kind == "created":
                self.created.set()
            elif kind == "closed":
                self.closed.set()

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def finish(self, timeout: float = 20.0) -> None:
        self.send("stop")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def pick_partita_bin() -> tuple[Path, str]:
    """target/release/partita only if it was built after the last commit, else target/debug."""
    rel, deb = REPO / "target/release/partita", REPO / "target/debug/partita"
    try:
        last_commit = int(subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
                                         capture_output=True, text=True, timeout=10)
                          .stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        last_commit = None
    if rel.exists() and last_commit is not None and rel.stat().st_mtime > last_commit:
        return rel, "release build, newer than the last commit"
    why = ("target/release/partita is older than the last commit" if rel.exists()
           else "there is no release build")
    return deb, f"debug build (unoptimized, slower than a release build): {why}"


def fill_topic(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md and md.error is None and md.partitions and md.partitions[0].leader >= 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"topic {topic} not ready")
        time.sleep(0.1)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    failed = []
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=f"rec-{i:07d}".encode(), partition=0,
                          on_delivery=lambda e, _m: e and failed.append(e))
                break
            except BufferError:
                p.poll(0.1)
    if p.flush(60) or failed:
        raise SystemExit(f"pre-fill failed: {failed[:3]}")


def set_earliest(bootstrap: str, group: str) -> None:
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource("GROUP", group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


def run_case(kind: str, n: int, broker: Broker, topic: str, args, rundir: Path) -> dict:
    group = f"bench-{kind}-{n}-{uuid.uuid4().hex[:8]}"
    if kind == "share":
        set_earliest(broker.bootstrap, group)
    members = []
    for i in range(n):
        argv = [sys.executable, str(Path(__file__).resolve()), "_member", kind,
                "--bootstrap", broker.bootstrap, "--group", group, "--topic", topic,
                "--delay-ms", str(args.delay_ms)]
        if args.max_poll_records:
            argv += ["--max-poll-records", str(args.max_poll_records)]
        members.append(Member(f"{kind}{n}-m{i}", argv, rundir / f"{kind}{n}-m{i}.stderr"))
    res = {"kind": kind, "n": n, "group": group}
    try:
        for m in members:
            if not m.created.wait(60):
                res["failed"] = f"member {m.name} did not start"
                return res
        cpu0 = proc_cpu_seconds(broker.proc.pid) or 0.0
        busy0 = machine_busy_seconds()
        t_go = time.time()
        for m in members:
            m.send("go")
        deadline = time.monotonic() + args.run_timeout
        while True:
            done = set()
            for m in members:
                with m.lock:
                    done.update(r["o"] for r in m.recs)
            if len(done) >= args.records:
                break
            if time.monotonic() > deadline:
                res["failed"] = f"timeout after {args.run_timeout} s: {len(done)}/{args.records}"
                break
            if any(m.proc.poll() is not None for m in members):
                res["failed"] = "a member exited: " + "; ".join(
                    f"{m.name}: {m.errors[-3:]}" for m in members if m.proc.poll() is not None)
                break
            time.sleep(0.05)
        wall = time.time() - t_go
        res["broker_cpu_s"] = (proc_cpu_seconds(broker.proc.pid) or 0.0) - cpu0
        res["machine_cores"] = (machine_busy_seconds() - busy0) / wall if wall > 0 else 0.0
    finally:
        for m in members:
            m.send("stop")
        for m in members:
            m.finish()
    recs = [r for m in members for r in m.recs]
    res["per_member"] = [len(m.recs) for m in members]
    res["errors"] = [e for m in members for e in m.errors][:5]
    if recs:
        t_first = min(r["r"] for r in recs)
        first_done = {}
        for r in sorted(recs, key=lambda r: r["d"]):
            first_done.setdefault(r["o"], r["d"])
        t_last = max(first_done.values())
        res["join_s"] = t_first - t_go
        res["elapsed_s"] = t_last - t_first
        res["distinct"] = len(first_done)
        res["dups"] = len(recs) - len(first_done)
        if "failed" not in res and res["elapsed_s"] > 0:
            res["rate"] = len(first_done) / res["elapsed_s"]
    return res


def fmt_row(r: dict, ideal: float) -> list[str]:
    name = (f"share group, {r['n']} consumer{'s' if r['n'] > 1 else ''}" if r["kind"] == "share"
            else f"classic group, {r['n']} consumer{'s' if r['n'] > 1 else ''}")
    if "rate" not in r:
        return [name, f"failed: {r.get('failed', 'no records')}", "", "", "", "", "", ""]
    return [name, f"{r['rate']:.0f}", f"{r['rate'] / ideal:.2f}", f"{r['elapsed_s']:.2f}",
            f"{r['join_s']:.2f}", " / ".join(str(x) for x in r["per_member"]), str(r["dups"]),
            f"{r['broker_cpu_s']:.2f}"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--classic-sizes", default="1,2")
    ap.add_argument("--max-poll-records", type=int, default=10)
    ap.add_argument("--run-timeout", type=float, default=120.0)
    ap.add_argument("--partita-bin", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.time()
    load0 = os.getloadavg()

    if args.partita_bin:
        binary, why = args.partita_bin.resolve(), "given with --partita-bin"
    else:
        binary, why = pick_partita_bin()
    if not binary.exists():
        raise SystemExit(f"no Partita binary at {binary}")
    built = dt.datetime.fromtimestamp(binary.stat().st_mtime, dt.timezone.utc)
    rundir = Path(tempfile.mkdtemp(prefix="partita-share-bench-"))
    atexit.register(CHILDREN.kill_all)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (CHILDREN.kill_all(), sys.exit(130)))
    private = rundir / "partita"
    shutil.copy2(binary, private)
    log(f"broker {binary} ({why}); run directory {rundir}")

    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = Broker("partita", [str(private), "broker", "--listen", bootstrap, "--advertised",
                                bootstrap, "--data-dir", str(rundir / "data"),
                                "--set", "http.listen="], port, rundir)
    try:
        broker.start()
    except RuntimeError as exc:
        raise SystemExit(f"broker {exc}") from None
    topic = f"share-bench-{uuid.uuid4().hex[:8]}"
    try:
        t0 = time.time()
        fill_topic(broker.bootstrap, topic, args.records)
        log(f"topic {topic}: {args.records} records in {time.time() - t0:.1f}s")
        results = []
        cases = [("share", int(n)) for n in args.sizes.split(",") if n] + \
                [("classic", int(n)) for n in args.classic_sizes.split(",") if n]
        for kind, n in cases:
            log(f"{kind} group, {n} consumer(s) ...")
            r = run_case(kind, n, broker, topic, args, rundir)
            results.append(r)
            log(f"  -> {r.get('rate', 0):.0f} records/s, per member {r.get('per_member')}, "
                f"dups {r.get('dups')}, {r.get('failed', 'ok')}; errors {r.get('errors')}")
    finally:
        broker.stop(timeout=30)

    ideal = 1000.0 / args.delay_ms
    header = ["group", "records/s", "x one consumer's ceiling", "drain s", "start s",
              "records per consumer", "delivered twice", "broker CPU s"]
    table = md_table(header, [fmt_row(r, ideal) for r in results])
    print(table)
    if args.no_write:
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    out = REPO / "bench" / "results" / f"share-groups-{now.strftime('%Y-%m-%d')}.md"
    cmd = "python3 bench/share_groups.py" + ("".join(" " + shlex.quote(a) for a in argv))
    load1 = os.getloadavg()
    busy = ", ".join(f"{r['kind']} {r['n']}: {r.get('machine_cores', 0):.2f}" for r in results)
    notes = [f"- {r['kind']} {r['n']}: {r['failed']}" for r in results if "failed" in r]
    errors = [f"- {r['kind']} {r['n']}: {r['errors']}" for r in results if r.get("errors")]
    text = f"""# Share-group benchmark, {now.strftime('%Y-%m-%d %H:%M')} UTC

Command: `{cmd}`  
Date: {now.isoformat(timespec='seconds')}, {(time.time() - t_start) / 60:.1f} min  
Machine: {machine_info()}  
Load average (1/5/15 min) at start: {'/'.join(f'{x:.2f}' for x in load0)}, at end: {'/'.join(f'{x:.2f}' for x in load1)}  
Partita: `{binary.relative_to(REPO) if binary.is_relative_to(REPO) else binary}` ({why}; built {built.strftime('%Y-%m-%d %H:%M')} UTC), repository HEAD {git_desc()}, default settings (`--set http.listen=`)  
Clients: confluent-kafka / librdkafka {_libversion()}, one process per consumer  
Load: one topic with 1 partition, pre-filled with {args.records} records of 11 B; every consumer sleeps {args.delay_ms:g} ms per record (so one consumer can process at most {ideal:.0f} records/s); share consumers: `ShareConsumer`, implicit acknowledgement, `max.poll.records={args.max_poll_records}`, group config `share.auto.offset.reset=earliest`; classic consumers: `Consumer`, `auto.offset.reset=earliest`, auto-commit every 1 s, `consume(num_messages={args.max_poll_records})`. Each row is a new group on the same topic.

## Results

{table}

- **records/s**: distinct records processed / (time the last record finished processing - time the first record arrived at any consumer).
- **x one consumer's ceiling**: records/s over {ideal:.0f} (1000 ms / {args.delay_ms:g} ms), the most a single consumer can process.
- **drain s**: the time that rate is taken over. **start s**: from the moment every consumer process was told to subscribe to the first record arriving (joining the group, first fetch).
- **records per consumer**: records each consumer processed (a classic group on one partition gives them all to one member).
- **delivered twice**: records processed more than once (share groups: a record whose lock expired or was released; classic: re-consumed after a rebalance).
- **broker CPU s**: the broker's user+system CPU over the run. Average busy cores of the whole machine (broker and clients included) during each run: {busy}.

{"## Failures" + chr(10) + chr(10) + chr(10).join(notes) + chr(10) if notes else ""}{"## Client errors" + chr(10) + chr(10) + chr(10).join(errors) + chr(10) if errors else ""}
Consumer stderr and the broker log stay in `{rundir}`.
"""
    out.write_text(text)
    log(f"wrote {out}")
    return 0


def _libversion() -> str:
    try:
        import confluent_kafka
        v = confluent_kafka.version()
        v = v[0] if isinstance(v, tuple) else v
        return f"{v} / {confluent_kafka.libversion()[0]}"
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_member":
        member_main(sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
