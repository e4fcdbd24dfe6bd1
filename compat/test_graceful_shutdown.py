"""Graceful shutdown and restart under load, with real clients over real sockets.

Requirement: "Graceful shutdown and restart under load: in-flight produce requests are either
acknowledged and durable or failed with a retriable error; consumers resume at their committed
offsets."

The broker runs with the default flush policy (no `log.flush.interval.messages=1`): a graceful
stop has to flush by itself. Three confluent-kafka producers produce as fast as they can (up to
RATE records a second each) to a 6-partition topic, each from its own thread, and remember every
delivery report:

- two idempotent acks=all producers (librdkafka retries in-flight batches on its own, the broker
  must neither lose nor duplicate them);
- one plain acks=1 producer with retries off (`message.send.max.retries=0`), so that every
  produce request in flight when the broker goes away surfaces as a delivery error, which must
  be a retriable one.

A consumer group consumes at the same time (no auto commit; a synchronous commit of the next
offsets after each processed batch). Each cycle SIGTERMs (or SIGINTs, every other cycle) the
broker while all of that runs, checks it exits 0 within a few seconds, restarts it on the same
data directory and port, checks that every offset commit acknowledged before the stop is still
there, and adds a consumer to the group: the rebalance makes every member resume from the
group's committed offsets, and the first record each member then gets on each partition must be
at the committed offset. At the end (after one more stop and restart with nothing in flight)
everything is read back: every acknowledged record is at its acknowledged offset, nothing is
stored twice, every partition is gap-free, every delivery error is retriable, and the group
consumed every offset.

A second test checks that a long-polling fetch (a consumer waiting for data on an idle
partition) does not hold a graceful stop for its whole max wait.

confluent-kafka's KafkaError.retriable() is only set for errors of its transactional and admin
APIs (delivery reports always say False), so retriable here means: retriable() or a code Kafka
documents as retriable (RetriableException) or librdkafka's local transport/timeout errors.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from confluent_util import (admin_client, consume_all, create_topic, high_watermarks,
                            wait_topic_ready)
from partita_compat import BackgroundLoop, unique_name, wait_until
from test_restart import LoopProducer

PARTITIONS = 6
CYCLES = 4
# A graceful stop answers what is in flight and flushes: it must not take anywhere near the
# broker's own 30 s "connections still open" timeout.
STOP_LIMIT_S = 10.0
# How long the harness lets a stopping broker take before killing it (above the broker's 30 s
# timeout, so that a stop held by that timeout is measured rather than cut short).
STOP_WAIT_S = 45.0
# Records a second per producer (see TaggedProducer).
RATE = 3000
QUIET = {"log_level": 2}  # librdkafka: no "Connection refused" noise while the broker is down

RETRIABLE = {
    KafkaError._TRANSPORT, KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.KAFKA_STORAGE_ERROR,
}


def retriable(err: KafkaError) -> bool:
    return err.retriable() or err.code() in RETRIABLE


def error_name(err: KafkaError) -> str:
    return f"{err.name()}({err.code()})"


class TaggedProducer(LoopProducer):
    """LoopProducer producing `seq-NNNNNNN-<tag>` round-robin over the partitions, as fast as it
    can up to RATE records a second (without the cap this broker takes ~35,000 a second from the
    three, and the read-back of a million records would dominate the run on a small machine;
    at the cap batches are still always in flight), with a bounded queue; it also remembers
    fatal client errors."""

    def __init__(self, bootstrap, topic, tag, **conf):
        self.tag = tag
        self.fatal = []
        c = {"queue.buffering.max.messages": 5000, "error_cb": self._on_error}
        c.update(QUIET)
        c.update(conf)
        super().__init__(bootstrap, topic, **c)

    def _on_error(self, err):
        if err.fatal():
            self.fatal.append(err)

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set():
            n = self.sent
            if n >= RATE * (time.monotonic() - t0):
                self.p.poll(0.001)
                continue
            try:
                self.p.produce(self.topic, partition=n % PARTITIONS, key=f"k{n % 13}".encode(),
                               value=f"seq-{n:07d}-{self.tag}".encode(),
                               on_delivery=self._on_delivery)
                self.sent += 1
                self.p.poll(0)
            except BufferError:
                self.p.poll(0.005)


class GroupMember(BackgroundLoop):
    """One consumer of the group, consuming from its own thread.

    It processes each batch, then commits the next offsets synchronously. It checks, per
    partition, that the first record after each assignment is at the committed offset (read with
    committed() in on_assign) and that records then follow one another without a gap or a rewind.
    """

    def __init__(self, name, bootstrap, topic, group, cycle):
        self.name = name
        self.cycle = cycle         # callable: the test's current cycle (restarts so far)
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "heartbeat.interval.ms": 500, "reconnect.backoff.max.ms": 500,
                           **QUIET})
        self.lock = threading.Lock()
        self.assigned = set()
        self.expect = {}           # partition -> next offset expected
        self.fresh = set()         # assigned partitions with no record since the assignment
        self.progressed = set()    # assigned partitions with a commit acked since the assignment
        self.assignments = 0
        self.resumes = []          # (cycle, partition, committed offset at assignment, first got)
        self.jumps = []            # (partition, expected offset, offset got) within an assignment
        self.processed = []        # (partition, offset)
        self.commit_acked = {}     # partition -> highest committed offset acknowledged
        self.commit_attempted = {}  # partition -> highest offset sent in a commit
        self.commit_errors = Counter()
        self.consume_errors = Counter()
        super().__init__()

    def _on_assign(self, consumer, partitions):
        # The group's committed offsets, as the client itself is about to use them.
        committed = wait_until(lambda: self._committed(consumer, partitions), 60,
                               f"{self.name}: committed offsets at assignment")
        with self.lock:
            self.assignments += 1
            for tp in committed:
                # No commit yet: auto.offset.reset=earliest, and the log starts at 0.
                self.expect[tp.partition] = tp.offset if tp.offset >= 0 else 0
                self.assigned.add(tp.partition)
                self.fresh.add(tp.partition)
                self.progressed.discard(tp.partition)

    @staticmethod
    def _committed(consumer, partitions):
        tps = consumer.committed(partitions, timeout=10)
        if any(tp.error is not None for tp in tps):
            return None
        return tps

    def _on_revoke(self, consumer, partitions):
        with self.lock:
            for tp in partitions:
                self.assigned.discard(tp.partition)
                self.fresh.discard(tp.partition)
                self.progressed.discard(tp.partition)
                self.expect.pop(tp.partition, None)

    def _run(self):
        self.c.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_revoke)
        while not self._stop.is_set():
            msgs = self.c.consume(num_messages=500, timeout=0.2)
            nexts = {}
            with self.lock:
                for m in msgs:
                    if m.error():
                        self.consume_errors[error_name(m.error())] += 1
                        continue
                    p, o = m.partition(), m.offset()
                    if p in self.fresh:
                        self.fresh.discard(p)
                        self.resumes.append((self.cycle(), p, self.expect.get(p), o))
                    elif self.expect.get(p) != o:
                        self.jumps.append((p, self.expect.get(p), o))
                    self.expect[p] = o + 1
                    self.processed.append((p, o))
                    nexts[p] = o + 1
                for p, o in nexts.items():
                    self.commit_attempted[p] = max(o, self.commit_attempted.get(p, -1))
            if not nexts:
                continue
            try:
                result = self.c.commit(
                    offsets=[TopicPartition(self.topic, p, o) for p, o in nexts.items()],
                    asynchronous=False)
            except KafkaException as e:
                with self.lock:
                    self.commit_errors[error_name(e.args[0])] += 1
                continue
            with self.lock:
                for tp in result:
                    if tp.error is None:
                        self.commit_acked[tp.partition] = max(
                            tp.offset, self.commit_acked.get(tp.partition, -1))
                        if tp.partition in self.assigned:
                            self.progressed.add(tp.partition)
                    else:
                        self.commit_errors[error_name(tp.error)] += 1
        self.c.close()

    @property
    def what(self):
        return f"{self.name}: consumer thread"


class Group:
    def __init__(self, bootstrap, topic):
        self.bootstrap = bootstrap
        self.topic = topic
        self.name = unique_name("graceful")
        self.members = []
        self.cycle = 0

    def add(self):
        m = GroupMember(f"member-{len(self.members)}", self.bootstrap, self.topic, self.name,
                        lambda: self.cycle)
        self.members.append(m.start())
        return m

    def settled(self):
        """Every partition is assigned to exactly one member, and each member has consumed and
        committed on each of its partitions since its last assignment."""
        owners = Counter()
        for m in self.members:
            with m.lock:
                if not m.assigned or m.progressed != m.assigned:
                    return False
                owners.update(m.assigned)
        return set(owners) == set(range(PARTITIONS)) and all(n == 1 for n in owners.values())

    def _merge(self, attr):
        out = {}
        for m in self.members:
            with m.lock:
                for p, o in getattr(m, attr).items():
                    out[p] = max(o, out.get(p, -1))
        return out

    def commit_acked(self):
        return self._merge("commit_acked")

    def commit_attempted(self):
        return self._merge("commit_attempted")

    def processed_count(self):
        return sum(len(m.processed) for m in self.members)


def group_committed(bootstrap, topic, group):
    """The group's committed offsets, asked by a client that is not a member (retried while the
    restarted broker is not ready to answer)."""
    def ask():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False, **QUIET})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
            if any(tp.error is not None for tp in tps):
                raise AssertionError(f"committed offsets: {tps}")
            return {tp.partition: tp.offset for tp in tps}
        finally:
            c.close()

    return wait_until(ask, 60, f"the committed offsets of group {group}")


def graceful_stop(broker, sig):
    """SIGTERM or SIGINT the broker and wait for it to exit: (exit status, seconds taken)."""
    t0 = time.monotonic()
    status = broker.stop(timeout=STOP_WAIT_S, sig=sig)
    return status, time.monotonic() - t0


def seq_tag(value: bytes):
    _, seq, tag = value.decode().split("-")
    return int(seq), tag


@pytest.mark.timeout(300)
def test_graceful_restarts_under_load(start_broker, topic_name):
    b = start_broker()  # default flush policy: the stop itself must make the log durable
    create_topic(admin_client(b.bootstrap), topic_name, PARTITIONS)

    producers = [
        # LoopProducer's defaults: idempotent, acks=all.
        TaggedProducer(b.bootstrap, topic_name, "idemA", **{"message.timeout.ms": 120000}),
        TaggedProducer(b.bootstrap, topic_name, "idemB", **{"message.timeout.ms": 120000}),
        TaggedProducer(b.bootstrap, topic_name, "plain",
                       **{"acks": 1, "enable.idempotence": False,
                          "message.send.max.retries": 0, "message.timeout.ms": 120000}),
    ]
    group = Group(b.bootstrap, topic_name)
    stops = []             # (signal name, exit status, seconds)
    commit_checks = []     # (cycle, acked before the stop, committed after the restart)
    t_start = time.monotonic()
    try:
        for p in producers:
            p.start()
        group.add()
        group.add()
        wait_until(group.settled, 60, "the first two members to be assigned and consuming")

        for cycle in range(1, CYCLES + 1):
            # Load on everything: every producer and the group got through since the last cycle.
            acked = [len(p.acked) for p in producers]
            consumed = group.processed_count()
            wait_until(lambda: all(len(p.acked) >= a + 300 for p, a in zip(producers, acked))
                       and group.processed_count() >= consumed + 300 and group.settled(),
                       60, f"producers and consumers making progress before stop #{cycle}")

            sig = signal.SIGTERM if cycle % 2 else signal.SIGINT
            status, took = graceful_stop(b, sig)
            stops.append((sig.name, status, took))
            print(f"stop #{cycle} ({sig.name}): exit status {status} after {took:.3f}s; acked so "
                  f"far {[len(p.acked) for p in producers]}, consumed {group.processed_count()}")
            assert status == 0, f"broker exited with status {status} on {sig.name}"
            assert took < STOP_LIMIT_S, f"graceful stop #{cycle} took {took:.1f}s"
            # Every commit acknowledged before the stop (the broker is down: no more acks).
            acked_commits = group.commit_acked()

            b.start()
            committed = group_committed(b.bootstrap, topic_name, group.name)
            attempted = group.commit_attempted()
            commit_checks.append((cycle, acked_commits, committed))
            for p in range(PARTITIONS):
                assert acked_commits.get(p, -1001) <= committed[p] <= attempted.get(p, -1001), (
                    f"after restart #{cycle}, partition {p}: committed offset {committed[p]}, but "
                    f"the last commit acknowledged before the stop was "
                    f"{acked_commits.get(p)} and the highest ever sent {attempted.get(p)}")
            # A new member: the rebalance makes every member resume from the committed offsets.
            group.cycle = cycle
            group.add()
            wait_until(group.settled, 60, f"the group to settle after restart #{cycle}")

        acked = [len(p.acked) for p in producers]
        wait_until(lambda: all(len(p.acked) >= a + 300 for p, a in zip(producers, acked)), 60,
                   "producers making progress after the last restart")
    finally:
        for p in producers:
            p.stop()
    for p in producers:
        remaining = p.p.flush(120)
        assert remaining == 0, f"{p.tag}: {remaining} records undelivered"
    ends = high_watermarks(b.bootstrap, topic_name, range(PARTITIONS))
    try:
        wait_until(lambda: group.commit_acked() == ends, 60,
                   f"the group to consume and commit up to the high watermarks {ends}")
    finally:
        for m in group.members:
            m.stop()

    # One more graceful stop with nothing in flight, then read everything back.
    status, took = graceful_stop(b, signal.SIGTERM)
    stops.append(("SIGTERM (idle)", status, took))
    assert status == 0 and took < STOP_LIMIT_S, f"idle stop: status {status} after {took:.1f}s"
    b.start()
    wait_topic_ready(admin_client(b.bootstrap), topic_name, PARTITIONS)
    final_commits = group_committed(b.bootstrap, topic_name, group.name)
    assert final_commits == ends, (f"the group's final commits {final_commits} did not survive "
                                   f"the last stop (high watermarks {ends})")
    assert high_watermarks(b.bootstrap, topic_name, range(PARTITIONS)) == ends
    records = consume_all(b.bootstrap, topic_name, range(PARTITIONS), ends=ends,
                          **{"check.crcs": True})
    runtime = time.monotonic() - t_start

    # Figures.
    print(f"stops: " + ", ".join(f"{s} -> {st} in {t:.3f}s" for s, st, t in stops))
    for p in producers:
        codes = Counter(error_name(e) for e in p.failed.values())
        print(f"producer {p.tag}: sent {p.sent}, acknowledged {len(p.acked)}, failed "
              f"{len(p.failed)} {dict(codes)}, fatal errors {len(p.fatal)}")
    for m in group.members:
        print(f"consumer {m.name}: {len(m.processed)} records, {m.assignments} assignments, "
              f"{len(m.resumes)} resumes checked, commit errors {dict(m.commit_errors)}, "
              f"consume errors {dict(m.consume_errors)}")
    for cycle, before, after in commit_checks:
        print(f"restart #{cycle}: committed acked before the stop {dict(sorted(before.items()))}"
              f", committed after the restart {dict(sorted(after.items()))}")
    print(f"stored {len(records)} records, high watermarks {ends}; {runtime:.1f}s under test")

    # 1. The log: every partition gap-free from 0 to its high watermark, nothing stored twice.
    by_partition = defaultdict(list)
    for r in records:
        by_partition[r.partition].append(r)
    for p in range(PARTITIONS):
        offs = [r.offset for r in by_partition[p]]
        assert offs == list(range(ends[p])), f"partition {p}: offsets are not 0..{ends[p] - 1}"
    where = defaultdict(list)
    for r in records:
        where[r.value].append((r.partition, r.offset))
    dups = [(v, locs) for v, locs in where.items() if len(locs) > 1]
    assert not dups, f"{len(dups)} records stored more than once, e.g. {dups[:5]}"

    for p in producers:
        # 2. Every acknowledged record is where its acknowledgement said.
        wrong = []
        for seq, at in p.acked.items():
            locs = where.get(f"seq-{seq:07d}-{p.tag}".encode(), [])
            if locs != [at]:
                wrong.append((seq, at, locs))
        assert not wrong, (f"{p.tag}: {len(wrong)} of {len(p.acked)} acknowledged records not "
                           f"at their acknowledged offset (seq, acked at, stored at): {wrong[:5]}")
        # 3. Every failure is retriable; none was also acknowledged.
        bad = {s: e for s, e in p.failed.items() if not retriable(e)}
        assert not bad, f"{p.tag}: non-retriable delivery errors: {list(bad.items())[:5]}"
        both = set(p.failed) & set(p.acked)
        assert not both, f"{p.tag}: records both acknowledged and failed: {sorted(both)[:5]}"
        assert not p.fatal, f"{p.tag}: fatal client errors {p.fatal[:3]}"
        assert len(p.acked) + len(p.failed) == p.sent
        # 4. Within a partition, a producer's records are stored in the order produced.
        for part, recs in by_partition.items():
            seqs = [seq_tag(r.value)[0] for r in recs if seq_tag(r.value)[1] == p.tag]
            assert seqs == sorted(seqs), f"{p.tag}: partition {part} out of produce order"
        stored_failed = sum(1 for s in p.failed if f"seq-{s:07d}-{p.tag}".encode() in where)
        print(f"producer {p.tag}: {stored_failed} of {len(p.failed)} failed records were stored "
              f"anyway (request applied, response lost)")

    # 5. Consumers: each resumed at the committed offset after every (re)assignment, never
    # skipped nor rewound within one, and the group consumed every offset.
    resumed = defaultdict(set)
    for m in group.members:
        wrong = [r for r in m.resumes if r[2] != r[3]]
        assert not wrong, (f"{m.name}: first record after an assignment not at the committed "
                           f"offset (cycle, partition, committed, first offset consumed): "
                           f"{wrong[:5]}")
        for cycle, p, _, _ in m.resumes:
            resumed[cycle].add(p)
    for cycle in range(1, CYCLES + 1):
        assert resumed[cycle] == set(range(PARTITIONS)), (
            f"after restart #{cycle} only partitions {sorted(resumed[cycle])} were resumed from "
            f"their committed offsets")
        assert not m.jumps, (f"{m.name}: records skipped or consumed again within an assignment "
                             f"(partition, expected, got): {m.jumps[:5]}")
    seen = defaultdict(set)
    for m in group.members:
        for p, o in m.processed:
            seen[p].add(o)
    for p in range(PARTITIONS):
        missing = set(range(ends[p])) - seen[p]
        assert not missing, (f"partition {p}: the group never consumed {len(missing)} offsets, "
                             f"e.g. {sorted(missing)[:10]}")
    total = sum(len(m.processed) for m in group.members)
    print(f"group consumed {total} records for {len(records)} stored "
          f"({total - len(records)} consumed twice); partitions resumed from their committed "
          f"offset per restart: { {c: len(ps) for c, ps in sorted(resumed.items())} }")


def test_stop_does_not_wait_for_a_long_polling_fetch(start_broker, topic_name):
    """A fetch waiting for data that will not come (fetch.wait.max.ms=15 s on an idle partition)
    must not hold a graceful stop: the broker answers it early (or drops it) and exits promptly,
    well before the fetch's max wait. (librdkafka sends its next fetch as soon as one is answered,
    so a broker that still reads requests after the stop began may wait for a second one.)"""
    b = start_broker()
    create_topic(admin_client(b.bootstrap), topic_name, 1)
    stats = {}
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique_name("longpoll"),
                  "enable.auto.commit": False, "fetch.wait.max.ms": 15000,
                  "statistics.interval.ms": 100,
                  "stats_cb": lambda s: stats.update(json.loads(s)), **QUIET})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])

        def fetch_waiting():
            c.consume(num_messages=1, timeout=0.1)
            brokers = [v for v in stats.get("brokers", {}).values() if v.get("nodeid", -1) >= 0]
            parts = stats.get("topics", {}).get(topic_name, {}).get("partitions", {})
            return (parts.get("0", {}).get("fetch_state") == "active"
                    and any(v.get("waitresp_cnt", 0) >= 1 for v in brokers))

        wait_until(fetch_waiting, 30, "a fetch request in flight (long-polling)")
        status, took = graceful_stop(b, signal.SIGTERM)
        print(f"stop with a long-polling fetch in flight: status {status} after {took:.3f}s")
        assert status == 0
        assert took < 5.0, (f"graceful stop took {took:.1f}s: it waited for a long-polling fetch "
                            f"(fetch.wait.max.ms=15000) instead of answering it")
    finally:
        c.close()
