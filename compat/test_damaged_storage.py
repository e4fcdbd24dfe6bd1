"""Damaged storage (issue 7, item 3): the broker starts on a damaged data directory, truncates or
rebuilds, logs what it dropped, and never serves a damaged batch; a full disk gives producers
KAFKA_STORAGE_ERROR and the broker resumes when space returns.

Everything is read back with librdkafka's `check.crcs=true`, and each value is compared with
what was produced.
"""

from __future__ import annotations

import os
import struct
import subprocess
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from confluent_util import admin_client, consume_all, create_topic, wait_topic_ready
from partita_compat import free_port, wait_until

RECORDS_PER_BATCH = 5


def value_of(i: int, size: int = 200) -> bytes:
    head = f"v{i:06d}-".encode()
    return head + bytes((i * 7 + j) % 251 for j in range(size - len(head)))


def produce_batches(bootstrap, topic, batches, first=0, size=200):
    """`batches` batches of RECORDS_PER_BATCH records each to partition 0, one request each.
    Returns the values in offset order."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1000,
                  "enable.idempotence": True})
    values = []
    for b in range(batches):
        for r in range(RECORDS_PER_BATCH):
            v = value_of(first + b * RECORDS_PER_BATCH + r, size)
            p.produce(topic, value=v, partition=0)
            values.append(v)
        assert p.flush(30) == 0
    return values


def read_back(b, topic):
    wait_topic_ready(admin_client(b.bootstrap), topic, 1)
    records = consume_all(b.bootstrap, topic, [0], **{"check.crcs": True})
    offsets = [r.offset for r in records]
    if offsets:
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), "offset gaps"
    return [r.value for r in records]


def segments(partition_dir: Path):
    return sorted(partition_dir.glob("*.log"))


def batches_in(path: Path):
    """(position, base_offset, size) of each batch of a segment file, by the length fields."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data):
        base, length = struct.unpack(">qi", data[pos:pos + 12])
        out.append((pos, base, length + 12))
        pos += length + 12
    return out


def flip_bit(path: Path, position: int):
    data = bytearray(path.read_bytes())
    data[position] ^= 0x04
    path.write_bytes(bytes(data))


def log_since_last_start(b) -> str:
    return b.log_tail(200_000).rsplit("===== start #", 1)[-1]


def test_truncated_tail_is_cut_to_whole_batches(start_broker, topic_name):
    b = start_broker()
    create_topic(admin_client(b.bootstrap), topic_name, 1)
    values = produce_batches(b.bootstrap, topic_name, 10)
    b.kill()
    seg = segments(b.data_dir / f"{topic_name}-0")[-1]
    last = batches_in(seg)[-1]
    os.truncate(seg, last[0] + last[2] // 2)  # a torn write: half of the last batch

    b.start()
    assert read_back(b, topic_name) == values[:-RECORDS_PER_BATCH]
    log = log_since_last_start(b)
    assert "truncated damaged log segment" in log
    assert f"first_dropped_offset={last[1]}" in log
    assert f"dropped_bytes={last[2] // 2}" in log
    # Appends continue right after the last whole batch.
    more = produce_batches(b.bootstrap, topic_name, 2, first=1000)
    assert read_back(b, topic_name) == values[:-RECORDS_PER_BATCH] + more


@pytest.mark.parametrize("where", ["last segment"])
def test_flipped_bit_truncates_before_the_damaged_batch(start_broker, topic_name, where):
    """After a crash the start-up scan checks every CRC of the segments written since the last
    roll (the recovery point) and truncates at the damage. (Older segments are not read: see
    the next test.)"""
    b = start_broker()
    # Small segments: several of them, a few batches each.
    create_topic(admin_client(b.bootstrap), topic_name, 1, config={"segment.bytes": "4096"})
    values = produce_batches(b.bootstrap, topic_name, 30)
    b.kill()
    segs, seg, base = damage_a_batch(b, topic_name, where)

    b.start()
    assert read_back(b, topic_name) == values[:base]
    log = log_since_last_start(b)
    assert "truncated damaged log segment" in log and "CRC mismatch" in log, log
    assert f"first_dropped_offset={base}" in log
    later = [s for s in segs if s > seg]
    for s in later:
        assert not s.exists(), f"{s.name} follows the damaged segment and should be gone"
        assert f"base_offset={int(s.stem)}" in log, f"dropping {s.name} is not logged"
    more = produce_batches(b.bootstrap, topic_name, 2, first=1000)
    assert read_back(b, topic_name) == values[:base] + more


def damage_a_batch(b, topic_name, where):
    """Flips a bit in the records of a batch in the middle of the last or of an older
    segment; returns the segments, the damaged one and the damaged batch's base offset."""
    segs = segments(b.data_dir / f"{topic_name}-0")
    assert len(segs) >= 4, f"expected several segments, got {len(segs)}"
    seg = segs[-1] if where == "last segment" else segs[1]
    batches = batches_in(seg)
    assert len(batches) >= 3
    pos, base, size = batches[len(batches) // 2]
    flip_bit(seg, pos + 61 + size // 3)  # in the records, which only the CRC covers
    return segs, seg, base


@pytest.mark.parametrize("where,stop", [("last segment", "clean stop"),
                                        ("older segment", "clean stop"),
                                        ("older segment", "kill -9")])
def test_a_flipped_bit_in_a_segment_opened_unread_is_never_served(start_broker, topic_name,
                                                                  where, stop):
    """After a clean stop the start reads no batch, and after kill -9 none of the segments
    before the recovery point (the last roll), so damage made while the broker was down is not
    found then: the scrub that follows reports it (a log line and a metric), the damaged batch
    is refused when read (its CRC is checked on every read), what precedes it is served, and
    nothing is truncated."""
    http_port = free_port()
    b = start_broker({"http.listen": f"127.0.0.1:{http_port}"})
    create_topic(admin_client(b.bootstrap), topic_name, 1, config={"segment.bytes": "4096"})
    values = produce_batches(b.bootstrap, topic_name, 30)
    if stop == "clean stop":
        assert b.stop() == 0
    else:
        b.kill()
    segs, _, base = damage_a_batch(b, topic_name, where)
    sizes = [s.stat().st_size for s in segs]

    b.start()
    assert "truncated damaged log segment" not in log_since_last_start(b)
    assert [s.stat().st_size for s in segments(b.data_dir / f"{topic_name}-0")] == sizes
    wait_topic_ready(admin_client(b.bootstrap), topic_name, 1)
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": topic_name,
                         "enable.auto.commit": False, "check.crcs": True})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    got: list = []
    try:
        def refused_after_what_precedes():
            got.extend(m.value() for m in consumer.consume(100, timeout=0.5)
                       if m.error() is None)
            return len(got) >= base and "refusing to serve a damaged batch" in b.log_text()
        wait_until(refused_after_what_precedes, 60, "the damaged batch refused")
    finally:
        consumer.close()
    assert got == values[:base]
    # The scrub went through every segment opened unread and reported the damage once.
    wait_until(lambda: "scrub checked the segments opened without reading" in b.log_text(), 60,
               "the scrub done")
    found = [line for line in log_since_last_start(b).splitlines()
             if "the scrub found a damaged batch" in line]
    assert len(found) == 1 and f"topic={topic_name}" in found[0], found
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30) as r:
        metrics = r.read().decode()
    assert (f'partita_log_damaged_batches_total{{topic="{topic_name}",partition="0"}} 1'
            in metrics), [l for l in metrics.splitlines() if "damaged" in l]


