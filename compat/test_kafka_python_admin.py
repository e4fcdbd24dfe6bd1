"""The housekeeping calls of kafka-python 3.0's KafkaAdminClient and KafkaConsumer against Partita,
each checked against what a Kafka broker (3.9 / 4.x, one node, no authorizer) answers.

kafka-python negotiates versions with ApiVersions; against Partita it uses Metadata v12,
CreateTopics v7, DeleteTopics v6, CreatePartitions v3, DescribeConfigs v4,
IncrementalAlterConfigs v1, AlterConfigs v2, DescribeCluster v1, ListOffsets v8, DeleteRecords v2,
FindCoordinator v6, ListGroups v5, DescribeGroups v5, DeleteGroups v2, OffsetCommit v8,
OffsetFetch v8, OffsetDelete v0.

kafka-python 3.0 names the group calls list_groups / describe_groups / list_group_offsets /
delete_groups / alter_group_offsets / reset_group_offsets / delete_group_offsets (the 2.x names
list_consumer_groups, describe_consumer_groups, ... are gone), and list_partition_offsets for
ListOffsets.

Live group members run in their own processes (compat/group_member.py with kafka-python, see
group_util.py).
"""

from __future__ import annotations

import time

import kafka.errors as Errors
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, KafkaAdminClient, OffsetSpec
from kafka.protocol.admin import DescribeConfigsRequest
from kafka.structs import OffsetAndMetadata

from group_util import FAST, GROUP_DEADLINE, members_fixture
from partita_compat import unique_name, wait_until

members = members_fixture("kafka-python")

OP_TIMEOUT_MS = 20000
# Partita's (single) broker id, as in its Metadata and DescribeCluster answers.
BROKER_ID = 1
# What Kafka reports as a DescribeGroups member's client_host: the client's
# InetAddress.toString() (GroupCoordinator / GroupMetadataManager: clientHost).
KAFKA_CLIENT_HOST = "/127.0.0.1"
# kafka-python's default client.id.
KAFKA_PYTHON_CLIENT_ID_PREFIX = "kafka-python-"


# ------------------------------------------------------------------------------------------------
# helpers


def new_admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=OP_TIMEOUT_MS,
                            client_id="partita-compat-kp-admin")


@pytest.fixture
def quick_broker(start_broker):
    return start_broker({"group.initial.rebalance.delay.ms": 0})


@pytest.fixture
def adm(broker):
    a = new_admin(broker.bootstrap)
    yield a
    a.close()


def raw_send(adm: KafkaAdminClient, request, node_id=None):
    """Sends one protocol request through the admin client's connection and returns the raw
    response (for error codes kafka-python's helpers swallow)."""
    async def go():
        return await adm._manager.send(request, node_id=node_id)  # noqa: SLF001
    return adm._manager.run(go)  # noqa: SLF001


def create(adm: KafkaAdminClient, topic: str, partitions: int, configs=None):
    spec = {"num_partitions": partitions, "replication_factor": 1}
    if configs:
        spec["configs"] = configs
    res = adm.create_topics({topic: spec}, timeout_ms=OP_TIMEOUT_MS, wait_for_metadata=True)
    (t,) = res["topics"]
    assert t["error_code"] == 0, t
    return t


def topic_info(adm: KafkaAdminClient, topic: str) -> dict:
    (t,) = adm.describe_topics([topic])
    return t


def produce(bootstrap: str, topic: str, records):
    """records: (partition, value, timestamp_ms or None) -> list of RecordMetadata."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                      request_timeout_ms=30000)
    try:
        futures = [p.send(topic, value=v, partition=part, timestamp_ms=ts)
                   for part, v, ts in records]
        p.flush(timeout=60)
        return [f.get(timeout=30) for f in futures]
    finally:
        p.close(timeout=10)


def topic_configs(adm: KafkaAdminClient, topic: str, config_filter: str = "modified", keys=None,
                  include_synonyms: bool = False) -> dict:
    res = adm.describe_configs([ConfigResource("TOPIC", topic, keys)],
                               include_synonyms=include_synonyms, config_filter=config_filter)
    return res["topic"][topic]


def values(configs: dict) -> dict:
    return {k: v["value"] for k, v in configs.items()}


def group_of(adm: KafkaAdminClient, group: str):
    """The ListGroups entry of `group`, or None."""
    found = [g for g in adm.list_groups() if g["group_id"] == group]
    assert len(found) <= 1, found
    return found[0] if found else None


def describe_group(adm: KafkaAdminClient, group: str) -> dict:
    return adm.describe_groups([group])[group]


def assigned_partitions(member: dict, topic: str) -> frozenset:
    """Partitions of `topic` in a DescribeGroups member's decoded ConsumerProtocolAssignment."""
    a = member["member_assignment"]
    return frozenset(p for tps in a["assigned_partitions"] if tps["topic"] == topic
                     for p in tps["partitions"])


# ------------------------------------------------------------------------------------------------
# topics


