#!/usr/bin/env python3
"""Commit after processing, with an idempotent handler: a consumer that books payments.

Each record of the topic is a payment: key = payment id, value = amount ("pay-7" -> "12.50").
For every record the consumer

  1. processes it: books the payment in a SQLite ledger, in one database transaction that also
     records the payment id, so that a payment already booked is skipped (the idempotent handler);
  2. only then commits the record's offset to the group (synchronously).

A crash between 1 and 2 leaves the payment booked but its offset not committed; the next consumer
of the partition gets the record again, and step 1 recognises it. A producer that retried and sent
the same payment twice is handled the same way. Nothing is lost (the offset never runs ahead of the
work) and nothing is booked twice (the work is idempotent).

    ledger.py [-b 127.0.0.1:9092] [--topic payments] [--group ledger] [--db ledger.db]
              [--crash-after N]

--crash-after N simulates a crash: the process dies right after booking its Nth record, before
committing that record's offset. The consumer exits by itself once it has read every partition it
owns to the end, and prints the ledger. Needs confluent-kafka (pip install confluent-kafka).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from decimal import Decimal

from confluent_kafka import Consumer, KafkaError, KafkaException


def book(db: sqlite3.Connection, payment_id: str, amount: str) -> bool:
    """The idempotent handler: books the payment unless it is already booked. True if booked."""
    with db:  # one transaction: the payment and its id, or nothing
        cur = db.execute("INSERT OR IGNORE INTO payments (id, amount) VALUES (?, ?)",
                         (payment_id, amount))
        return cur.rowcount == 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-b", "--bootstrap-server", default="127.0.0.1:9092", metavar="HOST:PORT")
    ap.add_argument("--topic", default="payments")
    ap.add_argument("--group", default="ledger")
    ap.add_argument("--db", default="ledger.db")
    ap.add_argument("--crash-after", type=int, default=0, metavar="N",
                    help="die after booking the Nth record, before committing its offset")
    args = ap.parse_args()

    db = sqlite3.connect(args.db)
    db.execute("CREATE TABLE IF NOT EXISTS payments (id TEXT PRIMARY KEY, amount TEXT NOT NULL)")

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_server,
        "group.id": args.group,
        "enable.auto.commit": False,      # we commit, after processing
        "auto.offset.reset": "earliest",  # a new group starts at the first payment
        "enable.partition.eof": True,     # tell us when a partition is read to its end
        # A crashed member is noticed after this long (the default is 45 s).
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    })
    owned: set = set()
    at_end: set = set()

    def on_assign(c, partitions):
        owned.update(p.partition for p in partitions)

    def on_revoke(c, partitions):
        owned.difference_update(p.partition for p in partitions)
        at_end.difference_update(p.partition for p in partitions)

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    handled = 0
    while not (owned and owned <= at_end):
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
                continue
            raise KafkaException(msg.error())
        at_end.discard(msg.partition())
        payment_id = msg.key().decode()
        amount = msg.value().decode()
        booked = book(db, payment_id, amount)                      # 1. process
        print(f"{'booked ' if booked else 'skipped'} {payment_id} {amount:>8}   "
              f"(partition {msg.partition()}, offset {msg.offset()}"
              f"{'' if booked else ', already booked'})", flush=True)
        handled += 1
        if handled == args.crash_after:
            print(f"crash! offset {msg.offset()} was not committed", flush=True)
            os._exit(1)                                            # no commit, no LeaveGroup
        consumer.commit(message=msg, asynchronous=False)            # 2. commit

    consumer.close()
    rows = db.execute("SELECT amount FROM payments").fetchall()
    total = sum((Decimal(a) for (a,) in rows), Decimal("0"))
    print(f"ledger: {len(rows)} payments, total {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
