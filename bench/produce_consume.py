#!/usr/bin/env python3
"""Produce/consume benchmark: Partita vs Tansu 0.6.0, driven by librdkafka's rdkafka_performance.

Run through bench/produce_consume.sh (after bench/setup.sh). See bench/README.md.

For each broker, one at a time:
  1. start it on a free 127.0.0.1 port (Partita: fresh --data-dir; Tansu: memory:// storage),
  2. create the benchmark topics (same partition count on both) with the AdminClient,
  3. produce 100 B and 1 KiB records with acks=1 and acks=all (rdkafka_performance -P),
  4. consume the acks=1 topics back from the beginning (rdkafka_performance -C, all partitions),
  5. measure produce latency (rdkafka_performance -P -l -A at a fixed rate, acks=all),
sampling the broker's CPU time (/proc/PID/stat utime+stime) around every step and its
peak RSS (VmHWM in /proc/PID/status) at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("PARTITA_BENCH_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "partita-bench"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc helpers


def proc_cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of the whole process (all threads), in seconds."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime of the whole process (all threads), in seconds."""
    v = proc_cpu_split(pid)
    return None if v is None else v[0] + v[1]


def machine_busy_seconds() -> float:
    """CPU time spent busy by the whole machine (all CPUs) since boot, from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_info() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = proc_meminfo_total()
    return {
        "nproc": str(os.cpu_count()),
        "model name": model,
        "memory": mem,
        "kernel": platform.release(),
    }


def write_result(name: str, title: str, command: str, about: str, table: str,
                 at: dt.datetime | None = None) -> Path:
    """Writes bench/results/NAME-DATE.md: the title and time, the command, the machine, what
    was run (`about`), and the table; returns its path."""
    at = at or dt.datetime.now(dt.timezone.utc)
    out = REPO / "bench" / "results" / f"{name}-{at.strftime('%Y-%m-%d')}.md"
    out.write_text(
        f"# {title}, {at.strftime('%Y-%m-%d %H:%M UTC')}\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {', '.join(f'{k} {v}' for k, v in machine_info().items())}  \n"
        f"{about}\n\n{table}\n")
    print(f"wrote {out}")
    return out


def proc_meminfo_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


# --------------------------------------------------------------------------- brokers


@dataclass
class Broker:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    workdir: Path
    proc: subprocess.Popen | None = None
    log_file: object = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_file = open(self.log_path, "wb")
        log(f"starting {self.name}: {shlex.join(self.argv)}")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} at start-up:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.bootstrap} within 30 s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid) if self.alive() else None

    def cpu_split(self) -> tuple[float, float] | None:
        return proc_cpu_split(self.proc.pid) if self.alive() else None

    def hwm_kib(self) -> int | None:
        return proc_status_kib(self.proc.pid, "VmHWM") if self.alive() else None

    def rss_kib(self) -> int | None:
        return proc_status_kib(self.proc.pid, "VmRSS") if self.alive() else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop on SIGINT within 20 s; SIGKILL")
                self.proc.kill()
                self.proc.wait()
        if self.log_file:
            self.log_file.close()

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def make_broker(name: str, rundir: Path, args) -> Broker:
    port = free_port()
    workdir = rundir / name
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "partita":
        data_dir = Path(tempfile.mkdtemp(prefix="partita-bench-data-", dir=args.data_parent))
        argv = [
            str(args.partita_bin), "broker",
            "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(data_dir),
        ] + [x for kv in args.partita_set for x in ("--set", kv)]
        b = Broker(name, argv, port, workdir / "broker.log", workdir)
        b.data_dir = data_dir  # type: ignore[attr-defined]
        return b
    if name == "tansu":
        argv = [
            str(args.tansu_bin), "broker",
            "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
            "--storage-engine", "memory://tansu/",
        ]
        return Broker(name, argv, port, workdir / "broker.log", workdir)
    raise SystemExit(f"unknown broker {name}")


# --------------------------------------------------------------------------- steps


@dataclass
class StepResult:
    key: str
    ok: bool = False
    reason: str = ""
    msgs: int = 0
    bytes: int = 0
    elapsed_ms: float = 0.0  # as reported by rdkafka_performance
    wall_s: float = 0.0  # wall time of the client process
    broker_cpu_s: float | None = None
    broker_sys_s: float | None = None
    other_cpu_s: float | None = None  # everything else on the machine during the step
    client_cpu_s: float | None = None
    lat_us: list[int] = field(default_factory=list)
    moved_bytes: int | None = None  # bytes the broker handled in this step (CPU per GB)
    total_delivered: int | None = None
    cmd: str = ""
    out_path: Path | None = None

    @property
    def msgs_per_s(self) -> float:
        return self.msgs / (self.elapsed_ms / 1000) if self.elapsed_ms else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / (self.elapsed_ms / 1000) if self.elapsed_ms else 0.0


PRODUCE_RE = re.compile(
    r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset (-?\d+), (\d+) failed\) "
    r"in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s, (\d+) produce failures, (\d+) in queue"
)
CONSUME_RE = re.compile(
    r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)"
)


def run_client(argv: list[str], out_path: Path, timeout: float,
               duration: float | None = None) -> tuple[int | None, float, float, bool]:
    """Run a client; return (exit status, wall seconds, client cpu seconds, timed_out).

    With duration, the client gets SIGINT after that many seconds (rdkafka_performance then
    stops producing and prints its summary); that is the normal end, not a time-out."""
    t0 = time.monotonic()
    interrupted = False
    timed_out = False
    with open(out_path, "wb") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while True:
            pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic() - t0
            if duration is not None and not interrupted and now >= duration:
                p.send_signal(signal.SIGINT)
                interrupted = True
            if now > timeout + (duration or 0):
                timed_out = True
                if not interrupted:
                    p.send_signal(signal.SIGINT)  # rdkafka_performance prints its summary
                    time.sleep(3)
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
                _, st, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        status = os.waitstatus_to_exitcode(st)
        cpu = ru.ru_utime + ru.ru_stime
        p.returncode = status  # keep Popen from reaping again
    return status, time.monotonic() - t0, cpu, timed_out


def interesting_lines(text: str, n: int = 8) -> str:
    keep = [
        l for l in text.splitlines()
        if re.search(r"error|fail|ERR|timed out|refused|disconnect|unknown", l, re.I)
    ]
    return "\n".join(keep[:n])


def run_step(broker: Broker, key: str, argv: list[str], rundir: Path, timeout: float,
             expect_msgs: int | None, kind: str, lat_path: Path | None = None,
             duration: float | None = None, record_size: int = 0) -> StepResult:
    """Run one rdkafka_performance step against a running broker.

    produce with duration: time-based; throughput is taken from the last periodic report
    before the SIGINT (cumulative delivered records over elapsed time since start).
    produce without duration: count-based; expect_msgs must all be delivered.
    consume: reads until end of every partition; at least expect_msgs must arrive."""
    r = StepResult(key=key, cmd=shlex.join(argv))
    r.out_path = rundir / broker.name / f"{key}.out"
    if not broker.alive():
        r.reason = "broker not running (exited earlier)"
        return r
    cpu0 = broker.cpu_split()
    busy0 = machine_busy_seconds()
    log(f"{broker.name}: {key}: {shlex.join(argv)}")
    status, wall, ccpu, timed_out = run_client(argv, r.out_path, timeout, duration)
    cpu1 = broker.cpu_split()
    busy1 = machine_busy_seconds()
    r.wall_s, r.client_cpu_s = wall, ccpu
    if cpu0 is not None and cpu1 is not None:
        r.broker_cpu_s = sum(cpu1) - sum(cpu0)
        r.broker_sys_s = cpu1[1] - cpu0[1]
        r.other_cpu_s = max(0.0, (busy1 - busy0) - r.broker_cpu_s - ccpu)
    text = r.out_path.read_text(errors="replace")
    if kind == "produce":
        ms = PRODUCE_RE.findall(text)
        if ms:
            last = ms[-1]
            sent, _b, delivered, _off, failed, elapsed, _r, _mb, _pf, inq = (
                float(x) if "." in x else int(x) for x in last)
            if duration is None:
                r.msgs, r.elapsed_ms = delivered, float(elapsed)
                r.bytes = delivered * record_size
                if delivered == expect_msgs and failed == 0:
                    r.ok = True
                else:
                    r.reason = f"{delivered} of {expect_msgs} delivered, {failed} failed"
            else:
                # The final summary comes after SIGINT; its time includes shutdown. Use the
                # last periodic report before it for the rate, the summary for the volume.
                periodic = ms[:-1] if len(ms) > 1 else ms
                p = periodic[-1]
                r.msgs, r.elapsed_ms = int(p[2]), float(p[5])
                r.bytes = r.msgs * record_size
                # Volume the broker handled in this step (for CPU per GB): records that left
                # the client's queue (delivered or in flight at the stop).
                r.moved_bytes = (sent - inq) * record_size
                r.total_delivered = delivered
                if failed:
                    r.reason = f"{failed} delivery failures"
                elif r.msgs == 0:
                    r.reason = "no record delivered"
                elif len(ms) < 2:
                    r.reason = "no periodic report before the stop"
                else:
                    r.ok = True
    else:
        ms = CONSUME_RE.findall(text)
        if ms:
            m = ms[-1]
            r.msgs, r.bytes, r.elapsed_ms = int(m[0]), int(m[1]), float(m[2])
            r.moved_bytes = r.bytes
            if expect_msgs is None or r.msgs >= expect_msgs:
                r.ok = True
            else:
                r.reason = f"consumed {r.msgs} of {expect_msgs}"
    if lat_path is not None and lat_path.exists():
        r.lat_us = [int(x) for x in lat_path.read_text().split() if x.strip().isdigit()]
    if timed_out:
        r.ok = False
        r.reason = (r.reason + "; " if r.reason else "") + f"timed out after {timeout:.0f} s"
    elif status != 0 and r.ok and duration is None:
        # (a time-based producer stopped with SIGINT exits 1 because records were still in
        # flight; that is expected)
        r.ok = False
        r.reason = f"client exit status {status}"
    elif not r.reason and not r.ok:
        r.reason = f"no summary line from rdkafka_performance (exit {status})"
    if not broker.alive():
        r.ok = False
        r.reason = (r.reason + "; " if r.reason else "") + \
            f"broker exited with {broker.proc.returncode}"
    if not r.ok:
        extra = interesting_lines(text)
        log(f"{broker.name}: {key} FAILED: {r.reason}\n{extra}")
    else:
        log(f"{broker.name}: {key}: {r.msgs} msgs {r.msgs_per_s:,.0f} msg/s "
            f"{r.mb_per_s:.1f} MB/s broker cpu {r.broker_cpu_s:.2f}s client cpu {ccpu:.2f}s")
    return r


def create_topics(broker: Broker, topics: list[str], partitions: int) -> str:
    """Create topics with the AdminClient; return '' or an error description."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futs = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics],
        request_timeout=30,
    )
    errors = []
    for t, f in futs.items():
        try:
            f.result(timeout=40)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{t}: {e}")
    # Wait until metadata shows every partition with a leader.
    deadline = time.time() + 30
    missing = topics
    while time.time() < deadline:
        md = admin.list_topics(timeout=10)
        missing = [
            t for t in topics
            if t not in md.topics or md.topics[t].error is not None
            or len(md.topics[t].partitions) != partitions
            or any(p.leader < 0 for p in md.topics[t].partitions.values())
        ]
        if not missing:
            break
        time.sleep(0.5)
    if missing:
        errors.append(f"metadata does not show {partitions} led partitions for {missing}")
    return "; ".join(errors)