def test_create_topics_validate_only_then_create_list_describe_delete(adm, topic_name):
    """CreateTopics v7 with topic configs and validate_only, Metadata v12, DeleteTopics v6.

    Kafka: a validate_only request answers as a real one would (no error, the partition count, the
    replication factor and the resulting configs, the given ones as DYNAMIC_TOPIC_CONFIG) and
    creates nothing; the real one creates the topic with those overrides; DeleteTopics removes it
    and a second DeleteTopics answers UNKNOWN_TOPIC_OR_PARTITION."""
    configs = {"retention.ms": "3600000", "cleanup.policy": "compact",
               "max.message.bytes": "2000000"}
    spec = {topic_name: {"num_partitions": 3, "replication_factor": 1, "configs": configs}}

    res = adm.create_topics(spec, timeout_ms=OP_TIMEOUT_MS, validate_only=True)
    (t,) = res["topics"]
    assert (t["name"], t["error_code"], t["num_partitions"], t["replication_factor"]) == \
        (topic_name, 0, 3, 1), t
    for k, v in configs.items():
        assert t["configs"][k]["value"] == v, (k, t["configs"].get(k))
        assert t["configs"][k]["config_source"] == "DYNAMIC_TOPIC_CONFIG", (k, t["configs"][k])
    assert t["configs"]["segment.bytes"]["config_source"] == "DEFAULT_CONFIG", t["configs"]
    assert topic_name not in adm.list_topics()
    assert topic_info(adm, topic_name)["error_code"] == Errors.UnknownTopicOrPartitionError.errno

    t = create(adm, topic_name, 3, configs)
    assert (t["num_partitions"], t["replication_factor"]) == (3, 1), t
    assert t["topic_id"], t
    assert topic_name in adm.list_topics()
    info = topic_info(adm, topic_name)
    assert info["error_code"] == 0 and info["is_internal"] is False, info
    assert info["topic_id"] == t["topic_id"], (info, t)
    parts = sorted(info["partitions"], key=lambda p: p["partition_index"])
    assert [p["partition_index"] for p in parts] == [0, 1, 2], parts
    for p in parts:
        assert (p["error_code"], p["leader_id"], p["replica_nodes"], p["isr_nodes"]) == \
            (0, BROKER_ID, [BROKER_ID], [BROKER_ID]), p
    # describe_configs' default filter ("modified") keeps exactly the topic's overrides.
    assert values(topic_configs(adm, topic_name)) == configs

    # Creating it again fails, validate_only or not: TOPIC_ALREADY_EXISTS.
    for validate_only in (True, False):
        with pytest.raises(Errors.TopicAlreadyExistsError):
            adm.create_topics(spec, timeout_ms=OP_TIMEOUT_MS, validate_only=validate_only)

    res = adm.delete_topics([topic_name], timeout_ms=OP_TIMEOUT_MS)
    assert [(d["name"], d["error_code"]) for d in res["topics"]] == [(topic_name, 0)], res
    wait_until(lambda: topic_name not in adm.list_topics(), 30, f"{topic_name} deleted")
    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        adm.delete_topics([topic_name], timeout_ms=OP_TIMEOUT_MS)


def test_create_topics_errors_and_broker_default_partitions(start_broker):
    """Kafka's per-topic CreateTopics errors, and num_partitions/replication_factor -1 (v4+) taking
    the broker's num.partitions and default.replication.factor."""
    b = start_broker({"num.partitions": 2})
    adm = new_admin(b.bootstrap)
    try:
        def error_of(name, spec, **kw):
            res = adm.create_topics({name: spec}, timeout_ms=OP_TIMEOUT_MS, raise_errors=False,
                                    **kw)
            (t,) = res["topics"]
            return t["error_code"]

        name = unique_name("t")
        cases = {
            # ConfigException in the topic config validation -> INVALID_CONFIG
            "bad value": ({"num_partitions": 1, "configs": {"retention.ms": "abc"}},
                          Errors.InvalidConfigurationError.errno),
            "unknown config": ({"num_partitions": 1, "configs": {"no.such.config": "1"}},
                               Errors.InvalidConfigurationError.errno),
            "replication factor 3 on one broker": ({"num_partitions": 1, "replication_factor": 3},
                                                   Errors.InvalidReplicationFactorError.errno),
            "zero partitions": ({"num_partitions": 0}, Errors.InvalidPartitionsError.errno),
        }
        got = {case: error_of(name, spec) for case, (spec, _) in cases.items()}
        assert got == {case: code for case, (_, code) in cases.items()}
        assert error_of("bad name!", {"num_partitions": 1}) == Errors.InvalidTopicError.errno
        assert name not in adm.list_topics()

        res = adm.create_topics([name], timeout_ms=OP_TIMEOUT_MS, wait_for_metadata=True)
        (t,) = res["topics"]
        assert (t["error_code"], t["num_partitions"], t["replication_factor"]) == (0, 2, 1), t
        assert len(topic_info(adm, name)["partitions"]) == 2
    finally:
        adm.close()


def test_create_partitions(adm, topic_name, broker):
    """CreatePartitions v3: grows a topic (new partitions have a leader and take records);
    validate_only changes nothing; fewer or as many partitions as now is INVALID_PARTITIONS; an
    unknown topic is UNKNOWN_TOPIC_OR_PARTITION."""
    create(adm, topic_name, 2)

    res = adm.create_partitions({topic_name: 5}, timeout_ms=OP_TIMEOUT_MS, validate_only=True)
    assert [(r.name, r.error_code) for r in res.results] == [(topic_name, 0)], res
    assert len(topic_info(adm, topic_name)["partitions"]) == 2

    res = adm.create_partitions({topic_name: 4}, timeout_ms=OP_TIMEOUT_MS)
    assert [(r.name, r.error_code) for r in res.results] == [(topic_name, 0)], res
    adm.wait_for_topics([topic_name], timeout_ms=OP_TIMEOUT_MS)

    def four_with_leaders():
        parts = topic_info(adm, topic_name)["partitions"]
        return (sorted(p["partition_index"] for p in parts) == [0, 1, 2, 3]
                and all(p["leader_id"] == BROKER_ID and p["error_code"] == 0 for p in parts))
    wait_until(four_with_leaders, 30, "4 partitions with leaders")

    for count in (3, 4):
        with pytest.raises(Errors.InvalidPartitionsError):
            adm.create_partitions({topic_name: count}, timeout_ms=OP_TIMEOUT_MS)
    res = adm.create_partitions({unique_name("nope"): 3}, timeout_ms=OP_TIMEOUT_MS,
                                raise_errors=False)
    assert [r.error_code for r in res.results] == [Errors.UnknownTopicOrPartitionError.errno]

    metas = produce(broker.bootstrap, topic_name, [(3, b"new-partition", None)])
    assert (metas[0].partition, metas[0].offset) == (3, 0)


