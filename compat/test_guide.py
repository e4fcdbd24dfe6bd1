"""Runs every command of docs/consumer-groups.md, in order, as a reader would, and checks what they
print: the guide cannot rot.

How the guide is read (the conventions are invisible when the markdown is rendered):

* Every fenced ```sh block is run, in the order of the guide, in ONE bash session, as if typed
  into one terminal: the working directory (an empty temp dir), variables and background jobs
  (`cmd &`, `kill %1`, `jobs -p`) carry over from block to block. A block's stdin is /dev/null.
* `<!-- guide-test: skip -->` on the line before a block: not run (building, starting the broker:
  the test starts its own broker).
* `<!-- guide-test: step NAME -->` on the line before a block: after the block runs, CHECKS[NAME]
  checks its exit status and output (and, where a step says so, the broker log). A step marked
  `retry` is re-run until its check passes (within GUIDE_DEADLINE): these are the commands a reader
  runs again after "a few seconds" (describe, wc -l) and commands that are refused without side
  effects until the group is ready. A block without a step must exit 0.
* A ```text block right after a ```sh block is the output the guide shows: each of its lines
  (spaces normalised) must be a line of what the command printed (stdout or stderr), except lines
  naming a member id (random: `billing-3-f3ffa929-1e6c-...`). So the tables, numbers and messages
  shown in the guide stay true.
* Placeholders: `127.0.0.1:9092`, the broker's and the CLI's default address, becomes the test
  broker's address; `partita` is the built binary (target/debug/partita, or PARTITA_BIN) with
  `--bootstrap-server <test broker>` appended; docs/examples/ is on PATH (ledger.py), and the
  Python running the tests is the `python3` on PATH.

When a check fails, the report shows the step, the command as run, its output, and the broker log.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from partita_compat import REPO_ROOT, _die_with_parent, broker_binary

GUIDE = REPO_ROOT / "docs" / "consumer-groups.md"
EXAMPLES = REPO_ROOT / "docs" / "examples"
DEFAULT_ADDRESS = "127.0.0.1:9092"

# How long a retried step may take to pass, and any single command to finish.
GUIDE_DEADLINE = 90.0
COMMAND_DEADLINE = 120.0

_MARK = re.compile(r"<!--\s*guide-test:\s*(skip|step\s+([\w-]+))\s*-->")


# ------------------------------------------------------------------------------------------------
# Reading the guide


@dataclass
class Block:
    line: int                       # 1-based line of the opening fence
    code: str
    step: Optional[str] = None
    skip: bool = False
    sample: Optional[str] = None     # the ```text block that follows, if any


def parse_guide(text: str) -> List[Block]:
    lines = text.splitlines()
    blocks: List[Block] = []
    i = 0
    prev = ""                        # previous non-blank line outside code blocks
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```(\w*)\s*$", line)
        if not fence:
            if line.strip():
                prev = line.strip()
            i += 1
            continue
        lang, start = fence.group(1), i
        body = []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{GUIDE.name}:{start + 1}: code block is not closed"
        i += 1
        if lang == "sh":
            b = Block(line=start + 1, code="\n".join(body))
            m = _MARK.search(prev)
            if m:
                b.skip = m.group(1) == "skip"
                b.step = m.group(2)
            blocks.append(b)
        elif lang == "text" and blocks and blocks[-1].sample is None and prev == "```sh-end":
            blocks[-1].sample = "\n".join(body)
        prev = "```sh-end" if lang == "sh" else "```"
    return blocks


# ------------------------------------------------------------------------------------------------
# Reading partita's tables


def tables(out: str) -> List[List[Dict[str, str]]]:
    """Every table of a `partita` text output (an upper-case header line, then rows up to a blank
    line), as lists of {column: value}."""
    result = []
    current: Optional[List[Dict[str, str]]] = None
    header: List[str] = []
    for line in out.splitlines():
        if not line.strip():
            current = None
            continue
        words = line.split()
        if current is None:
            if all(re.fullmatch(r"[A-Z#][A-Z0-9#()\-]*", w) for w in words) and len(words) > 1:
                header = words
                current = []
                result.append(current)
            continue
        if len(words) == len(header):
            current.append(dict(zip(header, words)))
    return result


def table_with(out: str, column: str) -> List[Dict[str, str]]:
    """The first table of `out` that has `column` (and at least one row)."""
    for t in tables(out):
        if t and column in t[0]:
            return t
    raise AssertionError(f"no table with column {column} in:\n{out}")


def lag_rows(out: str) -> List[Dict[str, str]]:
    for t in tables(out):
        if t and "LAG" in t[0] and "PARTITION" in t[0]:
            return t
    raise AssertionError(f"no lag table in:\n{out}")


def member_rows(out: str) -> List[Dict[str, str]]:
    for t in tables(out):
        if t and "ASSIGNMENT" in t[0]:
            return t
    raise AssertionError(f"no members table in:\n{out}")


def topic_lag(out: str, topic: str) -> int:
    for t in tables(out):
        for r in t:
            if r.get("TOPIC") == topic and "TOTAL-LAG" in r:
                return int(r["TOTAL-LAG"])
    raise AssertionError(f"no total lag for {topic} in:\n{out}")


def group_events(broker, group: str) -> List[Dict[str, str]]:
    """The broker's structured group events (INFO lines with event="..."), oldest first."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_text())
    out = []
    for line in text.splitlines():
        if f'group="{group}"' not in line or "event=" not in line:
            continue
        fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        out.append({k: v.strip('"') for k, v in fields.items()})
    return out


