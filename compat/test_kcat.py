"""kcat (librdkafka 2.0, so older request versions than confluent-kafka) against Partita."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from confluent_util import admin_client, create_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(
    KCAT is None, reason="kcat binary not found (install with `apt-get install -y kcat`; "
                         "scripts/setup does it)")

LINES = [("alpha", "first value"), ("beta", "second: with a colon"), ("alpha", "third"),
         ("gamma", ""), ("delta", "x" * 3000), ("beta", "sixth \u00e9t\u00e9")]


def kcat(*args, stdin: str | None = None, timeout: float = 60.0) -> str:
    proc = subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"kcat {' '.join(args)} exited {proc.returncode}\n"
                                  f"stderr:\n{proc.stderr}\nstdout:\n{proc.stdout}")
    return proc.stdout


def test_metadata_list(broker, topic_name):
    create_topic(admin_client(broker.bootstrap), topic_name, 3)
    md = json.loads(kcat("-b", broker.bootstrap, "-L", "-J", "-m", "20"))
    assert [(b["name"]) for b in md["brokers"]] == [f"127.0.0.1:{broker.port}"], md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic_name in topics, sorted(topics)
    t = topics[topic_name]
    assert "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == md["brokers"][0]["id"] for p in t["partitions"]), t

    # Plain-text listing of one topic.
    out = kcat("-b", broker.bootstrap, "-L", "-t", topic_name, "-m", "20")
    assert f'topic "{topic_name}" with 3 partitions' in out, out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume_keyed_lines(broker, topic_name, codec):
    create_topic(admin_client(broker.bootstrap), topic_name, 1)
    text = "".join(f"{k}:{v}\n" for k, v in LINES)
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0", "-K:", "-z", codec,
         "-X", "acks=all", stdin=text)

    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "beginning", "-q",
               "-J", "-m", "30")
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(m["partition"], m["offset"]) for m in got] == [(0, i) for i in range(len(LINES))]
    assert [(m["key"], m["payload"]) for m in got] == [(k, v) for k, v in LINES]

    # The classic "key:value" rendering reads back exactly what was written.
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "beginning", "-q",
               "-K:", "-m", "30")
    assert out == text


def test_consume_across_partitions_with_offsets(broker, topic_name):
    create_topic(admin_client(broker.bootstrap), topic_name, 3)
    for p in range(3):
        kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", str(p),
             stdin="".join(f"p{p}-{i}\n" for i in range(5)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "beginning", "-q",
               "-f", "%p %o %s\n", "-m", "30")
    rows = sorted(tuple(line.split(" ")) for line in out.splitlines())
    assert rows == sorted((str(p), str(i), f"p{p}-{i}") for p in range(3) for i in range(5))

    # -o with an absolute offset and -c count.
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "1", "-o", "3", "-c", "2",
               "-q", "-f", "%o %s\n", "-m", "30")
    assert out.splitlines() == ["3 p1-3", "4 p1-4"]
