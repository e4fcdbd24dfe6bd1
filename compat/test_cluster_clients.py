"""Unmodified clients against three brokers in cluster mode: the Java reference client's
CompatTest (admin, idempotent producer, consumer, every codec), kcat (also on the oldest
request versions and the v1 message format), and a confluent-kafka consumer group whose
members bootstrap from different brokers and commit after processing."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from partita_compat import unique_name, wait_until
from test_cluster import produce
from test_java import _classpath, compiled_java  # noqa: F401 - the fixture

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def three(cluster):
    return [cluster.start_broker(n) for n in (1, 2, 3)]


@pytest.mark.timeout(300)
def test_java_client_through_three_brokers(cluster, compiled_java):  # noqa: F811
    three(cluster)
    proc = subprocess.run(["java", "-cp", _classpath(compiled_java), "CompatTest",
                           cluster.bootstrap(), unique_name("java"), "3"],
                          capture_output=True, text=True, timeout=240)
    out = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, f"CompatTest exited {proc.returncode}\n{out}"
    assert proc.stdout.strip().endswith("OK"), out


@pytest.mark.skipif(KCAT is None, reason="kcat not found (apt-get install -y kcat)")
def test_kcat_produces_through_one_broker_and_consumes_through_another(cluster):
    brokers = three(cluster)
    topic = unique_name("kcat")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=3,
                                           replication_factor=1)]).values():
        f.result(30)
    lines = [f"k{i % 7}:value {i}" for i in range(300)]
    subprocess.run([KCAT, "-b", brokers[1].bootstrap, "-t", topic, "-K:", "-P",
                    "-X", "topic.metadata.refresh.interval.ms=1000"],
                   input="\n".join(lines) + "\n", text=True, check=True, timeout=60)
    out = subprocess.run([KCAT, "-b", brokers[2].bootstrap, "-t", topic, "-C", "-e",
                          "-o", "beginning", "-f", "%k:%s\n"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert sorted(out.split()) == sorted(" ".join(lines).split())
    # Per key, in the order produced (one key goes to one partition).
    for key in {line.split(":")[0] for line in lines}:
        sent = [line for line in lines if line.startswith(key + ":")]
        got = [line for line in out.splitlines() if line.startswith(key + ":")]
        assert got == sent, key


@pytest.mark.skipif(KCAT is None, reason="kcat not found (apt-get install -y kcat)")
def test_kcat_on_the_oldest_versions_through_two_brokers(cluster):
    """Requests older than the codec knows are bridged in front of the same handlers in
    cluster mode: produce through one broker, a group member through the other reads half and
    commits as it closes, the next member resumes there."""
    brokers = [cluster.start_broker(n) for n in (1, 2)]
    topic, group = unique_name("kcat-old"), unique_name("kcat-old-g")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1,
                                           replication_factor=1)]).values():
        f.result(30)

    def kcat(broker, *args, stdin=None):
        proc = subprocess.run([KCAT, "-b", broker.bootstrap, "-X", "api.version.request=false",
                               "-X", "broker.version.fallback=0.10.0", *args],
                              input=stdin, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    kcat(brokers[0], "-P", "-t", topic, "-p", "0", "-K:",
         stdin="".join(f"k{i}:v{i}\n" for i in range(10)))
    halves = [kcat(b, "-G", group, "-c", "5", "-q", "-f", "%o:%s\n",
                   "-X", "auto.offset.reset=earliest", topic).split()
              for b in (brokers[1], brokers[0])]
    assert halves == [[f"{i}:v{i}" for i in range(5)], [f"{i}:v{i}" for i in range(5, 10)]]
    c = Consumer({"bootstrap.servers": brokers[1].bootstrap, "group.id": group})
    try:
        assert c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == 10
    finally:
        c.close()


def test_a_consumer_group_spread_over_the_brokers_commits_what_it_processed(cluster):
    brokers = three(cluster)
    topic, group = unique_name("work"), unique_name("workers")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=6,
                                           replication_factor=1)]).values():
        f.result(30)
    acked = produce(cluster.bootstrap(), topic, 1200, 6)
    seen = []
    lock = threading.Lock()
    stop = threading.Event()

    def member(bootstrap):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        consumer.subscribe([topic])
        try:
            while not stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                with lock:
                    seen.append((msg.partition(), msg.offset()))
                consumer.commit(msg, asynchronous=False)
        finally:
            consumer.close()

    threads = [threading.Thread(target=member, args=(b.bootstrap,)) for b in brokers]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(set(seen)) >= 1200, timeout=120, msg="every record processed")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert set(seen) == {(p, o) for p, records in acked.items() for o, _ in records}
    # The committed offsets are the ends, as any broker tells them.
    reader = Consumer({"bootstrap.servers": brokers[2].bootstrap, "group.id": group})
    try:
        committed = reader.committed([TopicPartition(topic, p) for p in range(6)], timeout=30)
    finally:
        reader.close()
    assert {tp.partition: tp.offset for tp in committed} == \
        {p: len(acked[p]) for p in range(6)}
