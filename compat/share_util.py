"""Helpers for the share-group tests (test_share_groups.py) and the share-group benchmark.

- `ShareMembers`: share consumers in child processes (compat/share_member.py), each a
  group_util.MemberProc (its "rec" events are the records it processed).
- `set_share_offset_reset`: the GROUP config `share.auto.offset.reset` through the AdminClient.
- `list_groups_v5`, `share_group_describe`: ListGroups v5 and ShareGroupDescribe v1 sent on a raw
  socket. confluent-kafka 2.16's AdminClient has no share-group describe, and its
  list_consumer_groups() knows no "share" group type (ConsumerGroupType has UNKNOWN, CONSUMER,
  CLASSIC only), so the tests speak those two requests themselves.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Dict, List, Optional

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from group_util import MemberProc
from partita_compat import COMPAT_DIR


# ------------------------------------------------------------------------------------------------
# Members


def share_member_cmd(bootstrap: str, group: str, topics, delay_ms: float = 0,
                     max_poll_records: Optional[int] = None, hold_after: Optional[int] = None,
                     conf: Optional[dict] = None) -> List[str]:
    topics = [topics] if isinstance(topics, str) else list(topics)
    cmd = [sys.executable, str(COMPAT_DIR / "share_member.py"), "--bootstrap", bootstrap,
           "--group", group, "--topics", ",".join(topics), "--delay-ms", str(delay_ms)]
    if max_poll_records is not None:
        cmd += ["--max-poll-records", str(max_poll_records)]
    if hold_after is not None:
        cmd += ["--hold-after", str(hold_after)]
    for k, v in (conf or {}).items():
        cmd += ["--conf", f"{k}={v}"]
    return cmd


class ShareMembers:
    """Spawns share members and kills whatever is left at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.all: List[MemberProc] = []

    def spawn(self, name: str, bootstrap: str, group: str, topics, **kw) -> MemberProc:
        cmd = share_member_cmd(bootstrap, group, topics, **kw)
        m = MemberProc(name, cmd, self.tmp_path / f"share-{name}-{len(self.all)}.stderr")
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


# ------------------------------------------------------------------------------------------------
# Group config


def set_share_offset_reset(admin, group: str, value: str = "earliest") -> None:
    res = ConfigResource("GROUP", group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", value,
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res], request_timeout=20).values():
        f.result(timeout=30)


def group_config(admin, group: str) -> Dict[str, str]:
    fs = admin.describe_configs([ConfigResource("GROUP", group)], request_timeout=20)
    out = {}
    for f in fs.values():
        out.update({k: v.value for k, v in f.result(timeout=30).items()})
    return out


# ------------------------------------------------------------------------------------------------
# Raw Kafka protocol (flexible versions only: request header v2, response header v1)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _cstr(s: Optional[str]) -> bytes:
    if s is None:
        return _uvarint(0)
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def _carray(items: List[bytes]) -> bytes:
    return _uvarint(len(items) + 1) + b"".join(items)


class _Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.i = 0

    def take(self, n: int) -> bytes:
        b = self.d[self.i:self.i + n]
        if len(b) != n:
            raise ValueError("short response")
        self.i += n
        return b

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self) -> int:
        shift = n = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def cstr(self) -> Optional[str]:
        n = self.uvarint()
        if n == 0:
            return None
        return self.take(n - 1).decode()

    def carray(self, item):
        n = self.uvarint()
        return [] if n == 0 else [item() for _ in range(n - 1)]

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def raw_request(bootstrap: str, api_key: int, version: int, body: bytes,
                timeout: float = 20.0) -> _Reader:
    host, port = bootstrap.rsplit(":", 1)
    header = struct.pack(">hhi", api_key, version, 1) + struct.pack(">h", 11) + b"share-tests" \
        + _uvarint(0)
    msg = header + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        r = _Reader(_recv_exact(s, size))
    if r.i32() != 1:
        raise ValueError("correlation id mismatch")
    r.tags()
    return r


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def list_groups_v5(bootstrap: str, types: Optional[List[str]] = None,
                   states: Optional[List[str]] = None) -> List[dict]:
    """ListGroups v5: [{group_id, protocol_type, state, type}]; raises on a top-level error."""
    body = _carray([_cstr(s) for s in states or []]) + _carray([_cstr(t) for t in types or []]) \
        + _uvarint(0)
    r = raw_request(bootstrap, 16, 5, body)
    r.i32()
    err = r.i16()
    if err:
        raise RuntimeError(f"ListGroups error code {err}")

    def group():
        g = {"group_id": r.cstr(), "protocol_type": r.cstr(), "state": r.cstr(),
             "type": r.cstr()}
        r.tags()
        return g

    return r.carray(group)


def share_group_describe(bootstrap: str, groups: List[str]) -> List[dict]:
    """ShareGroupDescribe v1 (api key 77), decoded into dicts."""
    body = _carray([_cstr(g) for g in groups]) + b"\x00" + _uvarint(0)
    r = raw_request(bootstrap, 77, 1, body)
    r.i32()

    def tps():
        tid = r.take(16).hex()
        name = r.cstr()
        parts = r.carray(r.i32)
        r.tags()
        return {"topic_id": tid, "topic": name, "partitions": parts}

    def member():
        m = {"member_id": r.cstr(), "rack": r.cstr(), "epoch": r.i32(), "client_id": r.cstr(),
             "client_host": r.cstr(), "subscribed": r.carray(r.cstr)}
        m["assignment"] = r.carray(tps)
        r.tags()  # Assignment struct
        r.tags()  # Member
        return m

    def group():
        g = {"error_code": r.i16(), "error_message": r.cstr(), "group_id": r.cstr(),
             "state": r.cstr(), "epoch": r.i32(), "assignment_epoch": r.i32(),
             "assignor": r.cstr()}
        g["members"] = r.carray(member)
        g["authorized_operations"] = r.i32()
        r.tags()
        return g

    return r.carray(group)


def share_members(bootstrap: str, group: str) -> List[dict]:
    """The members of `group` per ShareGroupDescribe ([] if the group is unknown)."""
    d = share_group_describe(bootstrap, [group])
    if not d or d[0]["error_code"] != 0:
        return []
    return d[0]["members"]