def test_manual_replica_assignments(adm, topic_name):
    """CreateTopics and CreatePartitions with explicit replica assignments, as a KRaft Kafka checks
    them (ReplicationControlManager.createTopic / createPartitions and
    validateManualPartitionAssignment): a broker that is not registered and an assignment count
    other than the partitions added are INVALID_REPLICA_ASSIGNMENT (39); assignments together with
    a replication factor or partition count other than -1 are INVALID_REQUEST (42); a valid
    assignment is applied."""
    problems = []

    def create_error(name, spec):
        res = adm.create_topics({name: spec}, timeout_ms=OP_TIMEOUT_MS, raise_errors=False)
        (t,) = res["topics"]
        return t["error_code"], t["error_message"]

    def partitions_error(name, count, assignments):
        res = adm.create_partitions({name: {"count": count, "assignments": assignments}},
                                    timeout_ms=OP_TIMEOUT_MS, raise_errors=False)
        (r,) = res.results
        return r.error_code, r.error_message

    def expect(what, got, code):
        if got[0] != code:
            problems.append(f"{what}: error {got[0]} ({got[1]!r}), Kafka {code}")

    # CreateTopics.
    expect("CreateTopics assigning partition 0 to unregistered broker 2",
           create_error(unique_name("t"), {"assignments": {0: [2]}}),
           Errors.InvalidReplicationAssignmentError.errno)
    expect("CreateTopics with assignments and num_partitions 1",
           create_error(unique_name("t"), {"num_partitions": 1, "assignments": {0: [BROKER_ID]}}),
           Errors.InvalidRequestError.errno)
    expect("CreateTopics with assignments and replication_factor 1",
           create_error(unique_name("t"), {"replication_factor": 1,
                                           "assignments": {0: [BROKER_ID]}}),
           Errors.InvalidRequestError.errno)
    expect("CreateTopics with a valid assignment of 2 partitions",
           create_error(topic_name, {"assignments": {0: [BROKER_ID], 1: [BROKER_ID]}}), 0)
    adm.wait_for_topics([topic_name], timeout_ms=OP_TIMEOUT_MS)
    n = len(topic_info(adm, topic_name)["partitions"])
    if n != 2:
        problems.append(f"topic created with 2 assigned partitions has {n}")

    # CreatePartitions (2 -> 3 adds one partition).
    expect("CreatePartitions 2->3 assigning the new partition to unregistered broker 2",
           partitions_error(topic_name, 3, [[2]]), Errors.InvalidReplicationAssignmentError.errno)
    expect("CreatePartitions 2->4 with 1 assignment",
           partitions_error(topic_name, 4, [[BROKER_ID]]),
           Errors.InvalidReplicationAssignmentError.errno)
    expect("CreatePartitions 2->3 with 0 assignments",
           partitions_error(topic_name, 3, []), Errors.InvalidReplicationAssignmentError.errno)
    n = len(topic_info(adm, topic_name)["partitions"])
    if n != 2:
        problems.append(f"after the refused CreatePartitions the topic has {n} partitions, "
                        f"Kafka 2")
    else:
        expect("CreatePartitions 2->3 with a valid assignment",
               partitions_error(topic_name, 3, [[BROKER_ID]]), 0)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------
# configs


