"""The plumbing that the member processes group_member.py and share_member.py share: the options
every member takes, the JSON event lines it prints on stdout and the commands it reads on stdin.
group_util.MemberProc is the other end of both."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

_out_lock = threading.Lock()


def emit(ev: str, **fields) -> None:
    """Prints one event as a JSON line on stdout, flushed at once, with "t" = time.time()."""
    fields["ev"] = ev
    fields["t"] = time.time()
    line = json.dumps(fields)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Commands:
    """The lines read on stdin: `close` sets `close`, `hold` sets `hold`; EOF sets `close`."""

    def __init__(self):
        self.close = threading.Event()
        self.hold = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "close":
                self.close.set()
            elif cmd == "hold":
                self.hold.set()
        self.close.set()


def member_parser() -> argparse.ArgumentParser:
    """A parser with the options of every member: --bootstrap, --group, --topics (a comma list,
    parsed into a list) and --conf key=value (repeatable)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topics", required=True, type=lambda s: s.split(","))
    ap.add_argument("--conf", action="append", default=[])
    return ap
