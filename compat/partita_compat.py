"""Helpers shared by the compatibility tests: starting a Partita broker, unique names, polling.

The broker is started from the binary built by `cargo build --bin partita`
(`target/debug/partita`), or from the path in the environment variable PARTITA_BIN.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPAT_DIR = Path(__file__).resolve().parent

# How long a broker may take from spawn to accepting TCP connections.
START_DEADLINE_S = 30.0
# How long a SIGINT'ed broker may take to exit on its own.
STOP_DEADLINE_S = 30.0
# How much of the broker log is attached to a failing test's report.
LOG_TAIL_CHARS = 30_000


def broker_binary() -> Path:
    override = os.environ.get("PARTITA_BIN")
    if override:
        return Path(override).resolve()
    return REPO_ROOT / "target" / "debug" / "partita"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_value(http_port: int, name: str, **labels) -> float:
    """The sum of the samples of `name` on the broker's `/metrics` whose labels include
    `labels` (0 if there are none)."""
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name
               and all(sample.labels.get(k) == str(v) for k, v in labels.items()))


def unique_name(prefix: str) -> str:
    """A topic/group name unique to this call: prefix plus a uuid suffix (legal Kafka name)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(cond: Callable[[], object], timeout: float = 30.0, msg: str = "condition",
               interval: float = 0.05):
    """Poll `cond` until it returns a truthy value, and return that value.

    Exceptions raised by `cond` count as "not yet"; the last one is reported if the deadline
    passes. Raises AssertionError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    last_val: object = None
    while True:
        try:
            last_val = cond()
            if last_val:
                return last_val
            last_exc = None
        except Exception as exc:  # noqa: BLE001 - polled conditions may fail while not ready
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_exc!r}" if last_exc is not None else f"; last value: {last_val!r}"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {msg}{detail}")
        time.sleep(interval)


def _die_with_parent() -> None:
    """preexec_fn: the broker gets SIGKILL if the test process dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except Exception:  # noqa: BLE001 - best effort only
        pass


class Broker:
    """One Partita broker process on a fixed port and data directory."""

    def __init__(self, binary: Path, port: int, data_dir: Path, log_path: Path,
                 settings: Optional[Mapping[str, object]] = None,
                 env: Optional[Mapping[str, str]] = None,
                 host: str = "127.0.0.1", prefix: Optional[list] = None):
        self.binary = Path(binary)
        self.port = port
        # The address it listens on and advertises, and a command that runs it (a network
        # namespace's `ip netns exec NAME`), for the tests of several hosts.
        self._host = host
        self.prefix = list(prefix or [])
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        # The HTTP listener is off unless a test asks for it: brokers of parallel tests
        # would otherwise all try to bind the default port.
        self.settings = {"http.listen": ""}
        self.settings.update({k: _setting_value(v) for k, v in (settings or {}).items()})
        # Extra environment variables of the broker process (LD_PRELOAD for fault tests).
        self.env = dict(env or {})
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def host(self) -> str:
        return self._host

    def command(self) -> list:
        cmd = self.prefix + [str(self.binary), "broker",
               "--listen", self.bootstrap,
               "--advertised", self.bootstrap,
               "--data-dir", str(self.data_dir)]
        for name, value in self.settings.items():
            cmd += ["--set", f"{name}={value}"]
        return cmd

    def start(self) -> "Broker":
        if self.is_running():
            raise RuntimeError("broker already running")
        if not self.binary.exists():
            raise RuntimeError(
                f"Partita binary not found at {self.binary}: run `cargo build --bin partita` "
                f"or set PARTITA_BIN")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            env.update(self.env)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, preexec_fn=_die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"broker exited with status {code} before accepting connections on "
                    f"{self.bootstrap}\n--- broker log ---\n{self.log_tail()}")
            try:
                with socket.create_connection((self._host, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    f"broker did not accept connections on {self.bootstrap} within "
                    f"{START_DEADLINE_S:.0f}s\n--- broker log ---\n{self.log_tail()}")
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (kill -9) the broker and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._note(f"===== killed with SIGKILL (status {self.proc.returncode})")

    def stop(self, timeout: float = STOP_DEADLINE_S, sig: int = signal.SIGINT) -> int:
        """Stop the broker with `sig` (SIGINT, as Ctrl-C, or SIGTERM) and wait for it to exit;
        return its exit status.

        Raises AssertionError (after killing it) if it does not exit within `timeout`.
        """
        name = signal.Signals(sig).name
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"broker did not exit within {timeout:.0f}s of {name}")
        self._note(f"===== stopped with {name} (status {self.proc.returncode})")
        return self.proc.returncode

    def restart(self, kill: bool = False) -> "Broker":
        """Stop (or kill) the broker if it runs, and start it again on the same port and data dir."""
        if self.is_running():
            if kill:
                self.kill()
            else:
                self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = _ANSI.sub("", self.log_text())
        if len(text) > chars:
            return "...(truncated)...\n" + text[-chars:]
        return text

    def _note(self, line: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"{line}\n".encode())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _setting_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def setting_names(kwargs: Mapping[str, object]) -> dict:
    """Turn keyword arguments into Kafka property names: `log_flush_interval_messages=1`
    becomes `log.flush.interval.messages=1` (Kafka broker property names have no underscores)."""
    return {k.replace("_", "."): v for k, v in kwargs.items()}


class BackgroundLoop:
    """Runs `self._run` on a daemon thread from `start()` until `stop()`; `_run` checks
    `self._stop`. `what` names the loop in the failure of a thread that does not stop."""

    what = "background thread"

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        raise NotImplementedError

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0):
        self._stop.set()
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), f"{self.what} did not stop"