def test_missing_and_corrupt_indexes_are_rebuilt(start_broker, topic_name):
    b = start_broker({"log.index.interval.bytes": 1024})
    create_topic(admin_client(b.bootstrap), topic_name, 1, config={"segment.bytes": "8192"})
    values = produce_batches(b.bootstrap, topic_name, 30)
    b.kill()
    pdir = b.data_dir / f"{topic_name}-0"
    indexes = sorted(pdir.glob("*.index"))
    assert len(indexes) >= 3
    good = indexes[0].read_bytes()
    indexes[0].unlink()
    indexes[1].write_bytes(b"\xff" * 24)  # entries pointing past the end
    sorted(pdir.glob("*.timeindex"))[0].write_bytes(b"\x01\x02\x03")  # not whole entries

    b.start()
    assert read_back(b, topic_name) == values
    assert indexes[0].read_bytes() == good
    assert "rebuilt index file" in log_since_last_start(b)
    # Reads from the middle go through the rebuilt indexes.
    records = consume_all(b.bootstrap, topic_name, [0], **{"check.crcs": True})
    assert [r.value for r in records if r.offset >= 77] == values[77:]


# --- A full disk -------------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """An 8 MiB tmpfs mounted where the first broker's data directory goes."""
    mount_point = tmp_path / "data0"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_gives_storage_errors_then_recovers(small_tmpfs, start_broker, topic_name):
    b = start_broker()
    assert b.data_dir == small_tmpfs
    create_topic(admin_client(b.bootstrap), topic_name, 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
                  "retries": 0, "message.timeout.ms": 10000})
    acked, errors = [], []

    def send(value):
        result = []
        p.produce(topic_name, value=value, partition=0,
                  on_delivery=lambda err, msg: result.append(err))
        assert p.flush(15) == 0
        if result[0] is None:
            acked.append(value)
        else:
            errors.append(result[0])

    i = 0
    while len(errors) < 5 and i < 400:  # 64 KiB records: the disk fills in about 120
        send(value_of(i, 64 * 1024))
        i += 1
    assert b.is_running(), "the broker died on a full disk"
    assert errors, f"no error after {i} records of 64 KiB on an 8 MiB disk"
    codes = {e.code() for e in errors}
    assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, f"errors: {errors[:3]}"
    print(f"full after {len(acked)} records of 64 KiB; then {len(errors)} storage errors")
    assert "produce failed: storage error" in b.log_text()
    # Nothing acknowledged was damaged, and nothing refused was stored.
    assert read_back(b, topic_name) == acked

    # An offset commit on the full disk fails cleanly (its record cannot be appended).
    group = f"{topic_name}-readers"
    committer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                          "enable.auto.commit": False})
    try:
        committer.commit(offsets=[TopicPartition(topic_name, 0, 3)], asynchronous=False)
        full_commit = "accepted"
    except KafkaException as e:
        full_commit = e.args[0].name()
    print(f"offset commit on the full disk: {full_commit}")
    assert b.is_running(), "the broker died on an offset commit to a full disk"

    # Space returns: producing works again, from where it stopped.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    refused = len(errors)
    for j in range(20):
        send(value_of(10_000 + j, 64 * 1024))
    assert len(errors) == refused, f"still failing after space returned: {errors[refused:][:3]}"
    assert read_back(b, topic_name) == acked
    # The refused commit left nothing behind; the next one works.
    before = committer.committed([TopicPartition(topic_name, 0)], timeout=30)[0].offset
    assert before != 3, "a commit refused for want of space is visible"
    committer.commit(offsets=[TopicPartition(topic_name, 0, 7)], asynchronous=False)
    committer.close()

    # And a restart on the same directory finds everything intact, the commit included.
    b.kill()
    b.start()
    assert read_back(b, topic_name) == acked
    reader = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    try:
        committed = reader.committed([TopicPartition(topic_name, 0)], timeout=30)
    finally:
        reader.close()
    assert committed[0].offset == 7
