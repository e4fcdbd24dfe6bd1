"""The consumer-group scenarios of the single-broker tests (group_scenarios.py), run on three
brokers in cluster mode with librdkafka: members bootstrap from all three, and each group's
coordinator is whichever broker leads its __consumer_offsets partition.

a: more members than partitions; b: two groups each get every record; c: a killed member's
partitions resume at its last commit; e: a third member joins (range, round-robin,
cooperative-sticky); f: a static member restarts without a rebalance; i: committed offsets
survive a restart of the whole cluster (stopped, or killed).
"""

from __future__ import annotations

import pytest

from confluent_kafka.admin import AdminClient

import group_scenarios as sc
from group_util import members_fixture
from partita_compat import wait_until

members = members_fixture("confluent")

QUICK = {"group.initial.rebalance.delay.ms": 0}


class ClusterBroker:
    """Three brokers seen as the one broker the scenarios are written against: bootstrap from
    all of them, log lines from all of them, a restart restarts them all."""

    def __init__(self, cluster):
        self.brokers = [cluster.start_broker(n, QUICK) for n in (1, 2, 3)]
        self.cluster = cluster
        self.wait_spread()

    def wait_spread(self) -> None:
        """Coordinators move while the brokers join; a scenario goes on once each leads its
        share. (librdkafka's admin client keeps asking a coordinator that moved for a while,
        and crashes the process if an OffsetFetch of it is answered NOT_COORDINATOR.)"""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def spread() -> bool:
            topic = admin.list_topics("__consumer_offsets", timeout=10).topics
            leaders = {p.leader for p in topic["__consumer_offsets"].partitions.values()}
            return leaders == {1, 2, 3}
        wait_until(spread, timeout=60, msg="coordinators spread over the three brokers")

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap()

    def log_text(self) -> str:
        return "\n".join(b.log_text() for b in self.brokers)

    def restart(self, kill: bool = False) -> "ClusterBroker":
        for b in self.brokers:
            if kill:
                b.kill()
            else:
                b.stop()
        for b in self.brokers:
            b.start()
        self.wait_spread()
        return self


def committed_through_kafka_python(bootstrap: str):
    """The scenarios' `committed(admin, group, topic)`, read through kafka-python: librdkafka's
    admin client crashes the process when such a read is answered NOT_COORDINATOR, as any
    broker answers while a coordinator moves (a cluster restart moves them all)."""
    def committed(_admin, group: str, topic: str) -> dict:
        from kafka import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            offsets = admin.list_group_offsets(group)[group]
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == topic and meta.offset >= 0}
    return committed


@pytest.fixture
def three(cluster, monkeypatch) -> ClusterBroker:
    brokers = ClusterBroker(cluster)
    monkeypatch.setattr(sc, "committed", committed_through_kafka_python(brokers.bootstrap))
    return brokers


@pytest.mark.timeout(180)
def test_a_five_members_four_partitions(three, members, topic_name, group_name):
    sc.more_members_than_partitions(three, members, topic_name, group_name)


@pytest.mark.timeout(180)
def test_b_two_groups_broadcast(three, members, topic_name):
    sc.broadcast_two_groups(three, members, topic_name)


@pytest.mark.timeout(180)
def test_c_killed_member_resume_at_committed_offset(three, members, topic_name, group_name):
    sc.kill_then_resume_at_commit(three, members, topic_name, group_name)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_e_third_member_joins(three, members, topic_name, group_name, assignor):
    sc.third_member_joins(three, members, topic_name, group_name, assignor)


@pytest.mark.timeout(180)
def test_f_static_member_restart_no_rebalance(three, members, topic_name, group_name):
    sc.static_member_restart(three, members, topic_name, group_name)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_i_offsets_survive_cluster_restart(three, members, topic_name, kill):
    sc.offsets_survive_restart(three, members, topic_name, kill=kill)
