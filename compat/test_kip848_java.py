"""KIP-848 consumer groups with the Java kafka-clients 3.9.1 consumer (`group.protocol=consumer`,
the AsyncKafkaConsumer) against Partita: the scenarios of kip848_scenarios.py, each member its own
JVM (compat/java/GroupsTest.java `member`, which reports the member epoch from groupMetadata()),
and the two protocol mismatches with the Java client on the refused side.

The Java consumer refuses classic-only settings with this protocol (session.timeout.ms,
heartbeat.interval.ms, partition.assignment.strategy); the members set none of them.
"""

from __future__ import annotations

import pytest

import kip848_scenarios as k
from group_util import members_fixture
from test_java import compiled_java  # noqa: F401 - fixture: fetches jars, compiles java/*.java

members = members_fixture("java", java=True)
kbroker = k.broker_fixture()


@pytest.mark.timeout(180)
def test_java_kip848_a_five_members_four_partitions(kbroker, members, topic_name, group_name):
    k.more_members_than_partitions(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(180)
def test_java_kip848_c_killed_member_resume_at_committed_offset(kbroker, members, topic_name,
                                                                group_name):
    k.kill_then_resume_at_commit(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_java_kip848_e_third_member_joins_staying_partitions_flow(kbroker, members, topic_name,
                                                                 group_name, assignor):
    before, after, info = k.third_member_joins(kbroker, members, topic_name, group_name,
                                               assignor)
    print(f"{assignor}: {before} -> {after}; {info}")


@pytest.mark.timeout(180)
def test_java_kip848_f_static_member_restart_keeps_partitions_and_epoch(kbroker, members,
                                                                        topic_name, group_name):
    k.static_member_restart(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(180)
def test_java_kip848_g_member_stops_polling_leaves(kbroker, members, topic_name, group_name):
    # The Java consumer sends a leave heartbeat (epoch -1) itself when max.poll.interval.ms
    # expires.
    k.missed_polls(kbroker, members, topic_name, group_name, expect_leave=True)


@pytest.mark.timeout(180)
def test_java_kip848_i_broker_restart_members_continue(kbroker, members, topic_name,
                                                       group_name):
    k.broker_restart(kbroker, members, topic_name, group_name)


@pytest.mark.timeout(180)
def test_java_kip848_protocol_mismatch_is_refused(kbroker, members, topic_name):
    """A Java classic member joining an active consumer group: INCONSISTENT_GROUP_PROTOCOL; a Java
    consumer-protocol member joining an active classic group: GROUP_ID_NOT_FOUND."""
    k.protocol_mismatch_refused(
        kbroker, members, topic_name,
        classic_refused=lambda m: any("InconsistentGroupProtocolException" in e
                                      for e in m.errors()),
        consumer_refused=lambda m: any("GroupIdNotFoundException" in e for e in m.errors()))


@pytest.mark.timeout(180)
def test_java_kip848_frozen_member_fenced_then_rejoins(kbroker, members, topic_name, group_name):
    k.zombie_member_rejoins(kbroker, members, topic_name, group_name)
