"""Durability under repeated kill -9 (issue 7, item 1).

With `log.flush.interval.messages=1` an acknowledged record has been fsynced before the produce
response is sent. One idempotent acks=all producer keeps producing while the broker is killed
with SIGKILL at random moments, 20 times, and restarted each time; a committer commits offsets
for a group all along. At the end:

- every acknowledged record is stored exactly once, at the offset it was acknowledged with, in
  produce order within its partition (read back with CRC checking on);
- every acknowledged offset commit survived: the committed offset is at least the last one
  acknowledged, and no more than the last one attempted (an unacknowledged commit may or may
  not have been written before the kill).
"""

from __future__ import annotations

import random
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from confluent_util import admin_client, consume_all, create_topic, wait_topic_ready
from partita_compat import BackgroundLoop, unique_name, wait_until
from test_restart import LoopProducer, check_log

PARTITIONS = 3
KILLS = 20


class LoopCommitter(BackgroundLoop):
    """Commits ever-growing offsets for `group` on every partition of `topic`, synchronously,
    from a thread. Remembers the last commit that was acknowledged and the last one attempted."""

    what = "committer thread"

    def __init__(self, bootstrap, topic, group):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "enable.auto.commit": False, "socket.timeout.ms": 5000,
                           "reconnect.backoff.max.ms": 500, "log_level": 2})
        self.topic = topic
        self.acknowledged = 0   # offset of the last commit acknowledged (all partitions)
        self.attempted = 0      # offset of the last commit sent
        self.commits = 0
        self.errors = 0
        super().__init__()

    def _run(self):
        while not self._stop.is_set():
            offset = self.attempted + 1
            self.attempted = offset
            tps = [TopicPartition(self.topic, p, offset * 10 + p) for p in range(PARTITIONS)]
            try:
                result = self.c.commit(offsets=tps, asynchronous=False)
                if all(tp.error is None for tp in result):
                    self.acknowledged = offset
                    self.commits += 1
                else:
                    self.errors += 1
            except KafkaException:
                self.errors += 1
            self._stop.wait(0.02)

    def stop(self):
        super().stop()
        self.c.close()


def committed_offsets(bootstrap, topic, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


@pytest.mark.timeout(300)
def test_acknowledged_records_and_commits_survive_20_kills(start_broker, topic_name):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"random seed {seed}")
    b = start_broker({"log.flush.interval.messages": 1})
    create_topic(admin_client(b.bootstrap), topic_name, PARTITIONS)
    group = unique_name("durability")

    lp = LoopProducer(b.bootstrap, topic_name,
                      **{"message.timeout.ms": 120000, "log_level": 2}).start()
    committer = LoopCommitter(b.bootstrap, topic_name, group).start()
    downtime = []
    try:
        for kill in range(KILLS):
            # Progress since the last restart: the producer and the committer both got through.
            acked, commits = len(lp.acked), committer.commits
            wait_until(lambda: len(lp.acked) >= acked + 50 and committer.commits > commits, 60,
                       f"progress after restart #{kill}")
            time.sleep(rng.uniform(0.0, 1.5))
            b.kill()
            t0 = time.monotonic()
            time.sleep(rng.uniform(0.0, 0.5))
            b.start()
            downtime.append(time.monotonic() - t0)
        acked = len(lp.acked)
        wait_until(lambda: len(lp.acked) >= acked + 50, 60, "progress after the last restart")
    finally:
        lp.stop()
        committer.stop()
    remaining = lp.p.flush(120)
    assert remaining == 0, f"{remaining} records undelivered after the last restart"
    assert not lp.failed, (f"{len(lp.failed)} delivery errors, e.g. "
                           f"{list(lp.failed.items())[:3]}")

    # One more kill with nothing in flight, then read everything back, checking CRCs.
    b.kill()
    b.start()
    wait_topic_ready(admin_client(b.bootstrap), topic_name, PARTITIONS)
    records = consume_all(b.bootstrap, topic_name, range(PARTITIONS), **{"check.crcs": True})
    print(f"{KILLS} kills, mean downtime {sum(downtime) / len(downtime):.2f}s; produced "
          f"{lp.sent}, acknowledged {len(lp.acked)}, stored {len(records)}; commits "
          f"acknowledged {committer.commits}, failed {committer.errors}")
    check_log(records, lp.acked)
    assert len(records) == lp.sent
    for p in range(PARTITIONS):
        assert any(r.partition == p for r in records), f"partition {p} got no record"

    committed = committed_offsets(b.bootstrap, topic_name, group)
    for p in range(PARTITIONS):
        low, high = committer.acknowledged * 10 + p, committer.attempted * 10 + p
        assert low <= committed[p] <= high, (
            f"partition {p}: committed offset {committed[p]}, but the last acknowledged commit "
            f"was {low} and the last attempted {high}")
        assert (committed[p] - p) % 10 == 0, f"partition {p}: {committed[p]} was never committed"
