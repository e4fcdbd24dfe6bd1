#!/usr/bin/env python3
"""Group failover benchmark: how long a consumer group stops when its coordinator's broker dies.

Three Partita brokers in cluster mode on a private PostgreSQL and S3 server (the engines of the
test suite, compat/cluster_engines.py), a topic of 12 partitions fed continuously, and a group
of 6 librdkafka members committing after each record. The broker coordinating the group is
killed with SIGKILL, and the time from the kill to every member's next successful commit is
one failover; the broker is restarted (which moves its partitions back: a planned move, timed
too) and the next kill takes whichever broker coordinates the group then. Run for a classic
group (cooperative-sticky) and a KIP-848 group (group.protocol=consumer), at default settings.

    $(scripts/python) bench/failover.py                # 20 kills each, writes
                                                       # bench/results/failover-<date>.md
    $(scripts/python) bench/failover.py --kills 3      # a quick look

Uses target/release/partita (PARTITA_BIN to override); cargo build --release first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "compat"))
os.environ.setdefault("PARTITA_BIN", str(REPO / "target" / "release" / "partita"))

from cluster_engines import Cluster  # noqa: E402
from group_util import FailoverGroup, Members  # noqa: E402

PARTITIONS = 12
MEMBERS = 6
KINDS = {
    "classic (cooperative-sticky)": {"assignor": "cooperative-sticky"},
    "KIP-848 (group.protocol=consumer)": {"conf": {"group.protocol": "consumer"}},
}


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(kind: str, options: dict, kills: int, root: Path) -> tuple:
    cluster = Cluster(root, [])
    members = Members(root, "confluent")
    try:
        group = FailoverGroup(cluster, members, PARTITIONS, MEMBERS, options,
                              settle_timeout=180)
        failovers, moves = [], []
        for i in range(kills):
            victim, failover, move = group.kill_coordinator()
            failovers.append(failover)
            moves.append(move)
            print(f"[failover] {kind}: kill {i + 1}/{kills} of broker {victim}: "
                  f"{failover:.2f} s; after its restart {move:.2f} s", flush=True)
        group.producer.stop(check=False)
        return failovers, moves
    finally:
        members.kill_all()
        cluster.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    rows = []
    for kind, options in KINDS.items():
        with tempfile.TemporaryDirectory(prefix="partita-failover-") as root:
            failovers, moves = run(kind, options, args.kills, Path(root))
        rows.append((kind, failovers, moves))
    lines = ["| group | kills | median s | p99 s | worst s | planned move back, median s |",
             "|---|---|---|---|---|---|"]
    for kind, failovers, moves in rows:
        lines.append(f"| {kind} | {len(failovers)} | {statistics.median(failovers):.2f} | "
                     f"{percentile(failovers, 0.99):.2f} | {max(failovers):.2f} | "
                     f"{statistics.median(moves):.2f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        out = HERE / "results" / f"failover-{started.strftime('%Y-%m-%d')}.md"
        out.write_text(
            f"# Group failover benchmark, {started.strftime('%Y-%m-%d %H:%M UTC')}\n\n"
            f"Command: `$(scripts/python) bench/failover.py --kills {args.kills}`  \n"
            f"Three Partita brokers in cluster mode (release build, default settings: "
            f"broker.heartbeat.interval.ms=500, broker.session.timeout.ms=3000) on a private "
            f"PostgreSQL and s3s-fs; {MEMBERS} librdkafka members on {PARTITIONS} partitions, "
            f"committing after each record, defaults otherwise. A failover is the time from "
            f"SIGKILL of the group's coordinator to every member's next successful commit.\n\n"
            f"{table}\n\n"
            + "\n".join(f"{kind}: {', '.join(f'{x:.2f}' for x in f)}" for kind, f, _ in rows)
            + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