# --------------------------------------------------------------------------- the run

SIZES = [("100b", 100), ("1k", 1024)]
ACKS = [("acks1", "1"), ("acksall", "-1")]


def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait up to max_wait s until the machine is below threshold busy cores over 3 s."""
    deadline = time.time() + max_wait
    while True:
        b0 = machine_busy_seconds()
        time.sleep(3)
        busy = (machine_busy_seconds() - b0) / 3
        if busy < threshold or time.time() >= deadline:
            return busy
        log(f"machine busy ({busy:.2f} cores in use by other work); waiting for it to quiet down")


def bench_broker(name: str, args, rundir: Path) -> dict:
    res: dict = {"name": name, "steps": {}, "error": "", "peak_rss_kib": None, "log_tail": ""}
    b = make_broker(name, rundir, args)
    res["argv"] = shlex.join(b.argv)
    perf = str(args.perf_bin)
    topics = {}
    for sz, _ in SIZES:
        for ak, _ in ACKS:
            topics[(sz, ak)] = f"bench-{sz}-{ak}"
    lat_topic = "bench-latency"
    try:
        if args.wait_quiet > 0:
            busy = wait_quiet(args.wait_quiet)
            log(f"{name}: starting with {busy:.2f} cores busy elsewhere")
        b.start()
        res["cpu_at_start"] = b.cpu()
        err = create_topics(b, list(topics.values()) + [lat_topic], args.partitions)
        if err:
            log(f"{name}: topic creation problem: {err}")
            res["topic_error"] = err
        common = ["-b", b.bootstrap, "-X", "client.id=partita-bench"]
        # Produce rows.
        for sz, size in SIZES:
            for ak, acks in ACKS:
                key = f"produce-{sz}-{ak}"
                argv = [perf, "-P", "-t", topics[(sz, ak)], "-s", str(size),
                        "-a", acks, "-i", "250",
                        "-X", "sticky.partitioning.linger.ms=0"] + common
                res["steps"][key] = [
                    run_step(b, f"{key}-run{i + 1}", argv, rundir, args.step_timeout,
                             None, "produce", duration=args.produce_seconds, record_size=size)
                    for i in range(args.reps)]
        # Consume rows: read the acks=1 topics back from the beginning, all partitions.
        for sz, _size in SIZES:
            key = f"consume-{sz}"
            # Every record the producer runs saw delivered must come back.
            expect = sum(s.total_delivered or 0 for s in res["steps"][f"produce-{sz}-acks1"])
            argv = [perf, "-C", "-t", topics[(sz, "acks1")], "-o", "beginning", "-e",
                    "-i", "2000"]
            for p in range(args.partitions):
                argv += ["-p", str(p)]
            argv += common
            res["steps"][key] = [
                run_step(b, f"{key}-run{i + 1}", argv, rundir, args.step_timeout, expect, "consume")
                for i in range(args.reps)]
        # Latency row.
        lat_path = rundir / name / "latency-us.txt"
        argv = [perf, "-P", "-t", lat_topic, "-s", "100", "-c", str(args.lat_count),
                "-r", str(args.lat_rate), "-a", "-1", "-l", "-A", str(lat_path),
                "-X", f"linger.ms={args.lat_linger_ms}", "-i", "2000"] + common
        res["steps"]["latency"] = [run_step(b, "latency", argv, rundir,
                                            args.step_timeout, args.lat_count, "produce",
                                            lat_path=lat_path, record_size=100)]
        res["cpu_at_end"] = b.cpu()
        res["peak_rss_kib"] = b.hwm_kib()
        res["rss_end_kib"] = b.rss_kib()
        if not b.alive():
            res["error"] = f"broker exited with status {b.proc.returncode}"
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
        log(f"{name}: error: {e}")
    finally:
        if res["peak_rss_kib"] is None and b.alive():
            res["peak_rss_kib"] = b.hwm_kib()
        b.stop()
        res["exit_status"] = b.proc.returncode if b.proc else None
        res["log_tail"] = b.log_tail(30)
        data_dir = getattr(b, "data_dir", None)
        if data_dir is not None:
            try:
                res["data_dir_bytes"] = sum(
                    f.stat().st_size for f in Path(data_dir).rglob("*") if f.is_file())
            except OSError:
                pass
            if not args.keep_data:
                shutil.rmtree(data_dir, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- table


def pct(vals: list[int], q: float) -> float:
    s = sorted(vals)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


def median_run(runs: list[StepResult]) -> StepResult:
    """The run with the median throughput (the lower middle one for an even count)."""
    s = sorted(runs, key=lambda r: r.msgs_per_s)
    return s[(len(s) - 1) // 2]


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def build_rows(results: list[dict], args) -> list[tuple[str, list[str]]]:
    rows: list[tuple[str, list[str]]] = []

    def step_cell(res, key, fn):
        runs: list[StepResult] | None = res["steps"].get(key)
        if not runs:
            return f"failed: {res['error'] or 'not run'}"
        bad = [s for s in runs if not s.ok]
        if bad:
            return f"failed ({len(bad)} of {len(runs)} runs): {bad[0].reason}"
        return fn(median_run(runs))

    labels = {"100b": "100 B", "1k": "1 KiB"}
    rows.append((f"topics created ({args.partitions} partitions each, CreateTopics)",
                 ["failed: " + r["topic_error"] if r.get("topic_error")
                  else ("failed: " + r["error"] if r["error"] and "cpu_at_start" not in r else "ok")
                  for r in results]))
    for sz, _ in SIZES:
        for ak, _ in ACKS:
            key = f"produce-{sz}-{ak}"
            lab = f"produce {labels[sz]} {'acks=1' if ak == 'acks1' else 'acks=all'}"
            rows.append((f"{lab}: records/s",
                         [step_cell(r, key, lambda s: fmt_rate(s.msgs_per_s)) for r in results]))
            rows.append((f"{lab}: MB/s",
                         [step_cell(r, key, lambda s: f"{s.mb_per_s:.1f}") for r in results]))
    for sz, _ in SIZES:
        key = f"consume-{sz}"
        lab = f"consume {labels[sz]} (6 partitions, from beginning)".replace("6", str(args.partitions))
        rows.append((f"{lab}: records/s",
                     [step_cell(r, key, lambda s: fmt_rate(s.msgs_per_s)) for r in results]))
        rows.append((f"{lab}: MB/s",
                     [step_cell(r, key, lambda s: f"{s.mb_per_s:.1f}") for r in results]))
    lat_lab = f"produce latency, 100 B acks=all at {args.lat_rate} msg/s, linger.ms={args.lat_linger_ms}"
    for q in (50, 99):
        rows.append((f"{lat_lab}: p{q} ms",
                     [step_cell(r, "latency",
                                lambda s, q=q: f"{pct(s.lat_us, q) / 1000:.2f}" if s.lat_us
                                else "no samples")
                      for r in results]))

    # CPU per GB moved.
    def cpu_per_gb(res, keys, attr="broker_cpu_s"):
        cpu = 0.0
        nbytes = 0
        for k in keys:
            for s in res["steps"].get(k) or [None]:
                if s is None or not s.ok or getattr(s, attr) is None:
                    return None
                cpu += getattr(s, attr)
                nbytes += s.moved_bytes if s.moved_bytes is not None else s.bytes
        return cpu, nbytes

    def client_cpu_per_gb(res, keys):
        return cpu_per_gb(res, keys, "client_cpu_s")

    prod_keys = [f"produce-{sz}-{ak}" for sz, _ in SIZES for ak, _ in ACKS]
    cons_keys = [f"consume-{sz}" for sz, _ in SIZES]
    for lab, keys in (
        ("broker CPU s per GB produced (4 produce rows)", prod_keys),
        ("broker CPU s per GB consumed (2 consume rows)", cons_keys),
        ("broker CPU s per GB moved (produce + consume)", prod_keys + cons_keys),
    ):
        cells = []
        for r in results:
            v = cpu_per_gb(r, keys)
            cells.append("failed (a row failed)" if v is None else f"{v[0] / (v[1] / 1e9):.2f}")
        rows.append((lab, cells))
    cells = []
    for r in results:
        v = cpu_per_gb(r, prod_keys + cons_keys, "broker_sys_s")
        cells.append("failed (a row failed)" if v is None else f"{v[0] / (v[1] / 1e9):.2f}")
    rows.append(("  of which kernel (stime)", cells))
    cells = []
    for r in results:
        v = client_cpu_per_gb(r, prod_keys + cons_keys)
        cells.append("failed (a row failed)" if v is None else f"{v[0] / (v[1] / 1e9):.2f}")
    rows.append(("client (rdkafka_performance) CPU s per GB moved, for scale", cells))
    cells = []
    for r in results:
        a, e = r.get("cpu_at_start"), r.get("cpu_at_end")
        cells.append(f"{e - a:.1f}" if a is not None and e is not None else "n/a")
    rows.append(("broker CPU s, whole run (all rows + idle gaps)", cells))
    cells = []
    for r in results:
        runs = [s for k, rs in r["steps"].items() for s in rs if s.other_cpu_s is not None]
        busy = sum(s.other_cpu_s for s in runs)
        wall = sum(s.wall_s for s in runs)
        cells.append(f"{busy / wall:.2f}" if wall else "n/a")
    rows.append(("other processes' CPU during the steps, cores busy (noise)", cells))
    cells = []
    for r in results:
        tot = sum(s.moved_bytes or 0 for k, runs in r["steps"].items() if k != "latency"
                  for s in runs)
        cells.append(f"{tot / 1e9:.2f}")
    rows.append(("GB moved (payload bytes produced + consumed)", cells))
    cells = []
    for r in results:
        h = r.get("peak_rss_kib")
        cells.append(f"{h / 1024:.0f}" if h else f"n/a ({r['error'] or 'no /proc'})")
    rows.append(("broker peak RSS MiB (VmHWM)", cells))
    cells = []
    for r in results:
        h = r.get("peak_rss_kib")
        tot = sum(s.moved_bytes or 0 for k, runs in r["steps"].items() if k != "latency"
                  for s in runs)
        cells.append(f"{h / 1024 / (tot / 1e9):.0f}" if h and tot else "n/a")
    rows.append(("broker peak RSS MiB per GB moved", cells))
    return rows


def render_table(headers: list[str], rows: list[tuple[str, list[str]]]) -> str:
    widths = [max(len(headers[0]), *(len(r[0]) for r in rows))]
    for i in range(1, len(headers)):
        widths.append(max(len(headers[i]), *(len(r[1][i - 1]) for r in rows)))
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for lab, cells in rows:
        vals = [lab] + cells
        out.append("| " + vals[0].ljust(widths[0]) + " | "
                   + " | ".join(v.rjust(w) for v, w in zip(vals[1:], widths[1:])) + " |")
    return "\n".join(out)


def detail_table(results: list[dict]) -> str:
    hdr = ["broker", "step", "ok", "records", "MB", "client ms", "wall s",
           "broker CPU s", "of which sys", "client CPU s", "other CPU s"]
    rows = []
    for r in results:
        for s in (s for runs in r["steps"].values() for s in runs):
            rows.append([r["name"], s.key, "yes" if s.ok else f"NO: {s.reason}", str(s.msgs),
                         f"{s.bytes / 1e6:.1f}", f"{s.elapsed_ms:.0f}", f"{s.wall_s:.1f}",
                         "n/a" if s.broker_cpu_s is None else f"{s.broker_cpu_s:.2f}",
                         "n/a" if s.broker_sys_s is None else f"{s.broker_sys_s:.2f}",
                         "n/a" if s.client_cpu_s is None else f"{s.client_cpu_s:.2f}",
                         "n/a" if s.other_cpu_s is None else f"{s.other_cpu_s:.2f}"])
    w = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(hdr)]
    out = ["| " + " | ".join(h.ljust(wi) for h, wi in zip(hdr, w)) + " |",
           "|" + "|".join("-" * (wi + 2) for wi in w) + "|"]
    for x in rows:
        out.append("| " + " | ".join(v.ljust(wi) for v, wi in zip(x, w)) + " |")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", default="partita,tansu", help="comma-separated, in run order")
    ap.add_argument("--produce-seconds", type=float, default=2.0,
                    help="length of each produce run (time-based, see README)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3,
                    help="runs per produce/consume row; the table shows the median run")
    ap.add_argument("--lat-rate", type=int, default=1000, help="latency row: msgs/s")
    ap.add_argument("--lat-count", type=int, default=10_000, help="latency row: messages")
    ap.add_argument("--lat-linger-ms", type=int, default=0)
    ap.add_argument("--step-timeout", type=float, default=180)
    ap.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                    help="before each broker, wait up to this long for other work on the machine "
                         "to drop below 0.3 busy cores (0: do not wait)")
    ap.add_argument("--quick", action="store_true", help="1 s produce runs, 1 run per row (smoke test)")
    ap.add_argument("--partita-bin", type=Path, default=REPO / "target/release/partita")
    ap.add_argument("--partita-set", action="append", default=[], metavar="NAME=VALUE",
                    help="extra --set for Partita")
    ap.add_argument("--tansu-bin", type=Path, default=CACHE / "bin/tansu")
    ap.add_argument("--perf-bin", type=Path, default=CACHE / "bin/rdkafka_performance")
    ap.add_argument("--data-parent", default=None, help="parent dir of Partita's temporary data dir")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--results-dir", type=Path, default=REPO / "bench/results")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/*.md")
    args = ap.parse_args()
    if args.quick:
        args.produce_seconds = 1.0
        args.reps = 1
        args.lat_count //= 4

    names = [n.strip() for n in args.brokers.split(",") if n.strip()]
    for p, what in ((args.perf_bin, "rdkafka_performance"), (args.tansu_bin, "tansu"),
                    (args.partita_bin, "partita")):
        if what in ("tansu", "partita") and what not in names:
            continue
        if not os.access(p, os.X_OK):
            print(f"missing {what}: {p} (run bash bench/setup.sh)", file=sys.stderr)
            return 2

    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    rundir = CACHE / "runs" / stamp
    rundir.mkdir(parents=True, exist_ok=True)
    log(f"run directory (client output, broker logs): {rundir}")

    results = [bench_broker(n, args, rundir) for n in names]

    headers = ["measurement"] + [n.capitalize() for n in names]
    rows = build_rows(results, args)
    table = render_table(headers, rows)
    print()
    print(table)
    print()

    perf_ver = subprocess.run([str(args.perf_bin)], capture_output=True, text=True).stderr
    m = re.search(r"librdkafka version (\S+)", perf_ver)
    perf_ver = m.group(1) if m else "?"
    tansu_ver = subprocess.run([str(args.tansu_bin), "--version"], capture_output=True, text=True).stdout.strip()
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " (+ uncommitted changes under crates/)"
    except OSError:
        commit = "?"
    mi = machine_info()
    data_parent = args.data_parent or tempfile.gettempdir()
    fstype = subprocess.run(["stat", "-f", "-c", "%T", data_parent], capture_output=True,
                            text=True).stdout.strip()

    md = [f"# Produce/consume benchmark, {started.strftime('%Y-%m-%d %H:%M UTC')}", ""]
    md.append("Command: `" + " ".join(["bash bench/produce_consume.sh"] + sys.argv[1:]) + "`  ")
    md.append(f"Date: {started.isoformat(timespec='seconds')}  ")
    md.append(f"Machine: nproc={mi['nproc']}, model name: {mi['model name']}, "
              f"memory {mi['memory']}, kernel {mi['kernel']}  ")
    built = dt.datetime.fromtimestamp(args.partita_bin.stat().st_mtime, dt.timezone.utc)
    shown_bin = (args.partita_bin.relative_to(REPO) if args.partita_bin.is_relative_to(REPO)
                 else args.partita_bin)
    md.append(f"Partita: `{shown_bin}` built {built.strftime('%Y-%m-%d %H:%M UTC')}; repo HEAD at run "
              f"time {commit}; data dir on {fstype} under {data_parent}  ")
    md.append(f"Tansu: {tansu_ver}, storage memory://  ")
    load_end = os.getloadavg()
    md.append(f"Load average (1/5/15 min) at start: {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
              f"at end: {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} "
              f"(other work on the machine shares the cores with broker and client)  ")
    md.append(f"Load generator: librdkafka {perf_ver} examples/rdkafka_performance "
              f"(built from the rdkafka-sys crate's bundled source), default producer config "
              f"(linger.ms=5, batch.size 1 MB, no compression, idempotence off) except "
              f"sticky.partitioning.linger.ms=0, so keyless records spread over all partitions  ")
    md.append(f"Produce runs: {args.produce_seconds:g} s each (time-based: the rate is delivered records "
              f"over elapsed time at rdkafka_performance's last 250 ms report before it is stopped), "
              f"{args.reps} runs per row (into the same topic), table shows the median run; "
              f"each consume run reads the whole acks=1 topic from the beginning; "
              f"{args.partitions} partitions per topic, created with the AdminClient; "
              f"brokers run one at a time on the same machine as the client")
    md.append("")
    md.append(table)
    md.append("")
    md.append("Throughput is what rdkafka_performance reports (payload records and bytes over its own "
              "elapsed time; MB = 10^6 bytes). CPU is the broker process's utime+stime from "
              "/proc/PID/stat sampled around each step; peak RSS is VmHWM at the end of the run.")
    md.append("")
    noisy = [(r["name"], b) for r in results
             for b in [sum(s.other_cpu_s or 0 for rs in r["steps"].values() for s in rs)
                       / max(1e-9, sum(s.wall_s for rs in r["steps"].values() for s in rs))]
             if b > 0.3]
    if noisy:
        md.append("**Noisy run:** other processes kept "
                  + ", ".join(f"{b:.2f} cores busy during the {n} steps" for n, b in noisy)
                  + f" (of {mi['nproc']}); compare with care.")
        md.append("")
    md.append(f"Client output and broker logs: `<cache>/runs/{stamp}/` (`<cache>` = {CACHE}).")
    md.append("")
    md.append("## Per step")
    md.append("")
    md.append(detail_table(results))
    md.append("")
    md.append("## Commands")
    md.append("")
    for r in results:
        argv = r.get("argv", "").replace(str(CACHE), "<cache>").replace(str(REPO) + "/", "")
        md.append(f"- {r['name']} broker: `{argv}`")
        for k, runs in r["steps"].items():
            cmd = runs[0].cmd.replace(str(args.perf_bin), "rdkafka_performance")
            md.append(f"  - {k} (x{len(runs)}): `{cmd.replace(str(CACHE), '<cache>')}`")
    md.append("")
    problems = [r for r in results if r["error"] or r.get("topic_error")
                or any(not s.ok for runs in r["steps"].values() for s in runs)]
    if problems:
        md.append("## Failures")
        md.append("")
        for r in problems:
            md.append(f"### {r['name']}")
            md.append("")
            if r["error"]:
                md.append(f"- run error: {r['error']}")
            if r.get("topic_error"):
                md.append(f"- topic creation: {r['topic_error']}")
            for s in (s for runs in r["steps"].values() for s in runs):
                if not s.ok:
                    md.append(f"- {s.key}: {s.reason}")
                    lines = interesting_lines(s.out_path.read_text(errors="replace")
                                              if s.out_path and s.out_path.exists() else "")
                    if lines:
                        md.append("")
                        md.append("  ```")
                        md.extend("  " + l for l in lines.splitlines())
                        md.append("  ```")
            md.append("")
            md.append("Broker log tail:")
            md.append("")
            md.append("```")
            md.append(r.get("log_tail", ""))
            md.append("```")
            md.append("")
    text = "\n".join(md) + "\n"
    if not args.no_write:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out = args.results_dir / f"produce-consume-{started.strftime('%Y-%m-%d')}.md"
        if out.exists():
            out = args.results_dir / f"produce-consume-{stamp}.md"
        out.write_text(text)
        log(f"wrote {out}")
    (rundir / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