def test_describe_and_alter_topic_configs(adm, topic_name):
    """DescribeConfigs v4, IncrementalAlterConfigs v1 (kafka-python's default) and AlterConfigs v2
    for a topic, as Kafka answers them."""
    create(adm, topic_name, 1, {"retention.ms": "3600000"})

    # config_filter="all": every topic config, overrides as DYNAMIC_TOPIC_CONFIG, the rest as
    # DEFAULT_CONFIG, none read-only; asked-for keys only when keys are given.
    everything = topic_configs(adm, topic_name, "all")
    for key in ("retention.ms", "cleanup.policy", "segment.bytes", "max.message.bytes",
                "min.insync.replicas", "retention.bytes", "segment.ms"):
        assert key in everything, (key, sorted(everything))
    assert everything["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert everything["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
    assert everything["cleanup.policy"]["value"] == "delete"
    assert not any(c["read_only"] for c in everything.values()), everything
    assert everything["retention.ms"]["config_type"] == "LONG"
    assert everything["cleanup.policy"]["config_type"] == "LIST"
    some = topic_configs(adm, topic_name, "all", keys=["retention.ms", "cleanup.policy"])
    assert sorted(some) == ["cleanup.policy", "retention.ms"], some

    # include_synonyms: the topic override first, then (if any) broker-level synonyms.
    syn = topic_configs(adm, topic_name, "all", keys=["retention.ms"], include_synonyms=True)
    synonyms = syn["retention.ms"]["synonyms"]
    assert synonyms[0] == {"name": "retention.ms", "value": "3600000",
                           "source": "DYNAMIC_TOPIC_CONFIG"}, synonyms
    assert all(s["source"] != "DYNAMIC_TOPIC_CONFIG" for s in synonyms[1:]), synonyms

    # Incremental SET / APPEND / DELETE.
    ok = {"topic": {topic_name: "OK"}}
    assert adm.alter_configs([ConfigResource("TOPIC", topic_name, {
        "retention.ms": "7200000", "segment.ms": "600000"})]) == ok
    assert values(topic_configs(adm, topic_name)) == {"retention.ms": "7200000",
                                                      "segment.ms": "600000"}
    assert adm.alter_configs([ConfigResource("TOPIC", topic_name, {
        "cleanup.policy": (AlterConfigOp.APPEND, "compact")})]) == ok
    assert topic_configs(adm, topic_name)["cleanup.policy"]["value"] == "delete,compact"
    assert adm.alter_configs([ConfigResource("TOPIC", topic_name, {
        "cleanup.policy": (AlterConfigOp.DELETE, None),
        "segment.ms": (AlterConfigOp.DELETE, None)})]) == ok
    assert values(topic_configs(adm, topic_name)) == {"retention.ms": "7200000"}

    # validate_only checks and changes nothing.
    assert adm.alter_configs([ConfigResource("TOPIC", topic_name, {"retention.ms": "1000"})],
                             validate_only=True) == ok
    assert values(topic_configs(adm, topic_name)) == {"retention.ms": "7200000"}

    # Errors come back per resource: INVALID_CONFIG for a bad value or an unknown name,
    # UNKNOWN_TOPIC_OR_PARTITION for a missing topic (kafka-python renders them as strings).
    res = adm.alter_configs([ConfigResource("TOPIC", topic_name, {"retention.ms": "abc"})])
    assert "InvalidConfigurationError" in res["topic"][topic_name], res
    res = adm.alter_configs([ConfigResource("TOPIC", topic_name, {"no.such.config": "1"})],
                            raise_on_unknown=False)
    assert "InvalidConfigurationError" in res["topic"][topic_name], res
    missing = unique_name("nope")
    res = adm.alter_configs([ConfigResource("TOPIC", missing, {"retention.ms": "1000"})],
                            raise_on_unknown=False)
    assert "UnknownTopicOrPartitionError" in res["topic"][missing], res
    assert values(topic_configs(adm, topic_name)) == {"retention.ms": "7200000"}

    # kafka-python's describe_configs drops the per-resource error code (a client limitation:
    # an unknown topic just describes as {}), so the raw DescribeConfigs answer is checked.
    resp = raw_send(adm, DescribeConfigsRequest(resources=[(2, missing, None)],
                                                include_synonyms=False))
    assert [(r.resource_name, r.error_code) for r in resp.results] == \
        [(missing, Errors.UnknownTopicOrPartitionError.errno)], resp

    # Non-incremental AlterConfigs replaces the whole set of overrides (kafka-python first reads
    # the modified ones and sends them along, so only the named key changes).
    assert adm.alter_configs([ConfigResource("TOPIC", topic_name, {"segment.bytes": "1048576"})],
                             incremental=False) == ok
    assert values(topic_configs(adm, topic_name)) == {"retention.ms": "7200000",
                                                      "segment.bytes": "1048576"}


def test_describe_configs_documentation_null_unless_asked(adm, topic_name):
    """DescribeConfigs v3+ has include_documentation (kafka-python sends false); Kafka then leaves
    each entry's documentation null (ConfigHelper.createTopicConfigEntry / createBrokerConfigEntry:
    `if (includeDocumentation) ... else null`), which kafka-python decodes as None."""
    create(adm, topic_name, 1)
    topic = topic_configs(adm, topic_name, "all", keys=["retention.ms"])
    broker = adm.describe_configs([ConfigResource("BROKER", str(BROKER_ID),
                                                  ["log.retention.ms"])], config_filter="all")
    broker = broker["broker"][str(BROKER_ID)]
    assert (topic["retention.ms"]["documentation"], broker["log.retention.ms"]["documentation"]) \
        == (None, None), (topic, broker)


def test_describe_broker_config_values(start_broker):
    """DescribeConfigs v4 for ConfigResource(BROKER, "1"): the broker's effective settings under
    their broker names, including a value set at start-up; a topic without an override takes the
    broker's value."""
    b = start_broker({"log.retention.ms": 7200000, "message.max.bytes": 2000000})
    adm = new_admin(b.bootstrap)
    try:
        res = adm.describe_configs([ConfigResource("BROKER", str(BROKER_ID))],
                                   config_filter="all")
        cfg = res["broker"][str(BROKER_ID)]
        assert cfg["log.retention.ms"]["value"] == "7200000", cfg.get("log.retention.ms")
        assert cfg["message.max.bytes"]["value"] == "2000000", cfg.get("message.max.bytes")
        assert cfg["log.cleanup.policy"]["value"] == "delete", cfg.get("log.cleanup.policy")
        assert cfg["log.segment.bytes"]["value"] == "1073741824", cfg.get("log.segment.bytes")
        assert not any(c["is_sensitive"] for c in cfg.values())

        res = adm.describe_configs([ConfigResource("BROKER", str(BROKER_ID),
                                                   ["log.retention.ms"])], config_filter="all")
        assert list(res["broker"][str(BROKER_ID)]) == ["log.retention.ms"], res

        topic = unique_name("t")
        create(adm, topic, 1)
        t = topic_configs(adm, topic, "all", keys=["retention.ms", "max.message.bytes"])
        assert t["retention.ms"]["value"] == "7200000", t
        assert t["max.message.bytes"]["value"] == "2000000", t
    finally:
        adm.close()


def test_describe_broker_config_sources_and_settings(start_broker):
    """Kafka's DescribeConfigs for settings given at start-up (server.properties; for Partita the
    --set flags, TOML file or environment): config_source STATIC_BROKER_CONFIG (4), on the broker
    resource and as the source of a topic config that inherits it (ConfigHelper: a topic config's
    source is its first synonym's). Kafka lists every broker setting (KafkaConfig), among them
    num.partitions and auto.create.topics.enable, which Partita also understands."""
    b = start_broker({"log.retention.ms": 7200000, "num.partitions": 2})
    adm = new_admin(b.bootstrap)
    problems = []
    try:
        cfg = adm.describe_configs([ConfigResource("BROKER", str(BROKER_ID))],
                                   config_filter="all", include_synonyms=True)
        cfg = cfg["broker"][str(BROKER_ID)]
        src = cfg.get("log.retention.ms", {}).get("config_source")
        if src != "STATIC_BROKER_CONFIG":
            problems.append(f"broker log.retention.ms (set at start-up): config_source {src}, "
                            f"Kafka STATIC_BROKER_CONFIG")
        for key, want in (("num.partitions", "2"), ("auto.create.topics.enable", "true")):
            got = cfg.get(key, {}).get("value", "(missing)")
            if got != want:
                problems.append(f"broker {key}: {got}, Kafka {want!r}")

        topic = unique_name("t")
        create(adm, topic, 1)
        t = topic_configs(adm, topic, "all", keys=["retention.ms"], include_synonyms=True)
        r = t["retention.ms"]
        if r["config_source"] != "STATIC_BROKER_CONFIG":
            problems.append(f"topic retention.ms inherited from the broker's start-up setting: "
                            f"config_source {r['config_source']}, Kafka STATIC_BROKER_CONFIG "
                            f"(synonyms {r['synonyms']})")
        # kafka-python's default filter ("modified") leaves STATIC_BROKER_CONFIG out; with Kafka
        # the topic has no modified config.
        if topic_configs(adm, topic):
            problems.append(f"topic modified configs: {topic_configs(adm, topic)}, Kafka {{}}")
    finally:
        adm.close()
    assert not problems, "\n".join(problems)


@pytest.mark.xfail(strict=True, reason="dynamic broker configs (KIP-226) are not served yet: "
                   "the broker's log.* defaults are read-only and cannot be altered at run time")
def test_alter_broker_dynamic_config(broker, adm):
    """Kafka accepts IncrementalAlterConfigs for a per-broker dynamic config (KIP-226) such as
    log.retention.ms on ConfigResource(BROKER, "1"), and DescribeConfigs then reports it as
    DYNAMIC_BROKER_CONFIG, not read-only. raise_on_unknown=False sends the request even though
    the broker's describe marks the key read-only (kafka-python's own pre-check)."""
    res = adm.alter_configs([ConfigResource("BROKER", str(BROKER_ID),
                                            {"log.retention.ms": "3600000"})],
                            raise_on_unknown=False)
    assert res == {"broker": {str(BROKER_ID): "OK"}}, res
    cfg = adm.describe_configs([ConfigResource("BROKER", str(BROKER_ID), ["log.retention.ms"])],
                               config_filter="all")["broker"][str(BROKER_ID)]
    assert cfg["log.retention.ms"]["value"] == "3600000", cfg
    assert cfg["log.retention.ms"]["config_source"] == "DYNAMIC_BROKER_CONFIG", cfg
    assert cfg["log.retention.ms"]["read_only"] is False, cfg


# ------------------------------------------------------------------------------------------------
# cluster


def test_describe_cluster(broker, adm):
    """DescribeCluster v1: the cluster id, the controller and the one broker at its advertised
    address (the same as Metadata's)."""
    c = adm.describe_cluster()
    assert c["cluster_id"], c
    assert c["controller_id"] == BROKER_ID, c
    assert c["brokers"] == [{"broker_id": BROKER_ID, "host": broker.host, "port": broker.port,
                             "rack": None}], c


def test_authorized_operations_without_authorizer(broker, adm, topic_name, group_name):
    """kafka-python asks for authorized operations (Metadata v12
    include_topic_authorized_operations, DescribeCluster v1 include_cluster_authorized_operations,
    DescribeGroups v5 include_authorized_operations). Kafka without an authorizer answers every
    operation the resource type supports (AuthHelper.authorizedOperations, case None =>
    supportedOps); INT32_MIN ("not provided", kafka-python: None) is only for requests that did
    not ask."""
    create(adm, topic_name, 1)
    adm.alter_group_offsets(group_name, {TopicPartition(topic_name, 0): OffsetAndMetadata(
        0, "", None)})
    want = {
        "topic": {"READ", "WRITE", "CREATE", "DESCRIBE", "DELETE", "ALTER", "DESCRIBE_CONFIGS",
                  "ALTER_CONFIGS"},
        "cluster": {"CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
                    "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE"},
        "group": {"READ", "DESCRIBE", "DELETE"},
    }
    got = {
        "topic": topic_info(adm, topic_name)["authorized_operations"],
        "cluster": adm.describe_cluster()["authorized_operations"],
        "group": describe_group(adm, group_name)["authorized_operations"],
    }
    got = {k: (set(v) if v is not None else None) for k, v in got.items()}
    assert got == want


# ------------------------------------------------------------------------------------------------
# offsets: ListOffsets, DeleteRecords, consumer commits


def test_offset_lookups_and_delete_records(broker, adm, topic_name):
    """KafkaConsumer.beginning_offsets / end_offsets / offsets_for_times and the admin's
    list_partition_offsets (ListOffsets v8) and delete_records (DeleteRecords v2)."""
    create(adm, topic_name, 2)
    base = 1_700_000_000_000
    produce(broker.bootstrap, topic_name,
            [(0, f"v{i}".encode(), base + i * 1000) for i in range(10)])
    tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                      enable_auto_commit=False, request_timeout_ms=30000)
    try:
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 0}
        found = c.offsets_for_times({tp0: base + 4500, tp1: base})
        # The first record with timestamp >= the target; none in an empty partition.
        assert (found[tp0].offset, found[tp0].timestamp) == (5, base + 5000), found
        assert found[tp1] is None, found
        assert c.offsets_for_times({tp0: base + 60_000})[tp0] is None
        assert c.offsets_for_times({tp0: 0})[tp0].offset == 0

        lo = adm.list_partition_offsets({tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.LATEST})
        assert (lo[tp0].offset, lo[tp1].offset) == (0, 0), lo
        lo = adm.list_partition_offsets({tp0: OffsetSpec.LATEST})
        assert lo[tp0].offset == 10, lo
        lo = adm.list_partition_offsets({tp0: OffsetSpec.MAX_TIMESTAMP})
        assert (lo[tp0].offset, lo[tp0].timestamp) == (9, base + 9000), lo
        lo = adm.list_partition_offsets({tp0: base + 2000})
        assert (lo[tp0].offset, lo[tp0].timestamp) == (2, base + 2000), lo
        lo = adm.list_partition_offsets({tp0: base + 60_000})
        assert lo[tp0].offset == -1, lo
        with pytest.raises(Errors.UnknownTopicOrPartitionError):
            adm.list_partition_offsets({TopicPartition(topic_name, 7): OffsetSpec.LATEST})

        res = adm.delete_records({tp0: 4}, timeout_ms=OP_TIMEOUT_MS)
        assert res[tp0]["error_code"] == 0 and res[tp0]["low_watermark"] == 4, res
        assert c.beginning_offsets([tp0]) == {tp0: 4}
        assert adm.list_partition_offsets({tp0: OffsetSpec.EARLIEST})[tp0].offset == 4
        assert c.offsets_for_times({tp0: base})[tp0].offset == 4
        # Past the high watermark: OFFSET_OUT_OF_RANGE; -1 means "up to the high watermark".
        with pytest.raises(Errors.OffsetOutOfRangeError):
            adm.delete_records({tp0: 11}, timeout_ms=OP_TIMEOUT_MS)
        res = adm.delete_records({tp0: -1}, timeout_ms=OP_TIMEOUT_MS)
        assert res[tp0]["low_watermark"] == 10, res
        assert c.beginning_offsets([tp0]) == {tp0: 10}
        assert c.end_offsets([tp0]) == {tp0: 10}
    finally:
        c.close()


