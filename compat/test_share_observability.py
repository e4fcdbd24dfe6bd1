"""Share groups seen from outside (issue 8, item 5): `partita groups list` / `groups describe`
(the CLI speaks ListGroups, ShareGroupDescribe, DescribeShareGroupOffsets and ListOffsets only)
and the broker's dashboard JSON API and /metrics (which also show what Kafka's protocol has no
field for: records acquired, available and in flight per share-partition).

The scenario, with confluent-kafka 2.16 ShareConsumers in child processes (compat/share_member.py,
implicit acknowledgement):

1. 20 records on each of two partitions; a worker reads all 40 and closes, acknowledging them:
   both share-partitions start at 20, share lag 0, the group Empty.
2. 10 more records on each partition; a "hog" joins, takes one poll's worth and holds it (never
   acknowledges, lock far away): start offsets stay at 20, share lag 10 per partition, and the
   broker counts the held records as acquired, the rest as available.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from confluent_util import admin_client, create_topic
from group_util import GROUP_DEADLINE
from partita_compat import broker_binary, free_port, unique_name, wait_until
from share_util import ShareMembers, set_share_offset_reset, share_members
from test_share_groups import produce_values, wait_members

PER_PARTITION = 20
MORE = 10


@pytest.fixture
def members(tmp_path, extra_logs):
    ms = ShareMembers(tmp_path)
    extra_logs.append(("share members", ms.describe))
    yield ms
    ms.kill_all()


def cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(broker_binary()), *args, "--bootstrap-server", bootstrap],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"partita {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def describe_json(bootstrap: str, group: str) -> dict:
    return json.loads(cli(bootstrap, "groups", "describe", "--group", group,
                          "--output", "json").stdout)


def http_json(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read().decode())


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    samples: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by_partition(rows, key: str) -> dict:
    return {r["partition"]: r[key] for r in rows}


@pytest.mark.timeout(180)
def test_describe_and_dashboard_show_share_progress(start_broker, members):
    http_port = free_port()
    b = start_broker({"http.listen": f"127.0.0.1:{http_port}",
                      "http.history.interval.ms": 1000,
                      "group.share.record.lock.duration.ms": 120_000})
    admin = admin_client(b.bootstrap)
    topic, group = unique_name("t"), unique_name("sg")
    create_topic(admin, topic, 2)
    set_share_offset_reset(admin, group, "earliest")

    # 1. Everything read and acknowledged.
    produced = produce_values(b.bootstrap, topic, [f"r{i}" for i in range(2 * PER_PARTITION)], 2)
    worker = members.spawn("worker", b.bootstrap, group, topic, max_poll_records=10)
    worker.wait_for(lambda m: produced <= {(r["p"], r["o"]) for r in m.recs()},
                    "reads every record")
    assert worker.close() == 0, worker.describe()
    wait_until(lambda: not share_members(b.bootstrap, group), GROUP_DEADLINE,
               "the worker left the share group")
    done = wait_until(
        lambda: (d := describe_json(b.bootstrap, group))
        and by_partition(d["partitions"], "start_offset") == {0: PER_PARTITION, 1: PER_PARTITION}
        and d,
        GROUP_DEADLINE, "both share-partitions start after the acknowledged records")
    assert done["type"] == "share" and done["state"] == "Empty", done
    assert done["members"] == [], done
    assert by_partition(done["partitions"], "share_lag") == {0: 0, 1: 0}, done
    assert done["total_share_lag"] == 0, done

    listed = cli(b.bootstrap, "groups", "list").stdout
    row = next(ln.split() for ln in listed.splitlines() if ln.split()[:1] == [group])
    assert row == [group, "Empty", "share", "share"], listed
    listed_json = {g["group"]: g for g in json.loads(
        cli(b.bootstrap, "groups", "list", "--output", "json").stdout)}
    assert listed_json[group]["group_type"] == "share", listed_json[group]

    # 2. A member holds what it took.
    produce_values(b.bootstrap, topic, [f"more{i}" for i in range(2 * MORE)], 2)
    hog = members.spawn("hog", b.bootstrap, group, topic, max_poll_records=4, hold_after=1)
    wait_members(b.bootstrap, group, 1)
    hog.wait_for(lambda m: m.events_of("held"), "acquires records and holds them")
    held = {(r["p"], r["o"]) for r in hog.recs()}
    assert held and all(o >= PER_PARTITION for _, o in held), held

    d = describe_json(b.bootstrap, group)
    assert d["state"] == "Stable", d
    [m] = d["members"]
    assert m["client_id"] and m["host"], m
    assert m["assignment"] == {topic: [0, 1]}, m
    assert m["subscription"] == [topic], m
    rows = d["partitions"]
    assert [(r["topic"], r["partition"]) for r in rows] == [(topic, 0), (topic, 1)], rows
    assert by_partition(rows, "start_offset") == {0: PER_PARTITION, 1: PER_PARTITION}, rows
    assert by_partition(rows, "log_end_offset") == {0: PER_PARTITION + MORE,
                                                    1: PER_PARTITION + MORE}, rows
    assert by_partition(rows, "share_lag") == {0: MORE, 1: MORE}, rows
    assert d["total_share_lag"] == 2 * MORE, d

    text = cli(b.bootstrap, "groups", "describe", "--group", group).stdout
    for p in (0, 1):
        assert [group, topic, str(p), str(PER_PARTITION), str(PER_PARTITION + MORE),
                str(MORE)] in [ln.split() for ln in text.splitlines()], text
    assert "MEMBER-ID" in text and m["member_id"] in text, text

    # The dashboard's JSON API: the in-flight counts, which Kafka's protocol does not carry.
    # It shows what the coordinator published, at most a moment behind.
    groups = wait_until(
        lambda: (gs := {g["group_id"]: g for g in http_json(http_port, "/api/groups")["groups"]})
        and gs.get(group, {}).get("members") == 1 and gs[group]["acquired"] >= len(held) and gs,
        GROUP_DEADLINE, "the dashboard showing the member and what it holds")
    assert groups[group]["type"] == "share", groups[group]
    assert groups[group]["members"] == 1 and groups[group]["total_lag"] == 2 * MORE, groups[group]
    page = http_json(http_port, f"/api/groups/{group}")
    assert page["type"] == "share" and page["state"] == "Stable", page
    assert [x["member_id"] for x in page["members"]] == [m["member_id"]], page["members"]
    parts = {p["partition"]: p for p in page["partitions"]}
    assert set(parts) == {0, 1}, page["partitions"]
    acquired = 0
    for p, row in parts.items():
        assert row["start_offset"] == PER_PARTITION and row["share_lag"] == MORE, row
        # Nothing was acknowledged above the start offset, so every record of the share lag is
        # either acquired (by the hog) or available; none was released, so in flight = acquired.
        assert row["acquired"] + row["available"] == MORE, row
        assert row["in_flight"] == row["acquired"], row
        held_here = sum(1 for hp, _ in held if hp == p)
        # The client may have acquired more than it handed to the application (prefetch).
        assert row["acquired"] >= held_here, (row, held)
        acquired += row["acquired"]
    assert acquired >= len(held) and acquired > 0, page
    assert page["acquired"] == acquired and page["available"] == 2 * MORE - acquired, page
    assert page["total_lag"] == 2 * MORE, page

    samples = scrape(http_port)

    def metric(name: str) -> dict:
        return {int(labels["partition"]): v for labels, v in samples.get(name, [])
                if labels.get("group") == group and labels.get("topic") == topic}

    assert metric("partita_share_partition_start_offset") == {0: PER_PARTITION, 1: PER_PARTITION}
    assert metric("partita_share_partition_lag_records") == {0: MORE, 1: MORE}
    # The hog's client may still be fetching ahead: the split may have moved, not the sum.
    acquired_now = metric("partita_share_partition_acquired_records")
    available_now = metric("partita_share_partition_available_records")
    assert set(acquired_now) == set(available_now) == {0, 1}, samples
    assert all(acquired_now[p] + available_now[p] == MORE for p in (0, 1)), \
        (acquired_now, available_now)
    assert sum(acquired_now.values()) >= len(held)
    assert [v for labels, v in samples.get("partita_share_group_members", [])
            if labels.get("group") == group] == [1]
