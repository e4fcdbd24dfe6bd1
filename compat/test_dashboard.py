"""The broker's HTTP side against a real consumer group (confluent-kafka members in their own
processes): `/metrics` parsed with Prometheus' own text parser and checked against the group's
committed offsets, and the dashboard opened in a real headless chromium (playwright-core from
npm, Debian's chromium; both installed by scripts/setup).

The scenario: a topic with 3 partitions and 4 members (so one is idle), every record committed as
it is processed; then the owner of one partition stops polling and that partition alone gets
200 more records: lag on one partition.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from group_util import FAST, committed, members_fixture, produce_numbered, wait_stable
from partita_compat import COMPAT_DIR, free_port, wait_until

members = members_fixture("confluent")

PARTITIONS = 3
MEMBERS = 4
BACKLOG = 200
ARTIFACTS = COMPAT_DIR / "artifacts"


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def scrape(port: int) -> dict:
    """`/metrics` parsed: family name -> list of (labels, value) samples."""
    samples: dict = {}
    for family in text_string_to_metric_families(http_get(port, "/metrics")):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def values(samples: dict, name: str, **labels) -> list:
    return [v for l, v in samples.get(name, []) if all(l.get(k) == str(x) for k, x in labels.items())]


@pytest.fixture
def lagging_group(start_broker, members, topic_name, group_name):
    """A stable group of 4 members on 3 partitions, with a backlog on one partition only."""
    http_port = free_port()
    broker = start_broker({"group.initial.rebalance.delay.ms": 0,
                           "http.listen": f"127.0.0.1:{http_port}",
                           "http.history.interval.ms": 1000})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, PARTITIONS, 1)])[topic_name].result(timeout=30)
    produce_numbered(broker.bootstrap, topic_name, range(PARTITIONS), 10)
    procs = [members.spawn(f"m{i}", broker.bootstrap, group_name, topic_name, commit_below=-1,
                           **FAST) for i in range(MEMBERS)]
    owners = wait_stable(admin, group_name, topic_name, procs, PARTITIONS)
    wait_until(lambda: committed(admin, group_name, topic_name) == {p: 10 for p in range(PARTITIONS)},
               60, "every initial record committed")
    # The owner of the skewed partition stops polling: it keeps its partition (it still
    # heartbeats) but consumes nothing more.
    skewed = 1
    holder = next(m for m in procs if skewed in owners[m.name])
    holder.proc.stdin.write("hold\n")
    holder.proc.stdin.flush()
    time.sleep(1.0)  # let a poll already under way return before the backlog arrives
    produce_numbered(broker.bootstrap, topic_name, [skewed], BACKLOG, start=10)
    return dict(broker=broker, admin=admin, http_port=http_port, topic=topic_name,
                group=group_name, skewed=skewed, members=procs)


def test_metrics_report_the_lag_of_a_real_group(lagging_group):
    g = lagging_group
    port, group, topic = g["http_port"], g["group"], g["topic"]

    def lag_is_visible():
        s = scrape(port)
        return s if values(s, "partita_group_lag_records", group=group, partition=g["skewed"]) == [BACKLOG] else None

    samples = wait_until(lag_is_visible, 30, "the backlog in partita_group_lag_records")
    commits = committed(g["admin"], group, topic)
    for p in range(PARTITIONS):
        leo = values(samples, "partita_partition_log_end_offset", topic=topic, partition=p)
        assert leo == values(samples, "partita_group_log_end_offset", group=group, topic=topic, partition=p)
        assert values(samples, "partita_group_committed_offset", group=group, topic=topic,
                      partition=p) == [commits[p]]
        assert values(samples, "partita_group_lag_records", group=group, topic=topic,
                      partition=p) == [leo[0] - commits[p]]
    assert commits[g["skewed"]] == 10
    [age] = values(samples, "partita_group_lag_seconds", group=group, partition=g["skewed"])
    assert 0 <= age < 120
    assert all(v == 0 for v in values(samples, "partita_group_lag_seconds", group=group)
               if v != age)
    assert values(samples, "partita_group_total_lag_records", group=group) == [BACKLOG]

    assert values(samples, "partita_group_state", group=group, state="Stable") == [1]
    assert values(samples, "partita_group_members", group=group) == [MEMBERS]
    assert values(samples, "partita_group_generation", group=group)[0] >= 1
    assert sum(values(samples, "partita_group_rebalances_total", group=group)) >= 1
    assert sum(values(samples, "partita_group_rebalance_duration_seconds_count", group=group)) >= 1
    assert values(samples, "partita_group_members_joined_total", group=group) == [MEMBERS]

    assert values(samples, "partita_records_in_total")[0] >= PARTITIONS * 10 + BACKLOG
    assert values(samples, "partita_topic_records_in_total", topic=topic) == [PARTITIONS * 10 + BACKLOG]
    assert values(samples, "partita_topic_records_out_total", topic=topic)[0] >= PARTITIONS * 10
    assert values(samples, "partita_bytes_in_total")[0] > 0
    assert values(samples, "partita_bytes_out_total")[0] > 0
    assert values(samples, "partita_connections_open")[0] >= MEMBERS
    assert values(samples, "partita_connections_closed_total", reason="idle") == [0]
    assert values(samples, "partita_memory_budget_bytes", pool="fetch") == [256 * 1024 * 1024]
    assert values(samples, "partita_memory_budget_bytes", pool="request") == []  # unbounded
    [fetch_in_use] = values(samples, "partita_memory_in_use_bytes", pool="fetch")
    assert 0 <= fetch_in_use <= 256 * 1024 * 1024
    for api in ("Produce", "Fetch", "JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit"):
        assert values(samples, "partita_requests_total", api=api)[0] > 0, api
        assert values(samples, "partita_request_duration_seconds_count", api=api)[0] > 0, api
        [inf] = values(samples, "partita_request_duration_seconds_bucket", api=api, le="+Inf")
        assert inf == values(samples, "partita_request_duration_seconds_count", api=api)[0]


def test_json_api_shows_ownership_skew_and_rebalances(lagging_group):
    g = lagging_group
    port, group = g["http_port"], g["group"]

    def skewed():
        detail = json.loads(http_get(port, f"/api/groups/{group}"))
        return detail if any(p["skewed"] for p in detail["partitions"]) else None

    detail = wait_until(skewed, 30, "a skewed partition in /api/groups/{id}")
    assert [p["partition"] for p in detail["partitions"] if p["skewed"]] == [g["skewed"]]
    assert len(detail["members"]) == MEMBERS
    assert sum(m["idle"] for m in detail["members"]) == MEMBERS - PARTITIONS
    owned = sorted(p for m in detail["members"] for a in m["assignment"] for p in a["partitions"])
    assert owned == list(range(PARTITIONS))
    rebalances = detail["timeline"]["rebalances"]
    assert rebalances and rebalances[0]["cause"] in {"join", "metadata_changed"}
    assert rebalances[0]["duration_ms"] is not None and rebalances[0]["moved_count"] >= 1

    listed = json.loads(http_get(port, "/api/groups"))["groups"]
    assert listed[0]["group_id"] == group and listed[0]["total_lag"] == BACKLOG

    topics = json.loads(http_get(port, "/api/topics"))["topics"]
    [topic] = [t for t in topics if t["name"] == g["topic"]]
    assert topic["partitions"] == PARTITIONS and topic["size_bytes"] > 0


def browser_tools() -> tuple:
    node = shutil.which("node")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    playwright = COMPAT_DIR / "node_modules" / "playwright-core"
    missing = [what for what, ok in (("node", node), ("chromium", Path(chromium).exists()),
                                     ("playwright-core (npm)", playwright.exists())) if not ok]
    if missing:
        pytest.skip(f"run scripts/setup first: missing {', '.join(missing)}")
    return node, chromium


def test_dashboard_in_a_real_browser(lagging_group):
    node, chromium = browser_tools()
    g = lagging_group
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    result = subprocess.run(
        [node, str(COMPAT_DIR / "dashboard_check.mjs"), f"http://127.0.0.1:{g['http_port']}",
         g["group"], str(MEMBERS), str(screenshot)],
        cwd=COMPAT_DIR, capture_output=True, text=True, timeout=180,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(ARTIFACTS)})
    assert result.returncode == 0, f"{result.stderr}\n{result.stdout}"
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["groups"][0] == g["group"], seen["groups"]
    assert str(BACKLOG) in seen["groupRowText"][0]
    assert len(seen["members"]) == MEMBERS
    assert sum(m["idle"] for m in seen["members"]) == MEMBERS - PARTITIONS
    assert {m["id"] for m in seen["members"]} == {m.member_id for m in g["members"]}
    assert [(s["topic"], s["partition"]) for s in seen["skewed"]] == [(g["topic"], g["skewed"])]
    assert seen["skewed"][0]["background"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
    assert seen["rebalances"] and seen["rebalances"][0]["cause"] in {"join", "metadata_changed"}
    assert "moved" in seen["rebalances"][0]["text"]
    assert g["topic"] in seen["topics"]
    assert not seen["consoleErrors"], seen["consoleErrors"]
    assert screenshot.stat().st_size > 10_000


def test_a_partition_without_a_committed_offset_counts_from_its_owners_fetch_position(
        start_broker, topic_name, group_name):
    """A member that holds a partition but has committed nothing for it (it stopped after its
    first record): the group's lag is counted from where the member fetches, not left out."""
    http_port = free_port()
    broker = start_broker({"group.initial.rebalance.delay.ms": 0,
                           "http.listen": f"127.0.0.1:{http_port}"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=30)
    backlog = 10_001
    producer = Producer({"bootstrap.servers": broker.bootstrap, "batch.num.messages": 10,
                         "linger.ms": 0})
    for i in range(backlog):
        producer.produce(topic_name, value=b"%d" % i)
        producer.poll(0)
    assert producer.flush(60) == 0
    # A consumer that prefetches little, takes one record, then stops polling.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group_name,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024,
                         "message.max.bytes": 1000,
                         "queued.max.messages.kbytes": 1, "queued.min.messages": 1})
    try:
        consumer.subscribe([topic_name])
        wait_until(lambda: (m := consumer.poll(0.5)) is not None and m.error() is None, 60,
                   "a first record")

        def counted() -> dict | None:
            detail = json.loads(http_get(http_port, f"/api/groups/{group_name}"))
            partition = detail["partitions"][0]
            ok = (partition["committed"] is None and partition["fetch_position"] is not None
                  and detail["total_lag"] == backlog - partition["fetch_position"]
                  and detail["total_lag"] > backlog // 2 and (detail["max_lag_seconds"] or 0) > 0)
            return detail if ok else None
        detail = wait_until(counted, 60, "lag counted from the owner's fetch position")
        lag = values(scrape(http_port), "partita_group_lag_records", group=group_name,
                     topic=topic_name, partition=0)
        assert lag and lag[0] > backlog // 2, (lag, detail["partitions"])
    finally:
        consumer.close()