def test_consumer_commit_then_committed(broker, adm, topic_name, group_name):
    """A KafkaConsumer with a group_id and manually assigned partitions commits (OffsetCommit v8
    with generation -1, a "simple" group), reads the commits back with committed() (OffsetFetch),
    and a second consumer of the group starts from them; the admin sees them too."""
    create(adm, topic_name, 2)
    produce(broker.bootstrap, topic_name,
            [(p, f"p{p}-{i}".encode(), None) for p in (0, 1) for i in range(5)])
    tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group_name,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      request_timeout_ms=30000, fetch_max_wait_ms=100)
    try:
        c.assign([tp0, tp1])
        assert c.committed(tp0) is None and c.committed(tp1) is None
        # leader_epoch -1, not None: kafka-python 3.0.12's KafkaConsumer.commit() puts the
        # OffsetAndMetadata's leader_epoch into the OffsetCommit request as is, and None fails to
        # encode ("struct.error: required argument is not an integer") before anything is sent (a
        # client bug; the admin's alter_group_offsets turns None into -1).
        c.commit({tp0: OffsetAndMetadata(3, "half-way", -1)})
        assert c.committed(tp0) == 3
        oam = c.committed(tp0, metadata=True)
        assert (oam.offset, oam.metadata) == (3, "half-way"), oam
        assert c.committed(tp1) is None
        # commit() without offsets commits the positions of what was consumed.
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 7:
            assert time.monotonic() < deadline, f"consumed only {got}"
            for _tp, msgs in c.poll(timeout_ms=500).items():
                got.extend((m.partition, m.offset) for m in msgs)
        assert sorted(got) == [(0, 3), (0, 4)] + [(1, i) for i in range(5)], got
        c.commit()
        assert (c.committed(tp0), c.committed(tp1)) == (5, 5)
    finally:
        c.close()

    # (commit() of the positions sends the fetched records' leader epoch along: Kafka returns it.)
    got = adm.list_group_offsets(group_name)[group_name]
    assert {tp: (o.offset, o.metadata) for tp, o in got.items()} == \
        {tp0: (5, ""), tp1: (5, "")}, got
    d = describe_group(adm, group_name)
    assert (d["group_state"], d["protocol_type"], d["members"], d["error"]) == \
        ("Empty", "", [], None), d

    c2 = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group_name,
                       enable_auto_commit=False, request_timeout_ms=30000)
    try:
        c2.assign([tp0])
        assert c2.position(tp0) == 5
    finally:
        c2.close()


