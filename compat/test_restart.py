"""Durability: with log.flush.interval.messages=1, every acknowledged record survives `kill -9`."""

from __future__ import annotations

import re
import time
from collections import defaultdict

import pytest
from confluent_kafka import Producer

from confluent_util import admin_client, consume_all, create_topic, produce, wait_topic_ready
from partita_compat import BackgroundLoop, wait_until

PARTITIONS = 3


class LoopProducer(BackgroundLoop):
    """An idempotent acks=all producer producing numbered records from a thread until stopped.

    Values are `seq-NNNNNNN`; keys spread records over the partitions. A record counts as
    acknowledged when its delivery report arrives without error.
    """

    what = "producer thread"

    def __init__(self, bootstrap, topic, **conf):
        c = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
             "linger.ms": 2, "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 500}
        c.update(conf)
        self.p = Producer(c)
        self.topic = topic
        self.acked = {}       # seq -> (partition, offset)
        self.failed = {}      # seq -> KafkaError
        self.sent = 0
        super().__init__()

    def _on_delivery(self, err, msg):
        seq = int(msg.value().decode().split("-")[1])
        if err is None:
            self.acked[seq] = (msg.partition(), msg.offset())
        else:
            self.failed[seq] = err

    def _run(self):
        while not self._stop.is_set():
            value = f"seq-{self.sent:07d}".encode()
            try:
                self.p.produce(self.topic, key=f"k{self.sent % 13}".encode(), value=value,
                               on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self.p.poll(0.001)


def check_log(records, acked):
    """Every acknowledged record is present exactly once; nothing is duplicated; each partition
    holds records in the order they were produced."""
    seqs = [int(r.value.decode().split("-")[1]) for r in records]
    counts = defaultdict(int)
    for s in seqs:
        counts[s] += 1
    dups = sorted(s for s, n in counts.items() if n > 1)
    assert not dups, f"{len(dups)} records stored more than once, e.g. {dups[:10]}"
    missing = sorted(s for s in acked if s not in counts)
    assert not missing, (f"{len(missing)} of {len(acked)} acknowledged records lost, "
                         f"e.g. {missing[:10]}")
    by_partition = defaultdict(list)
    for r in records:
        by_partition[r.partition].append(r)
    for p, recs in by_partition.items():
        offs = [r.offset for r in recs]
        assert offs == list(range(offs[0], offs[0] + len(offs))), f"partition {p}: offset gaps"
        ps = [int(r.value.decode().split("-")[1]) for r in recs]
        assert ps == sorted(ps), f"partition {p}: records out of produce order"
    # Acknowledged offsets are where the records really are.
    where = {int(r.value.decode().split("-")[1]): (r.partition, r.offset) for r in records}
    wrong = [(s, acked[s], where[s]) for s in acked if acked[s] != where[s]]
    assert not wrong, f"acknowledged at one offset, stored at another: {wrong[:5]}"


def test_acknowledged_records_survive_kill9(start_broker, topic_name):
    b = start_broker({"log.flush.interval.messages": 1})
    create_topic(admin_client(b.bootstrap), topic_name, PARTITIONS)

    lp = LoopProducer(b.bootstrap, topic_name).start()
    try:
        wait_until(lambda: len(lp.acked) >= 500, 60, "500 acknowledged records before the kill")
        b.kill()  # kill -9 mid-stream: records are in flight
        # The producer keeps producing into a dead broker for a moment.
        time.sleep(0.3)
    finally:
        lp.stop()
    acked_before = dict(lp.acked)
    # Give up on everything unacknowledged; what is in flight may or may not have been written.
    lp.p.purge()
    lp.p.flush(10)
    acked = dict(lp.acked)
    assert len(acked) >= len(acked_before)

    b.restart()
    wait_topic_ready(admin_client(b.bootstrap), topic_name, PARTITIONS)
    records = consume_all(b.bootstrap, topic_name, range(PARTITIONS))
    print(f"produced {lp.sent}, acknowledged {len(acked)} ({len(acked_before)} before the kill), "
          f"failed {len(lp.failed)}, stored {len(records)}")
    check_log(records, acked)
    assert len(records) >= len(acked)


@pytest.mark.timeout(180)
def test_idempotent_producer_rides_through_kill9(start_broker, topic_name):
    """The same producer keeps going across kill -9 and restart: its retried batches must be
    neither lost nor duplicated (the broker restores producer state from its log)."""
    b = start_broker({"log.flush.interval.messages": 1})
    create_topic(admin_client(b.bootstrap), topic_name, PARTITIONS)

    lp = LoopProducer(b.bootstrap, topic_name).start()
    try:
        wait_until(lambda: len(lp.acked) >= 500, 60, "500 acknowledged records before the kill")
        b.kill()
        time.sleep(0.3)
        b.start()
        n = len(lp.acked)
        wait_until(lambda: len(lp.acked) >= n + 500, 60,
                   "500 more acknowledged records after the restart")
    finally:
        lp.stop()
    remaining = lp.p.flush(60)
    assert remaining == 0, f"{remaining} records undelivered 60 s after the restart"
    assert not lp.failed, (f"{len(lp.failed)} delivery errors, e.g. "
                           f"{list(lp.failed.items())[:3]}")
    assert len(lp.acked) == lp.sent

    records = consume_all(b.bootstrap, topic_name, range(PARTITIONS))
    print(f"produced {lp.sent}, acknowledged {len(lp.acked)}, stored {len(records)}")
    check_log(records, lp.acked)
    assert len(records) == lp.sent, f"{len(records)} records stored, {lp.sent} produced"


def test_clean_shutdown_keeps_everything(start_broker, topic_name):
    """Ctrl-C (SIGINT) with the default flush policy: the broker exits 0 promptly, and after a
    restart on the same data directory every record produced before is there."""
    b = start_broker()
    create_topic(admin_client(b.bootstrap), topic_name, PARTITIONS)
    sent = [{"key": f"k{i}".encode(), "value": f"clean-{i:05d}".encode()} for i in range(600)]
    reports = produce(b.bootstrap, topic_name, sent, acks=1, **{"compression.type": "gzip"})
    assert all(d.err is None for d in reports)

    status = b.stop()
    assert status == 0, f"broker exited with status {status} on SIGINT"
    # Each partition recorded its clean shutdown, so the next start reads none of its batches.
    records_left = sorted(b.data_dir.rglob("clean-shutdown"))
    assert {p.parent.name for p in records_left} >= {f"{topic_name}-{p}" for p in range(PARTITIONS)}
    where = {d.value: (d.partition, d.offset) for d in reports}

    def restart_and_check(kill: bool) -> str:
        """Restarts the broker, checks every record is where it was acknowledged, and
        returns what the broker logged while starting."""
        logged_before = len(b.log_text())
        b.restart(kill=kill)
        wait_topic_ready(admin_client(b.bootstrap), topic_name, PARTITIONS)
        records = consume_all(b.bootstrap, topic_name, range(PARTITIONS))
        assert sorted(r.value for r in records) == sorted(r["value"] for r in sent)
        assert all(where[r.value] == (r.partition, r.offset) for r in records)
        return b.log_text()[logged_before:]

    started = restart_and_check(kill=False)
    scanned = [line for line in started.splitlines()
               if "recovered the log by reading" in line and topic_name in line]
    assert not scanned, scanned
    # A record stays while its partition is as it says, and goes with the first change: a
    # record produced to each partition deletes them all.
    topic_records = lambda: sorted(b.data_dir.rglob(f"{topic_name}-*/clean-shutdown"))  # noqa: E731
    assert len(topic_records()) == PARTITIONS
    more = [{"value": f"after-{p}".encode(), "partition": p} for p in range(PARTITIONS)]
    reports = produce(b.bootstrap, topic_name, more, acks=1)
    assert all(d.err is None for d in reports)
    sent += more
    where.update({d.value: (d.partition, d.offset) for d in reports})
    assert not topic_records(), "a record outlived a change of its partition"
    # After kill -9 there is no record: the partitions are read again, and nothing is lost.
    started = restart_and_check(kill=True)
    scanned = [line for line in started.splitlines()
               if "recovered the log by reading" in line and topic_name in line]
    assert len(scanned) == PARTITIONS, started[-3000:]


def test_a_restart_after_kill_reads_only_the_segments_past_the_recovery_point(start_broker,
                                                                              topic_name):
    """Each roll records the segments it closed (synced) as the partition's recovery point:
    after kill -9 the broker reads only the segments written since, and every record is still
    where it was acknowledged."""
    b = start_broker()
    create_topic(admin_client(b.bootstrap), topic_name, 1, config={"segment.bytes": "1024"})
    sent = []
    for round_ in range(20):
        records = [{"value": f"point-{round_:02d}-{i:02d}".encode() + b"." * 40}
                   for i in range(10)]
        reports = produce(b.bootstrap, topic_name, records, acks=1)
        assert all(d.err is None for d in reports)
        sent += reports
    assert len(sorted(b.data_dir.rglob(f"{topic_name}-0/*.log"))) > 5
    logged_before = len(b.log_text())
    b.restart(kill=True)
    wait_topic_ready(admin_client(b.bootstrap), topic_name, 1)
    records = consume_all(b.bootstrap, topic_name, [0])
    assert [(r.offset, r.value) for r in records] == [(d.offset, d.value) for d in sent]
    started = b.log_text()[logged_before:]
    lines = [line for line in started.splitlines()
             if "recovered the log by reading" in line and topic_name in line]
    # The active segment alone (a roll puts the batch that caused it there), the closed ones
    # trusted.
    assert len(lines) == 1, started[-3000:]
    assert re.search(r"\bsegments=1\b", lines[0]), lines[0]
    trusted = int(re.search(r"trusted_segments=(\d+)", lines[0]).group(1))
    assert trusted > 5, lines[0]
