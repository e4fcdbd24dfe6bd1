"""The real engines of cluster mode, one private instance of each per test: PostgreSQL (from
Debian's packages, started with initdb and pg_ctl) and s3s-fs (an S3-compatible server from the
Rust crate registry, built by scripts/setup). Both can be stopped and started again, for the
fault tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from partita_compat import _die_with_parent, free_port

ACCESS_KEY = "partita-test"
SECRET_KEY = "partita-test-secret"
BUCKET = "partita"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found: run scripts/setup")
    return found[-1]


def s3s_binary() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "partita" / "s3s-fs" / "bin" / "s3s-fs"
    if not path.exists():
        raise RuntimeError(f"s3s-fs not found at {path}: run scripts/setup")
    return path


def _wait_port(port: int, proc: Optional[subprocess.Popen], what: str, log: Path,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port}:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


class Postgres:
    """A private PostgreSQL server on a free port, with a database for the cluster."""

    def __init__(self):
        # Not under pytest's tmp_path: the postgres user could not reach into it.
        self.root = Path(tempfile.mkdtemp(prefix="partita-pg-"))
        self.data = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        # initdb refuses to run as root: the package's postgres user owns the instance.
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        return f"postgres://partita:partita@{host}:{self.port}/cluster"

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self.user:
            cmd = ["su", self.user, "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)

    def start(self) -> "Postgres":
        if not self.data.exists():
            self.data.mkdir()
            if self.user:
                entry = pwd.getpwnam(self.user)
                for path in (self.root, self.data):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "md5", "-U", "partita",
                      f"--pwfile={self._pwfile()}")
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {Netns.SUBNETS} md5\n")
            self._started()
            self._psql("CREATE DATABASE cluster")
            return self
        self._started()
        return self

    def _pwfile(self) -> str:
        path = self.root / "pw"
        path.write_text("partita\n")
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return str(path)

    def _started(self) -> None:
        # Every address, for brokers in other network namespaces (see Netns).
        options = f"-p {self.port} -k {self.root} -c listen_addresses=* -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
                  "-w", "start")

    def _psql(self, sql: str) -> None:
        env = dict(os.environ, PGPASSWORD="partita")
        subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "partita", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       check=True, env=env, stdout=subprocess.DEVNULL, timeout=60)

    def query(self, sql: str) -> list:
        """Rows of `sql` run in the cluster's database, each a list of strings."""
        env = dict(os.environ, PGPASSWORD="partita")
        out = subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                              "partita", "-d", "cluster", "-At", "-F", "\t", "-c", sql],
                             check=True, env=env, capture_output=True, text=True, timeout=60)
        return [line.split("\t") for line in out.stdout.splitlines()]

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass  # already stopped

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """A private s3s-fs server on a free port; the bucket is a folder of its directory."""

    def __init__(self, root: Path):
        self.root = root / "s3"
        self.log = root / "s3s-fs.log"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def env(self) -> dict:
        return self.env_at("127.0.0.1")

    def env_at(self, host: str) -> dict:
        """The standard variables that point an S3 client at this server."""
        return {
            "AWS_ENDPOINT_URL": f"http://{host}:{self.port}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, prefix: str = "records") -> str:
        return f"s3://{BUCKET}/{prefix}"

    def start(self, env: Optional[dict] = None) -> "S3Server":
        (self.root / BUCKET).mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(s3s_binary()), "--host", "0.0.0.0", "--port", str(self.port),
                 "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(self.root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent,
                env=dict(os.environ, **(env or {})))
        _wait_port(self.port, self.proc, "s3s-fs", self.log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def objects(self) -> list:
        """Every object stored, as paths under the bucket."""
        bucket = self.root / BUCKET
        return [p.relative_to(bucket) for p in bucket.rglob("*") if p.is_file()]


class Cluster:
    """PostgreSQL, an S3 server and the Partita brokers started on them, for one test."""

    def __init__(self, root: Path, brokers: list):
        from partita_compat import Broker, broker_binary  # noqa: F401 - used by start_broker
        self.root = root
        self.postgres = Postgres().start()
        self.s3 = S3Server(root).start()
        self.brokers = brokers

    def settings(self, node_id: int) -> dict:
        return {"node.id": node_id, "storage.url": self.s3.url(),
                "cluster.metadata.url": self.postgres.url}

    def start_broker(self, node_id: int, settings: Optional[dict] = None,
                     netns: Optional["Netns"] = None, port: Optional[int] = None, **kwargs):
        """A broker in cluster mode with `node.id` `node_id`, plus any other settings
        (keyword arguments with `_` for `.`, as `start_broker` takes them); in the network
        namespace `netns` if given, reaching the engines through its link."""
        from partita_compat import Broker, broker_binary, setting_names
        merged = self.settings(node_id)
        env = self.s3.env
        host, prefix = "127.0.0.1", None
        if netns is not None:
            merged["cluster.metadata.url"] = self.postgres.url_at(netns.host_ip)
            env = self.s3.env_at(netns.host_ip)
            host, prefix = netns.ns_ip, netns.prefix
        merged.update(settings or {})
        merged.update(setting_names(kwargs))
        n = len(self.brokers)
        b = Broker(binary=broker_binary(), port=port or free_port(), data_dir=self.root / f"data{n}",
                   log_path=self.root / f"broker{n}.log", settings=merged, env=env,
                   host=host, prefix=prefix)
        self.brokers.append(b)
        b.start()
        return b

    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers if b.is_running())

    def close(self) -> None:
        for b in self.brokers:
            b.kill()
        self.s3.stop()
        self.postgres.remove()


class Netns:
    """A second host for tests: a network namespace joined to this one by a veth pair, whose
    link can be cut. Only addresses of 10.231.0.0/16 are used."""

    SUBNETS = "10.231.0.0/16"

    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.name = f"partita-{tag}"
        self.host_if, self.ns_if = f"ph{tag}", f"pn{tag}"
        third = random.randrange(1, 250)
        self.host_ip, self.ns_ip = f"10.231.{third}.1", f"10.231.{third}.2"
        self.prefix = ["ip", "netns", "exec", self.name]

    @staticmethod
    def _ip(*argv: str) -> None:
        subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)

    def create(self) -> "Netns":
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        inside = ["netns", "exec", self.name, "ip"]
        self._ip(*inside, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self._ip(*inside, "link", "set", self.ns_if, "up")
        self._ip(*inside, "link", "set", "lo", "up")
        return self

    def cut(self) -> None:
        """The link goes down: nothing passes either way."""
        self._ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        self._ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
