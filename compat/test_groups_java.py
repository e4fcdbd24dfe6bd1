"""Consumer groups with the Java kafka-clients 3.9.1 classic consumer (compat/java/GroupsTest.java)
against Partita: scenarios a, c, e (range and CooperativeStickyAssignor), f (static membership,
generation from groupMetadata()), i (broker restart), and OffsetDelete through the Java Admin.
Each member is its own JVM, driven like the Python members (see group_util.py)."""

from __future__ import annotations

import subprocess

import pytest

import group_scenarios as sc
from confluent_util import admin_client, create_topic
from group_util import FAST, committed, java_member_cmd, members_fixture, produce_numbered, \
    wait_stable
from test_java import compiled_java  # noqa: F401 - fixture: fetches jars, compiles java/*.java

members = members_fixture("java", java=True)

QUICK = {"group.initial.rebalance.delay.ms": 0}


@pytest.fixture
def quick_broker(start_broker):
    return start_broker(QUICK)


@pytest.mark.timeout(180)
def test_java_a_five_members_four_partitions(quick_broker, members, topic_name, group_name):
    sc.more_members_than_partitions(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(180)
def test_java_c_killed_member_resume_at_committed_offset(quick_broker, members, topic_name,
                                                          group_name):
    sc.kill_then_resume_at_commit(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_java_e_third_member_joins(quick_broker, members, topic_name, group_name, assignor):
    sc.third_member_joins(quick_broker, members, topic_name, group_name, assignor)


@pytest.mark.timeout(180)
def test_java_f_static_member_restart_no_rebalance(quick_broker, members, topic_name,
                                                   group_name):
    sc.static_member_restart(quick_broker, members, topic_name, group_name)


@pytest.mark.timeout(180)
def test_java_i_offsets_survive_broker_restart(quick_broker, members, topic_name):
    sc.offsets_survive_restart(quick_broker, members, topic_name)


@pytest.mark.timeout(180)
def test_java_offset_delete(quick_broker, members, topic_name, group_name, compiled_java):  # noqa: F811
    b = quick_broker
    admin = admin_client(b.bootstrap)
    create_topic(admin, topic_name, 2)
    produce_numbered(b.bootstrap, topic_name, range(2), 5)
    m = members.spawn("m", b.bootstrap, group_name, topic_name, commit_below=-1, **FAST)
    wait_stable(admin, group_name, topic_name, [m], 2)
    m.wait_for(lambda m: m.commits == {0: 5, 1: 5}, "committed everything")

    def offset_delete(partition: int) -> str:
        cmd = java_member_cmd(compiled_java, b.bootstrap, group_name, topic_name)
        cmd = cmd[:cmd.index("GroupsTest") + 1] + ["offset-delete", b.bootstrap, group_name,
                                                    topic_name, str(partition)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.strip().splitlines()[-1]

    # The group consumes the topic: OffsetDelete is refused (GROUP_SUBSCRIBED_TO_TOPIC).
    out = offset_delete(0)
    assert out.startswith("ERROR GroupSubscribedToTopicException"), out
    assert committed(admin, group_name, topic_name) == {0: 5, 1: 5}
    m.close()
    out = offset_delete(0)
    assert out == "OK", out
    assert committed(admin, group_name, topic_name) == {1: 5}
    # The tombstone survives a restart.
    b.restart()
    admin = admin_client(b.bootstrap)
    assert committed(admin, group_name, topic_name) == {1: 5}