def test_delete_topic_removes_its_committed_offsets(broker, adm, topic_name):
    """Kafka drops a deleted topic's committed offsets from every group (the group coordinator's
    onPartitionsDeleted, called when the deletion is applied), so list_group_offsets no longer
    lists them and a topic re-created under the same name starts without commits. Another
    topic's offsets in the same group stay."""
    other = unique_name("t")
    create(adm, topic_name, 2)
    create(adm, other, 1)
    group = unique_name("g")
    tp0, tp1, o0 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1), \
        TopicPartition(other, 0)
    res = adm.alter_group_offsets(group, {tp0: OffsetAndMetadata(7, "", None),
                                          tp1: OffsetAndMetadata(3, "", None),
                                          o0: OffsetAndMetadata(5, "", None)})
    assert set(res.values()) == {Errors.NoError}, res

    adm.delete_topics([topic_name], timeout_ms=OP_TIMEOUT_MS)
    wait_until(lambda: topic_name not in adm.list_topics(), 30, f"{topic_name} deleted")
    last = {}

    def offsets_gone():
        last["got"] = adm.list_group_offsets(group)[group]
        return all(tp.topic != topic_name for tp in last["got"])
    try:
        wait_until(offsets_gone, 10, "the deleted topic's offsets to leave the group")
    except AssertionError:
        raise AssertionError(f"offsets of deleted topic {topic_name} still listed: "
                             f"{last['got']}") from None
    assert {tp: o.offset for tp, o in last["got"].items()} == {o0: 5}, last["got"]

    create(adm, topic_name, 2)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                      enable_auto_commit=False, request_timeout_ms=30000)
    try:
        assert (c.committed(tp0), c.committed(tp1)) == (None, None)
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------
# groups