# ------------------------------------------------------------------------------------------------
# Checks, one per step of the guide


@dataclass
class Ctx:
    rc: int
    out: str
    err: str
    broker: object
    cwd: Path
    state: dict

    @property
    def both(self) -> str:
        return self.out + self.err


@dataclass
class Check:
    fn: Callable[[Ctx], None]
    retry: bool = False
    ok_exit: bool = True           # the command must exit 0 (False: must fail)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def ok(ctx: Ctx) -> None:
    pass


def created_orders(ctx):
    expect("Created topic orders." in ctx.out, "no 'Created topic orders.'")


def billing_with_idle_member(ctx):
    rows = lag_rows(ctx.out)
    parts = [r for r in rows if r["PARTITION"] != "-"]
    idle = [r for r in rows if r["PARTITION"] == "-"]
    expect(sorted(r["PARTITION"] for r in parts) == ["0", "1", "2", "3"], "not 4 partition rows")
    expect(all(r["CONSUMER-ID"] != "-" for r in parts), "a partition without an owner")
    expect(len({r["CONSUMER-ID"] for r in parts}) == 4, "not 4 distinct owners")
    expect(len(idle) == 1 and idle[0]["TOPIC"] == "-" and idle[0]["CONSUMER-ID"] != "-",
           "no row for the idle fifth member")
    expect(all(r["CURRENT-OFFSET"] == "25" and r["LAG"] == "0" for r in parts),
           "not every partition committed at 25 with lag 0 yet")
    expect(topic_lag(ctx.out, "orders") == 0, "total lag not 0")


def billing_members_one_idle(ctx):
    rows = member_rows(ctx.out)
    expect(len(rows) == 5, f"{len(rows)} members, not 5")
    expect(sorted(r["#PARTITIONS"] for r in rows) == ["0", "1", "1", "1", "1"],
           "not four members with one partition and one with none")
    expect(sorted(r["CLIENT-ID"] for r in rows) == [f"billing-{i}" for i in range(1, 6)],
           "client ids are not billing-1..5")


def billing_got_each_once(ctx):
    count_is(100)(ctx)
    values = []
    for f in sorted(ctx.cwd.glob("billing-*.txt")):
        values += [line.split()[2] for line in f.read_text().splitlines()]
    expect(sorted(values, key=int) == [str(i) for i in range(1, 101)],
           "the billing members did not get each of the 100 records exactly once")


def audit_got_each_once(ctx):
    count_is(100)(ctx)
    values = [line.split()[2] for line in (ctx.cwd / "audit.txt").read_text().splitlines()]
    expect(sorted(values, key=int) == [str(i) for i in range(1, 101)],
           "audit did not get each of the 100 records exactly once")


def count_is(n: int):
    def check(ctx):
        expect(ctx.out.split() == [str(n)], f"count {ctx.out.strip()!r}, not {n}")
    return check


