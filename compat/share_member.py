"""One share-group member (confluent-kafka ShareConsumer) in its own process, driven by
test_share_groups.py so that a test can SIGKILL it like a crashed consumer.

    python3 share_member.py --bootstrap B --group G --topics T[,T2] [--delay-ms N]
        [--max-poll-records N] [--hold-after N] [--conf key=value ...]

Implicit acknowledgement: the records of one poll are accepted by the next poll (or close). The
member prints one JSON object per line on stdout, flushed at once:

    {"ev": "ready"}                                   subscribed
    {"ev": "rec", "p": 0, "o": 17, "v": "...", "dc": 1}  a record, after it was processed
                                                      (dc: delivery count as the broker sent it)
    {"ev": "held", "n": 12}                           --hold-after reached: it stops polling and
                                                      never acknowledges what it holds
    {"ev": "error", "msg": "..."}                     an error the client reported
    {"ev": "closed"}                                  close() returned

`--delay-ms` sleeps that long per record (the "processing"). `--hold-after N`: once N records were
received, emit "held" and stop calling poll, keeping the records acquired (the process stays up
until killed or told to close). Lines on stdin: `close` closes the consumer (acknowledging what it
processed, leaving the group) and exits; `hold` stops calling poll. EOF on stdin = close.
Every event also has "t", time.time() when it happened.
"""

from __future__ import annotations

import time

from member_io import Commands, emit, member_parser


def main() -> None:
    ap = member_parser()
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--max-poll-records", type=int, default=None)
    ap.add_argument("--hold-after", type=int, default=None)
    args = ap.parse_args()

    from confluent_kafka import ShareConsumer

    conf = {"bootstrap.servers": args.bootstrap, "group.id": args.group,
            "socket.timeout.ms": 20000,
            "error_cb": lambda e: emit("error", msg=str(e))}
    if args.max_poll_records is not None:
        conf["max.poll.records"] = args.max_poll_records
    for kv in args.conf:
        k, _, v = kv.partition("=")
        conf[k] = v
    cmds = Commands()
    c = ShareConsumer(conf)
    c.subscribe(args.topics)
    emit("ready")
    n = 0
    held = False
    while not cmds.close.is_set():
        if held or cmds.hold.is_set():
            cmds.close.wait(0.2)
            continue
        try:
            msgs = c.poll(0.2)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            emit("error", msg=f"poll: {exc!r}")
            time.sleep(0.2)
            continue
        for m in msgs:
            if m.error():
                emit("error", msg=str(m.error()))
                continue
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000.0)
            v = m.value()
            emit("rec", p=m.partition(), o=m.offset(), dc=m.delivery_count(),
                 v=v.decode("utf-8", "replace") if v is not None else None)
            n += 1
        if args.hold_after is not None and n >= args.hold_after:
            held = True
            emit("held", n=n)
    try:
        c.close()
    except Exception as exc:  # noqa: BLE001
        emit("error", msg=f"close: {exc!r}")
    emit("closed")


if __name__ == "__main__":
    main()