def test_group_admin_for_an_empty_group(broker, adm, topic_name):
    """The admin's group calls on groups without members (offsets only): alter_group_offsets
    (OffsetCommit v8, generation -1), list_group_offsets (OffsetFetch v8, several groups at once),
    list_groups (ListGroups v5 with states/types filters), describe_groups (DescribeGroups v5),
    reset_group_offsets, delete_group_offsets (OffsetDelete v0), delete_groups (DeleteGroups v2).
    """
    create(adm, topic_name, 3)
    produce(broker.bootstrap, topic_name,
            [(p, b"x", None) for p in range(3) for _ in range(10)])
    g1, g2 = unique_name("g"), unique_name("g")
    tps = [TopicPartition(topic_name, p) for p in range(3)]

    res = adm.alter_group_offsets(g1, {tps[0]: OffsetAndMetadata(2, "m0", None),
                                       tps[1]: OffsetAndMetadata(7, "", None)})
    assert res == {tps[0]: Errors.NoError, tps[1]: Errors.NoError}, res
    res = adm.alter_group_offsets(g2, {tps[2]: OffsetAndMetadata(9, "", None)})
    assert res == {tps[2]: Errors.NoError}, res

    got = adm.list_group_offsets([g1, g2])
    assert got == {g1: {tps[0]: OffsetAndMetadata(2, "m0", -1),
                        tps[1]: OffsetAndMetadata(7, "", -1)},
                   g2: {tps[2]: OffsetAndMetadata(9, "", -1)}}, got
    # Asked for by partition: a partition without a commit is offset -1, metadata "".
    got = adm.list_group_offsets({g1: [tps[0], tps[2]]})[g1]
    assert got == {tps[0]: OffsetAndMetadata(2, "m0", -1),
                   tps[2]: OffsetAndMetadata(-1, "", -1)}, got

    # A group that only stores offsets: Empty, protocol type "", classic.
    assert group_of(adm, g1) == {"group_id": g1, "protocol_type": "", "group_state": "Empty",
                                 "group_type": "classic"}
    assert g1 in {g["group_id"] for g in adm.list_groups(states_filter=["Empty"])}
    assert g1 not in {g["group_id"] for g in adm.list_groups(states_filter=["Stable"])}
    assert g1 in {g["group_id"] for g in adm.list_groups(types_filter=["classic"])}
    assert g1 not in {g["group_id"] for g in adm.list_groups(types_filter=["consumer"])}
    d = describe_group(adm, g1)
    assert (d["group_state"], d["protocol_type"], d["protocol_data"], d["members"], d["error"]) \
        == ("Empty", "", "", [], None), d
    # An unknown group describes as Dead, without an error.
    missing = unique_name("nogroup")
    d = describe_group(adm, missing)
    assert (d["group_state"], d["members"], d["error"]) == ("Dead", [], None), d
    assert adm.list_group_offsets(missing) == {missing: {}}

    # reset_group_offsets: resolved with ListOffsets, clamped to [earliest, latest].
    res = adm.reset_group_offsets(g1, {tps[0]: OffsetSpec.LATEST, tps[1]: OffsetSpec.EARLIEST,
                                       tps[2]: 99})
    assert {tp: (r["error"], r["offset"]) for tp, r in res.items()} == {
        tps[0]: (Errors.NoError, 10), tps[1]: (Errors.NoError, 0),
        tps[2]: (Errors.NoError, 10)}, res
    got = adm.list_group_offsets(g1)[g1]
    assert {tp: o.offset for tp, o in got.items()} == {tps[0]: 10, tps[1]: 0, tps[2]: 10}, got

    # OffsetDelete of an empty group's partition.
    res = adm.delete_group_offsets(g1, [tps[1]])
    assert res == {tps[1]: Errors.NoError}, res
    got = adm.list_group_offsets(g1)[g1]
    assert {tp.partition for tp in got} == {0, 2}, got

    # DeleteGroups: OK for an empty group, GROUP_ID_NOT_FOUND per group otherwise.
    res = adm.delete_groups([g1, g2, missing])
    assert res == {g1: "OK", g2: "OK", missing: "GroupIdNotFoundError"}, res
    assert group_of(adm, g1) is None and group_of(adm, g2) is None
    assert adm.list_group_offsets(g1) == {g1: {}}
    assert adm.delete_groups([g1]) == {g1: "GroupIdNotFoundError"}