def groups_listed(ctx):
    rows = {r["GROUP"]: r for r in table_with(ctx.out, "STATE")}
    for g in ("billing", "audit"):
        expect(g in rows and rows[g]["STATE"] == "Stable", f"group {g} not listed as Stable")


def created_payments(ctx):
    expect("Created topic payments." in ctx.out, "no 'Created topic payments.'")


def ledger_crashed(ctx):
    lines = ctx.out.splitlines()
    booked = [ln.split()[1] for ln in lines if ln.startswith("booked")]
    expect(booked == ["pay-1", "pay-2", "pay-3"], f"booked {booked}")
    expect(lines[-1] == "crash! offset 2 was not committed", "no crash line")


def ledger_rerun(ctx):
    lines = ctx.out.splitlines()
    got = [(ln.split()[0], ln.split()[1]) for ln in lines if ln.startswith(("booked", "skipped"))]
    expect(got == [("skipped", "pay-3"), ("skipped", "pay-2"), ("booked", "pay-4")],
           f"replayed records handled as {got}")
    expect(lines[-1] == "ledger: 4 payments, total 122.85", f"last line {lines[-1]!r}")


def ledger_caught_up(ctx):
    rows = lag_rows(ctx.out)
    expect([(r["PARTITION"], r["CURRENT-OFFSET"], r["LAG"]) for r in rows] == [("0", "5", "0")],
           "ledger not committed at 5 with lag 0")


def after_leave(ctx):
    rows = member_rows(ctx.out)
    expect(len(rows) == 4, f"{len(rows)} members, not 4")
    expect(all(r["#PARTITIONS"] == "1" for r in rows), "not one partition each")
    expect("billing-1" not in {r["CLIENT-ID"] for r in rows}, "billing-1 still a member")
    ev = group_events(ctx.broker, "billing")
    left = [i for i, e in enumerate(ev) if e.get("event") == "member_left"]
    expect(bool(left), "broker logged no member_left for billing")
    done = [e for e in ev[left[0]:] if e.get("event") == "rebalance_completed"
            and e.get("members") == "4" and e.get("cause") == "leave"]
    expect(bool(done), "broker logged no rebalance_completed (cause leave, 4 members)")


def after_join(ctx):
    rows = member_rows(ctx.out)
    expect(len(rows) == 5, f"{len(rows)} members, not 5")
    expect(sorted(r["#PARTITIONS"] for r in rows) == ["0", "1", "1", "1", "1"],
           "not four members with a partition and one idle")
    expect("billing-6" in {r["CLIENT-ID"] for r in rows}, "billing-6 not a member")
    ev = group_events(ctx.broker, "billing")
    left = max(i for i, e in enumerate(ev) if e.get("event") == "member_left")
    later = ev[left:]
    expect(any(e.get("event") == "member_joined" for e in later), "no member_joined logged")
    expect(any(e.get("event") == "rebalance_completed" and e.get("members") == "5"
               and e.get("cause") == "join" for e in later),
           "no rebalance_completed (cause join, 5 members) logged")


def skew_warned(ctx):
    rows = {r["PARTITION"]: r for r in lag_rows(ctx.out)}
    expect(rows["1"]["LAG"] == "3005", f"partition 1 lag {rows['1']['LAG']}, not 3005")
    expect(all(rows[p]["LAG"] == "5" for p in ("0", "2", "3")), "other partitions' lag not 5")
    warn = [ln for ln in ctx.out.splitlines() if ln.startswith("WARNING")]
    expect(len(warn) == 1, f"warnings: {warn}")
    owner = rows["1"]["CONSUMER-ID"]
    expect("orders-1 lags 3005 records" in warn[0] and owner in warn[0] and owner != "-",
           f"the warning does not name orders-1 and its owner {owner}: {warn[0]}")


def hot_key(ctx):
    expect(ctx.out.split() == ["1000", "customer-42"], f"keys: {ctx.out!r}")


def drained(ctx):
    expect(topic_lag(ctx.out, "orders") == 0, "lag not drained")
    expect("WARNING" not in ctx.out, "still a warning")


