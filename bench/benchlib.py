"""Process plumbing shared by the benchmarks bench/rebalance.py and bench/share_groups.py: child
processes that die with the benchmark, a broker process waited for until it listens, CPU
accounting from /proc, and the parts of a results file that describe the run (machine, HEAD,
Markdown tables)."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# =============================================================================== child processes


def emit(**fields) -> None:
    """Child processes: one JSON object per line on stdout, flushed at once."""
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the benchmark process dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


class Children:
    """Every process the benchmark starts, killed at exit whatever happens."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def popen(self, argv, **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, preexec_fn=die_with_parent, **kw)
        with self.lock:
            self.procs.append(p)
        return p

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


CHILDREN = Children()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# =============================================================================== broker


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(s: str) -> str:
    return _ANSI.sub("", s)


class Broker:
    """A broker process (`argv` listens on 127.0.0.1:`port`), its output in workdir/broker.log."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, env=None):
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.log_path = workdir / "broker.log"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.cleanup: list[Path] = []  # directories removed by stop()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the broker and returns once it accepts connections; RuntimeError if it exits
        or does not listen within 30 s."""
        self._log = open(self.log_path, "wb")
        self.proc = CHILDREN.popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=self.workdir, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} at start-up: "
                                   f"{self.log_tail(5)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"did not listen on {self.bootstrap} within 30 s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        for p in self.cleanup:
            shutil.rmtree(p, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 20) -> str:
        return " | ".join(strip_ansi(self.log_text()).splitlines()[-n:])


# =============================================================================== CPU accounting


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None once it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = data[data.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot, over all cores."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


# =============================================================================== results file


def machine_info() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return f"nproc={os.cpu_count()}, CPU model: {model}, memory {mem}, kernel {platform.release()}"


def git_desc() -> str:
    """HEAD's short hash, and whether crates/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "crates"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + (" (+ uncommitted changes under crates/)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)