@pytest.mark.timeout(120)
def test_group_admin_for_a_live_classic_group(quick_broker, members, topic_name, group_name):
    """A classic group of two kafka-python consumers (group_member.py, range assignor, each record
    committed after processing): list_groups / describe_groups while Stable, list_group_offsets
    against the members' commits, Kafka's refusals for a group with members (DeleteGroups
    NON_EMPTY_GROUP, OffsetCommit from the admin UNKNOWN_MEMBER_ID, OffsetDelete of a subscribed
    topic GROUP_SUBSCRIBED_TO_TOPIC), then, once the members have left, the Empty group and its
    deletion."""
    b = quick_broker
    adm = new_admin(b.bootstrap)
    try:
        partitions = 4
        create(adm, topic_name, partitions)
        per_partition = 5
        produce(b.bootstrap, topic_name, [(p, f"r-{p}-{i}".encode(), None)
                                          for p in range(partitions) for i in range(per_partition)])
        m1 = members.spawn("m1", b.bootstrap, group_name, topic_name, assignor="range",
                           commit_below=-1, **FAST)
        m2 = members.spawn("m2", b.bootstrap, group_name, topic_name, assignor="range",
                           commit_below=-1, **FAST)
        ms = [m1, m2]

        last = {}

        def stable():
            d = describe_group(adm, group_name)
            last["d"] = d
            if d["group_state"] != "Stable" or len(d["members"]) != 2:
                return None
            by_id = {m["member_id"]: assigned_partitions(m, topic_name) for m in d["members"]}
            if any(mp.member_id not in by_id or by_id[mp.member_id] != mp.owned_now()
                   for mp in ms):
                return None
            owned = sorted(p for parts in by_id.values() for p in parts)
            return d if owned == list(range(partitions)) else None
        try:
            d = wait_until(stable, GROUP_DEADLINE, "group stable with 2 members owning all "
                                                   "partitions")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast describe: {last.get('d')}\n"
                                 f"{members.describe()}") from None

        assert (d["protocol_type"], d["protocol_data"], d["error"]) == \
            ("consumer", "range", None), d
        for m in d["members"]:
            assert m["client_id"].startswith(KAFKA_PYTHON_CLIENT_ID_PREFIX), m
            assert m["client_host"] == KAFKA_CLIENT_HOST, m
            assert m["group_instance_id"] is None, m
            assert list(m["member_metadata"]["topics"]) == [topic_name], m

        assert group_of(adm, group_name) == {"group_id": group_name, "protocol_type": "consumer",
                                             "group_state": "Stable", "group_type": "classic"}
        assert group_name in {g["group_id"] for g in adm.list_groups(states_filter=["Stable"])}
        assert group_name not in {g["group_id"] for g in adm.list_groups(states_filter=["Empty"])}

        # Every record processed and committed; the admin sees the members' commits.
        tps = [TopicPartition(topic_name, p) for p in range(partitions)]

        def all_committed():
            got = adm.list_group_offsets(group_name)[group_name]
            return got if {tp: o.offset for tp, o in got.items()} == \
                {tp: per_partition for tp in tps} else None
        wait_until(all_committed, GROUP_DEADLINE, "every partition committed at its end offset")
        merged = {}
        for m in ms:
            merged.update(m.commits)
        assert merged == {p: per_partition for p in range(partitions)}, members.describe()

        # Refusals for a group with members.
        assert adm.delete_groups([group_name]) == {group_name: "NonEmptyGroupError"}
        res = adm.alter_group_offsets(group_name, {tps[0]: OffsetAndMetadata(0, "", None)})
        assert res == {tps[0]: Errors.UnknownMemberIdError}, res
        res = adm.delete_group_offsets(group_name, [tps[0]])
        assert res == {tps[0]: Errors.GroupSubscribedToTopicError}, res
        assert adm.list_group_offsets(group_name)[group_name][tps[0]].offset == per_partition

        for m in ms:
            assert m.close() == 0, m.describe()
        assert not any(m.errors() for m in ms), members.describe()

        # After LeaveGroup: Empty, the protocol type kept, no members; then deletable.
        def empty():
            d = describe_group(adm, group_name)
            return d if d["group_state"] == "Empty" else None
        d = wait_until(empty, GROUP_DEADLINE, "group empty after both members left")
        assert (d["protocol_type"], d["protocol_data"], d["members"]) == ("consumer", "", []), d
        assert group_of(adm, group_name)["group_state"] == "Empty"
        assert adm.delete_groups([group_name]) == {group_name: "OK"}
        assert group_of(adm, group_name) is None
        assert describe_group(adm, group_name)["group_state"] == "Dead"
        assert adm.list_group_offsets(group_name) == {group_name: {}}
    finally:
        adm.close()