def reset_refused(ctx):
    expect('consumer group "audit" is active' in ctx.err, f"not refused as active: {ctx.err}")


def reset_planned(ctx):
    rows = table_with(ctx.out, "NEW-OFFSET")
    expect(sorted(r["PARTITION"] for r in rows) == ["0", "1", "2", "3"], "not 4 partitions")
    expect(all(r["NEW-OFFSET"] == "0" and r["LAG-AFTER"] == r["LOG-END-OFFSET"] for r in rows),
           "plan does not go back to 0")
    expect("Dry run: nothing was changed." in ctx.out, "no dry-run note")
    ctx.state["log_end"] = sum(int(r["LOG-END-OFFSET"]) for r in rows)


def reset_done(ctx):
    expect("Offsets of group 'audit' reset." in ctx.out, "not reset")


def audit_rewound(ctx):
    rows = lag_rows(ctx.out)
    expect(all(r["CURRENT-OFFSET"] == "0" for r in rows), "not at 0")
    expect(topic_lag(ctx.out, "orders") == 3120, "total lag not 3120")


def group_deleted(ctx):
    expect("billing" in ctx.out and "deleted" in ctx.out.lower(), f"not deleted: {ctx.out}")


def topic_deleted(ctx):
    expect("orders" in ctx.out and "deleted" in ctx.out.lower(), f"not deleted: {ctx.out}")


CHECKS: Dict[str, Check] = {
    "create-orders": Check(created_orders),
    "produce-orders": Check(ok),
    "start-billing": Check(ok),
    "describe-billing": Check(billing_with_idle_member, retry=True),
    "members-billing": Check(billing_members_one_idle, retry=True),
    "count-billing": Check(billing_got_each_once, retry=True),
    "start-audit": Check(ok),
    "count-audit": Check(audit_got_each_once, retry=True),
    "list-groups": Check(groups_listed, retry=True),
    "create-payments": Check(created_payments),
    "produce-payments": Check(ok),
    "ledger-crash": Check(ledger_crashed, ok_exit=False),
    "ledger-rerun": Check(ledger_rerun),
    "describe-ledger": Check(ledger_caught_up),
    "stop-billing-1": Check(ok),
    "members-after-leave": Check(after_leave, retry=True),
    "start-billing-6": Check(ok),
    "members-after-join": Check(after_join, retry=True),
    "freeze": Check(ok),
    "produce-hot-key": Check(ok),
    "describe-skew": Check(skew_warned, retry=True),
    "find-hot-key": Check(hot_key),
    "thaw": Check(ok),
    "describe-drained": Check(drained, retry=True),
    "reset-refused": Check(reset_refused, ok_exit=False),
    "stop-audit": Check(ok),
    "reset-dry-run": Check(reset_planned, retry=True),
    "reset-execute": Check(reset_done),
    "describe-audit": Check(audit_rewound),
    "start-audit-replay": Check(ok),
    "count-replay": Check(count_is(3120), retry=True),
    "stop-all": Check(ok),
    "delete-group": Check(group_deleted, retry=True),
    "delete-topic": Check(topic_deleted),
}


# ------------------------------------------------------------------------------------------------
# One terminal


class Shell:
    """One bash session fed block after block on its stdin; each block's output goes to files."""

    MARK = "__GUIDE_BLOCK_DONE__"

    def __init__(self, cwd: Path, out_dir: Path, env: dict, prelude: str):
        self.cwd = cwd
        self.out_dir = out_dir
        self.n = 0
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=cwd, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.transcript: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        rc, out, err = self.run(prelude)
        assert rc == 0, f"shell prelude failed: {out}{err}"

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def run(self, code: str, timeout: float = COMMAND_DEADLINE):
        self.n += 1
        out, err = self.out_dir / f"{self.n}.out", self.out_dir / f"{self.n}.err"
        self.proc.stdin.write(f"{{\n{code}\n}} >{shlex.quote(str(out))} "
                              f"2>{shlex.quote(str(err))} </dev/null\n"
                              f"echo {self.MARK} $?\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"command did not finish within {timeout:.0f}s:\n{code}") \
                    from None
            if line is None:
                raise AssertionError(f"the shell exited (status {self.proc.wait()}) running:\n"
                                     f"{code}\nshell said: {self.transcript[-20:]}")
            if line.startswith(self.MARK):
                rc = int(line.split()[1])
                return rc, out.read_text(errors="replace"), err.read_text(errors="replace")
            self.transcript.append(line)

    def kill(self):
        """SIGKILL the shell and everything it started (its session's process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def prelude(bootstrap: str) -> str:
    partita = shlex.quote(str(broker_binary()))
    # (No `set -e` or `pipefail`: a reader's terminal has neither, and `yes | head` relies on it.)
    return f'partita() {{ {partita} "$@" --bootstrap-server {bootstrap}; }}\n'



def as_run(code: str, bootstrap: str) -> str:
    return code.replace(DEFAULT_ADDRESS, bootstrap)


def normalised(text: str) -> str:
    return " ".join(text.split())


_MEMBER_ID = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-")


def sample_lines(sample: str) -> List[str]:
    """The lines of a sample output that the command must print (normalised)."""
    return [normalised(ln) for ln in sample.splitlines()
            if ln.strip() and not _MEMBER_ID.search(ln)]


# ------------------------------------------------------------------------------------------------
# Tests


def test_guide_conventions():
    """Every step of the guide has a check and every check a step; blocks parse; samples follow
    steps."""
    blocks = parse_guide(GUIDE.read_text())
    run = [b for b in blocks if not b.skip]
    steps = [b.step for b in run if b.step]
    assert len(steps) == len(set(steps)), f"a step name is used twice: {steps}"
    assert sorted(steps) == sorted(CHECKS), (
        f"steps without a check: {sorted(set(steps) - set(CHECKS))}; "
        f"checks without a step: {sorted(set(CHECKS) - set(steps))}")
    assert all(b.step for b in run), \
        f"blocks without a step: {[b.line for b in run if not b.step]}"
    for b in blocks:
        assert b.code.strip(), f"{GUIDE.name}:{b.line}: empty block"


@pytest.mark.timeout(900)
def test_guide_commands_run_as_written(start_broker, tmp_path, extra_logs):
    for tool in ("kcat", "bash", "seq", "yes", "sort", "uniq"):
        if not subprocess.run(["bash", "-c", f"command -v {tool}"],
                              capture_output=True).returncode == 0:
            pytest.skip(f"{tool} not installed (scripts/setup)")
    b = start_broker()
    work = tmp_path / "terminal"
    work.mkdir()
    outs = tmp_path / "outputs"
    outs.mkdir()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(EXAMPLES),
                                   env.get("PATH", "")])
    shell = Shell(work, outs, env, prelude(b.bootstrap))
    history: List[str] = []
    extra_logs.append(("guide session (commands as run, exit status, output)",
                       lambda: "\n".join(history[-12:])))
    state: dict = {}
    try:
        for block in parse_guide(GUIDE.read_text()):
            if block.skip:
                continue
            check = CHECKS[block.step]
            code = as_run(block.code, b.bootstrap)
            where = f"{GUIDE.name}:{block.line} (step {block.step})"
            deadline = time.monotonic() + GUIDE_DEADLINE
            attempt = 0
            while True:
                attempt += 1
                rc, out, err = shell.run(code)
                history.append(f"$ {code}\n[exit {rc}, attempt {attempt}]\n{out}{err}")
                ctx = Ctx(rc, out, err, b, work, state)
                try:
                    if check.ok_exit:
                        expect(rc == 0, f"exit status {rc}")
                    else:
                        expect(rc != 0, "exit status 0, but the guide says it fails")
                    if block.sample is not None:
                        printed = {normalised(ln) for ln in (out + "\n" + err).splitlines()}
                        missing = [ln for ln in sample_lines(block.sample) if ln not in printed]
                        expect(not missing, f"the guide shows output lines that the command did "
                                            f"not print: {missing}")
                    check.fn(ctx)
                    break
                except AssertionError as exc:
                    if not check.retry or time.monotonic() >= deadline:
                        raise AssertionError(
                            f"{where}: {exc}\n--- command ---\n{code}\n--- exit {rc}, "
                            f"stdout ---\n{out}--- stderr ---\n{err}") from None
                    time.sleep(0.5)
    finally:
        shell.kill()
