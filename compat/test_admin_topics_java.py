"""The topic and config calls of `kafka-topics.sh`, `kafka-configs.sh`, `kafka-delete-records.sh`
and `kafka-get-offsets.sh` (the Java AdminClient of kafka-clients 3.9.1,
compat/java/AdminTopics.java through compat/java_admin.py) against Partita:

  kafka-topics.sh --create / --list / --describe / --alter --partitions / --delete
      createTopics, listTopics, describeTopics (by name and by topic id), createPartitions,
      deleteTopics (by name and by topic id)
  kafka-configs.sh --describe [--all] / --alter --add-config / --delete-config
      describeConfigs (TOPIC, BROKER), incrementalAlterConfigs (SET/DELETE/APPEND/SUBTRACT),
      alterConfigs (the legacy API)
  kafka-get-offsets.sh --time -1/-2/-3/-4/-5/<ts>, kafka-delete-records.sh
      listOffsets (latest, earliest, maxTimestamp, earliestLocal, latestTiered, forTimestamp),
      deleteRecords
  and describeCluster.

The expected values are what a single-node Kafka 3.9 (KRaft) broker answers; each one says where
Kafka decides it: the controller (metadata/.../controller/ReplicationControlManager.java,
ConfigurationControlManager.java, core/.../ControllerConfigurationValidator.scala), the broker's
DescribeConfigs (core/.../server/ConfigHelper.scala), the topic configs
(storage/.../log/LogConfig.java) and the log (core/.../log/UnifiedLog.scala).

A test goes on after a difference from Kafka and reports all of them at the end (`Checks`), so
one run lists every discrepancy.

Not asserted, because a single node cannot show it: replication factors above 1, manual replica
assignments to other brokers, ISR changes, eligible leader replicas, leader movement, and which
broker DescribeCluster names as the controller beyond "the only one" (a KRaft broker names a
random live broker).
"""

from __future__ import annotations

import re
import time
from typing import Dict, List, Optional

import pytest

from confluent_util import produce
from java_admin import JavaAdmin, jadmin  # noqa: F401 - jadmin is a fixture
from partita_compat import unique_name, wait_until
from test_java import compiled_java  # noqa: F401 - fixture: fetches jars, compiles java/*.java

ZERO_UUID = "AAAAAAAAAAAAAAAAAAAAAA"

DYNAMIC_TOPIC = "DYNAMIC_TOPIC_CONFIG"
STATIC_BROKER = "STATIC_BROKER_CONFIG"
DEFAULT = "DEFAULT_CONFIG"

# Every topic config of Kafka 3.9 (LogConfig.CONFIG), with its ConfigDef type and the value a
# topic has on a broker with default settings. DescribeConfigs of a topic lists all of them
# (ConfigHelper.describeConfigs: allConfigs(logConfig)), and CreateTopics / AlterConfigs accept
# any of them (LogConfig.validateNames).
KAFKA_TOPIC_CONFIGS: Dict[str, tuple] = {
    "cleanup.policy": ("LIST", "delete"),
    "compression.gzip.level": ("INT", "-1"),
    "compression.lz4.level": ("INT", "9"),
    "compression.type": ("STRING", "producer"),
    "compression.zstd.level": ("INT", "3"),
    "delete.retention.ms": ("LONG", "86400000"),
    "file.delete.delay.ms": ("LONG", "60000"),
    "flush.messages": ("LONG", "9223372036854775807"),
    "flush.ms": ("LONG", "9223372036854775807"),
    "follower.replication.throttled.replicas": ("LIST", ""),
    "index.interval.bytes": ("INT", "4096"),
    "leader.replication.throttled.replicas": ("LIST", ""),
    "local.retention.bytes": ("LONG", "-2"),
    "local.retention.ms": ("LONG", "-2"),
    "max.compaction.lag.ms": ("LONG", "9223372036854775807"),
    "max.message.bytes": ("INT", "1048588"),
    "message.downconversion.enable": ("BOOLEAN", "true"),
    "message.format.version": ("STRING", "3.0-IV1"),
    "message.timestamp.after.max.ms": ("LONG", "9223372036854775807"),
    "message.timestamp.before.max.ms": ("LONG", "9223372036854775807"),
    "message.timestamp.difference.max.ms": ("LONG", "9223372036854775807"),
    "message.timestamp.type": ("STRING", "CreateTime"),
    "min.cleanable.dirty.ratio": ("DOUBLE", "0.5"),
    "min.compaction.lag.ms": ("LONG", "0"),
    "min.insync.replicas": ("INT", "1"),
    "preallocate": ("BOOLEAN", "false"),
    "remote.log.copy.disable": ("BOOLEAN", "false"),
    "remote.log.delete.on.disable": ("BOOLEAN", "false"),
    "remote.storage.enable": ("BOOLEAN", "false"),
    "retention.bytes": ("LONG", "-1"),
    "retention.ms": ("LONG", "604800000"),
    "segment.bytes": ("INT", "1073741824"),
    "segment.index.bytes": ("INT", "10485760"),
    "segment.jitter.ms": ("LONG", "0"),
    "segment.ms": ("LONG", "604800000"),
    "unclean.leader.election.enable": ("BOOLEAN", "false"),
}


class Checks:
    """Collects the differences from Kafka so that a test reports all of them at once."""

    def __init__(self):
        self.problems: List[str] = []

    def eq(self, what: str, actual, expected) -> bool:
        if actual != expected:
            self.problems.append(f"{what}\n      Kafka:   {expected!r}\n      Partita: {actual!r}")
            return False
        return True

    def ok(self, what: str, ans: dict) -> bool:
        """`ans` (a JavaAdmin answer) must be a success."""
        if not ans.get("ok"):
            self.problems.append(f"{what}\n      Kafka:   succeeds\n      Partita: {ans}")
            return False
        return True

    def fails(self, what: str, ans: dict, exception: str) -> bool:
        """`ans` must be a failure with `exception` (the client's exception class)."""
        if ans.get("ok") or ans.get("error") != exception:
            self.problems.append(f"{what}\n      Kafka:   {exception}\n      Partita: {ans}")
            return False
        return True

    def done(self):
        assert not self.problems, (f"{len(self.problems)} difference(s) from Kafka 3.9:\n  - "
                                   + "\n  - ".join(self.problems))


# ------------------------------------------------------------------------------------------------
# Helpers


def create(ja: JavaAdmin, name: str, *opts: str, configs: Optional[Dict[str, str]] = None) -> dict:
    words = ["create", name, *opts] + [f"c:{k}={v}" for k, v in (configs or {}).items()]
    return ja.call(" ".join(words))


def must_create(ja: JavaAdmin, name: str, *opts: str, **kw) -> dict:
    r = create(ja, name, *opts, **kw)
    assert r["ok"], r
    return r


def topics(ja: JavaAdmin, internal: bool = False) -> Dict[str, dict]:
    """listTopics: name -> {"id", "internal"}."""
    return ja.ok("topics internal" if internal else "topics")["topics"]


def describe(ja: JavaAdmin, name: str) -> dict:
    return ja.call(f"describe-topics {name}")["topics"][name]


def describe_id(ja: JavaAdmin, topic_id: str) -> dict:
    return ja.call(f"describe-ids {topic_id}")["topics"][topic_id]


def configs(ja: JavaAdmin, kind: str, name: str, synonyms: bool = False) -> dict:
    """describeConfigs of one resource: name -> entry, or the error answer."""
    r = ja.call(f"configs {kind} {name}" + (" synonyms" if synonyms else ""))
    return r["configs"] if r["ok"] else r


def flags(entry: Optional[dict]) -> Optional[dict]:
    """What kafka-configs.sh --describe shows of an entry, without the synonyms and type."""
    if entry is None:
        return None
    return {k: entry[k] for k in ("value", "source", "default", "sensitive", "read_only")}


def topic_entry(value: str, source: str) -> dict:
    # Topic configs are never read-only or sensitive (ConfigHelper.createTopicConfigEntry:
    # setReadOnly(false), KafkaConfig.maybeSensitive is false for every LogConfig type);
    # ConfigEntry.isDefault() is source == DEFAULT_CONFIG.
    return {"value": value, "source": source, "default": source == DEFAULT, "sensitive": False,
            "read_only": False}


def offset(ja: JavaAdmin, topic: str, partition: int, spec: str) -> dict:
    """listOffsets of one partition: {"offset", "timestamp"} or the error answer."""
    r = ja.call(f"list-offsets {topic} {partition}={spec}")["partitions"][str(partition)]
    return {"offset": r["offset"], "timestamp": r["timestamp"]} if r["ok"] else r


def delete_records(ja: JavaAdmin, topic: str, partition: int, before: int) -> dict:
    """deleteRecords of one partition: {"low_watermark"} or the error answer."""
    r = ja.call(f"delete-records {topic} {partition}={before}")["partitions"][str(partition)]
    return {"low_watermark": r["low_watermark"]} if r["ok"] else r


def single_node(ja: JavaAdmin) -> dict:
    nodes = ja.ok("cluster")["nodes"]
    assert len(nodes) == 1, nodes
    return nodes[0]


def assert_partitions(c: Checks, what: str, d: dict, count: int, node_id: int):
    """A described topic of a single-node cluster: partitions 0..count-1, each led by the node,
    which is its only replica and in sync."""
    if not c.ok(what, d):
        return
    c.eq(f"{what}: partitions", d["partitions"],
         [{"partition": p, "leader": node_id, "replicas": [node_id], "isr": [node_id]}
          for p in range(count)])


# ------------------------------------------------------------------------------------------------
# 1. createTopics


@pytest.mark.timeout(120)
def test_create_topics(start_broker, jadmin):
    b = start_broker(num_partitions=3)
    ja = jadmin(b)
    node = single_node(ja)
    c = Checks()
    prefix = unique_name("ct")

    # kafka-topics.sh --create --partitions 2 --replication-factor 1 --config ...
    t = f"{prefix}-main"
    overrides = {"retention.ms": "3600000", "cleanup.policy": "compact,delete",
                 "segment.bytes": "1048576", "max.message.bytes": "2097152"}
    r = must_create(ja, t, "p=2", "rf=1", configs=overrides)
    assert r["partitions"] == 2 and r["rf"] == 1, r
    assert r["topic_id"] != ZERO_UUID, r
    # CreateTopics v5+ answers the new topic's effective configs
    # (ReplicationControlManager.createTopic: computeEffectiveTopicConfigs): the overrides as
    # DYNAMIC_TOPIC_CONFIG, every other config with its default.
    for k, v in overrides.items():
        c.eq(f"createTopics result config {k}", flags(r["configs"].get(k)),
             topic_entry(v, DYNAMIC_TOPIC))
    c.eq("createTopics result config segment.ms", flags(r["configs"].get("segment.ms")),
         topic_entry("604800000", DEFAULT))
    d = describe(ja, t)
    assert_partitions(c, f"describeTopics({t})", d, 2, node["id"])
    c.eq("describeTopics topic id = createTopics topic id", d.get("id"), r["topic_id"])
    described = configs(ja, "topic", t)
    for k, v in overrides.items():
        c.eq(f"describeConfigs({t}) {k}", flags(described.get(k)), topic_entry(v, DYNAMIC_TOPIC))

    # No --partitions / --replication-factor: Optional.empty() -> -1 on the wire -> the broker's
    # num.partitions and default.replication.factor.
    dflt = f"{prefix}-default"
    r = must_create(ja, dflt)
    c.eq("createTopics without partitions/rf: (partitions, rf)", (r["partitions"], r["rf"]),
         (3, 1))
    assert_partitions(c, f"describeTopics({dflt})", describe(ja, dflt), 3, node["id"])

    # validateOnly (CreateTopicsOptions.validateOnly): the same answer as a creation, and nothing
    # created (ReplicationControlManager.createTopics: validateOnly -> no records).
    v = f"{prefix}-validate"
    r = create(ja, v, "p=4", "validate", configs={"retention.ms": "1000"})
    if c.ok("createTopics(validateOnly)", r):
        c.eq("createTopics(validateOnly): (partitions, rf)", (r["partitions"], r["rf"]), (4, 1))
        c.eq("createTopics(validateOnly) config retention.ms",
             flags(r["configs"].get("retention.ms")), topic_entry("1000", DYNAMIC_TOPIC))
    c.fails("describeTopics after createTopics(validateOnly)", describe(ja, v),
            "UnknownTopicOrPartitionException")
    c.fails("createTopics(validateOnly) of an existing topic", create(ja, t, "p=1", "validate"),
            "TopicExistsException")
    c.fails("createTopics(validateOnly) with retention.ms=abc",
            create(ja, v, "p=1", "validate", configs={"retention.ms": "abc"}),
            "InvalidConfigurationException")

    # The refusals. Kafka checks the name (Topic.validate, collisions), then existence, then the
    # configs, and only then replication factor and partitions
    # (ReplicationControlManager.createTopics/createTopic).
    must_create(ja, f"{prefix}_under", "p=1")
    new = f"{prefix}-refused"
    refusals = [
        (f"create {t} p=1", "TopicExistsException"),
        # An existing name is TOPIC_ALREADY_EXISTS whatever else the request asks for.
        (f"create {t} p=1 rf=3", "TopicExistsException"),
        ("create bad!name p=1", "InvalidTopicException"),
        ("create " + "x" * 250 + " p=1", "InvalidTopicException"),
        ("create .. p=1", "InvalidTopicException"),
        # '.' and '_' collide (Topic.hasCollisionChars / unifyCollisionChars).
        (f"create {prefix}.under p=1", "InvalidTopicException"),
        # The placer cannot find 3 brokers: "Unable to replicate the partition 3 time(s): The
        # target replication factor of 3 cannot be reached because only 1 broker(s) are
        # registered." (StripedReplicaPlacer).
        (f"create {new} p=1 rf=3", "InvalidReplicationFactorException"),
        # "Replication factor must be larger than 0, or -1 to use the default value."
        (f"create {new} p=1 rf=0", "InvalidReplicationFactorException"),
        (f"create {new} p=1 rf=-2", "InvalidReplicationFactorException"),
        # "Number of partitions was set to an invalid non-positive value."
        (f"create {new} p=0", "InvalidPartitionsException"),
        (f"create {new} p=-2", "InvalidPartitionsException"),
        # LogConfig.validate: "Unknown topic config name: foo.bar"; a bad value is a
        # ConfigException -> INVALID_CONFIG (ConfigurationControlManager.validateAlterConfig).
        (f"create {new} p=1 c:foo.bar=1", "InvalidConfigurationException"),
        (f"create {new} p=1 c:retention.ms=abc", "InvalidConfigurationException"),
        (f"create {new} p=1 c:cleanup.policy=bogus", "InvalidConfigurationException"),
        # segment.bytes: atLeast(LegacyRecord.RECORD_OVERHEAD_V0 = 14) in 3.9.
        (f"create {new} p=1 c:segment.bytes=13", "InvalidConfigurationException"),
        (f"create {new} p=1 c:max.message.bytes=-1", "InvalidConfigurationException"),
    ]
    for line, exception in refusals:
        r = ja.call(line)
        if c.fails(line if len(line) < 100 else line[:60] + "...", r, exception) \
                and exception == "InvalidReplicationFactorException" and "rf=3" in line:
            c.eq("InvalidReplicationFactorException message", r["msg"],
                 "Unable to replicate the partition 3 time(s): The target replication factor of "
                 "3 cannot be reached because only 1 broker(s) are registered.")
    listed = sorted(n for n in topics(ja) if n.startswith(prefix))
    c.eq("the topics after the refused and validate-only creations", listed,
         sorted([t, dflt, f"{prefix}_under"]))

    # Every Kafka topic config is accepted with its default value (kafka-topics.sh --create
    # --config NAME=VALUE; LogConfig.validateNames knows them all). validateOnly: nothing is
    # created.
    refused = {}
    for name, (_, value) in KAFKA_TOPIC_CONFIGS.items():
        r = create(ja, f"{prefix}-cfg", "p=1", "validate", configs={name: value})
        if not r["ok"]:
            refused[name] = f"{r['error']}: {r['msg']}"
    c.eq("createTopics --config <Kafka topic config>=<its default> refused", refused, {})
    c.done()


# ------------------------------------------------------------------------------------------------
# 2. listTopics, describeTopics, describeCluster


@pytest.mark.timeout(120)
def test_list_and_describe_topics(broker, jadmin):
    ja = jadmin(broker)
    c = Checks()
    prefix = unique_name("lt")
    a, bb = f"{prefix}-a", f"{prefix}-b"
    # A user topic whose name starts with "__": allowed, and not internal. Kafka's internal
    # topics are exactly __consumer_offsets, __transaction_state and __share_group_state
    # (org.apache.kafka.common.internals.Topic.isInternal), which the metadata marks isInternal.
    under = f"__{prefix}-user"
    ids = {n: must_create(ja, n, f"p={p}", "rf=1")["topic_id"] for n, p in
           [(a, 3), (bb, 1), (under, 1)]}

    # describeCluster (kafka-cluster.sh / kafka-topics.sh show the nodes): the one node, which a
    # KRaft broker also names as the controller (it answers a random live broker).
    cl = ja.ok("cluster")
    assert len(cl["nodes"]) == 1, cl
    node = cl["nodes"][0]
    c.eq("describeCluster node", {"host": node["host"], "port": node["port"]},
         {"host": broker.host, "port": broker.port})
    c.eq("describeCluster controller", cl["controller"], node)
    c.eq("describeCluster clusterId is a base64 Uuid",
         bool(re.fullmatch(r"[A-Za-z0-9_-]{22}", cl["cluster_id"] or "")), True)

    # listTopics(): the user topics with their ids, not the internal ones.
    plain = topics(ja)
    for n in (a, bb, under):
        c.eq(f"listTopics() lists {n}", plain.get(n), {"id": ids[n], "internal": False})
    c.eq("listTopics() leaves out __consumer_offsets", "__consumer_offsets" in plain, False)
    # listTopics(listInternal(true)) (kafka-topics.sh --list asks for them, then filters with
    # --exclude-internal): __consumer_offsets too, marked internal.
    everything = topics(ja, internal=True)
    c.eq("listTopics(listInternal) __consumer_offsets internal",
         (everything.get("__consumer_offsets") or {}).get("internal"), True)
    for n in (a, bb, under):
        c.eq(f"listTopics(listInternal) lists {n}", everything.get(n),
             {"id": ids[n], "internal": False})

    # describeTopics by name (DescribeTopicPartitions is not offered, so the client falls back
    # to Metadata) and by topic id (Metadata v12 with topic ids).
    for n, count in ((a, 3), (bb, 1), (under, 1)):
        d = describe(ja, n)
        assert_partitions(c, f"describeTopics({n})", d, count, node["id"])
        if d["ok"]:
            c.eq(f"describeTopics({n}) (name, id, internal)", (d["name"], d["id"], d["internal"]),
                 (n, ids[n], False))
        by_id = describe_id(ja, ids[n])
        c.eq(f"describeTopics(ofTopicIds({n})) = describeTopics({n})", by_id, d)
    both = ja.call(f"describe-topics {a},{bb}")
    c.eq("describeTopics([a, b]) answers both", sorted(both["topics"]), sorted([a, bb]))
    d = describe(ja, "__consumer_offsets")
    if c.ok("describeTopics(__consumer_offsets)", d):
        # offsets.topic.num.partitions defaults to 50.
        c.eq("__consumer_offsets (internal, partitions)", (d["internal"], len(d["partitions"])),
             (True, 50))

    # Unknown topics: UNKNOWN_TOPIC_OR_PARTITION by name, UNKNOWN_TOPIC_ID by id.
    c.fails("describeTopics(unknown name)", describe(ja, f"{prefix}-nope"),
            "UnknownTopicOrPartitionException")
    c.fails("describeTopics(ofTopicIds(unknown id))", describe_id(ja, "b2uyVvWlRzqq9bWdOEXvnw"),
            "UnknownTopicIdException")
    mixed = ja.call(f"describe-topics {a},{prefix}-nope")["topics"]
    c.eq("describeTopics([a, unknown]): a still described", mixed[a].get("ok"), True)
    c.done()


# ------------------------------------------------------------------------------------------------
# 3. describeConfigs of a topic and of the broker


RETENTION_MS = "3600000"


def without_read_only(entry: Optional[dict]) -> Optional[dict]:
    if entry is None:
        return None
    return {k: v for k, v in entry.items() if k != "read_only"}


@pytest.mark.timeout(120)
def test_describe_configs(start_broker, jadmin):
    # log.retention.ms given to the broker (server.properties / --override in Kafka): a static
    # broker config, which the topics without an override inherit.
    b = start_broker({"log.retention.ms": RETENTION_MS})
    ja = jadmin(b)
    node = single_node(ja)
    c = Checks()
    t = unique_name("dc")
    must_create(ja, t, "p=1", configs={"cleanup.policy": "compact",
                                       "max.message.bytes": "2097152"})

    got = configs(ja, "topic", t)
    assert isinstance(got, dict) and "cleanup.policy" in got, got
    # Overrides: DYNAMIC_TOPIC_CONFIG.
    c.eq("cleanup.policy", flags(got.get("cleanup.policy")), topic_entry("compact", DYNAMIC_TOPIC))
    c.eq("max.message.bytes", flags(got.get("max.message.bytes")),
         topic_entry("2097152", DYNAMIC_TOPIC))
    # A topic config the broker sets: its value and the source of the broker setting
    # (ConfigHelper.createTopicConfigEntry: the source is the first synonym's, here
    # log.retention.ms from the static broker config); not a default, so kafka-topics.sh
    # --describe shows it.
    c.eq("retention.ms inherited from the broker's log.retention.ms", flags(got.get("retention.ms")),
         topic_entry(RETENTION_MS, STATIC_BROKER))
    # Everything else: Kafka's defaults, with Kafka's types.
    for name, entry in sorted(got.items()):
        if name in ("cleanup.policy", "max.message.bytes", "retention.ms"):
            continue
        if name not in KAFKA_TOPIC_CONFIGS:
            c.eq(f"describeConfigs lists {name}, which is not a Kafka topic config", name, None)
            continue
        _, value = KAFKA_TOPIC_CONFIGS[name]
        c.eq(f"{name}", flags(entry), topic_entry(value, DEFAULT))
    for name, entry in sorted(got.items()):
        if name in KAFKA_TOPIC_CONFIGS:
            c.eq(f"{name} type", entry["type"], KAFKA_TOPIC_CONFIGS[name][0])
        c.eq(f"{name} synonyms without includeSynonyms", entry["synonyms"], [])
    # kafka-configs.sh --describe --all lists every topic config.
    c.eq("topic configs Kafka lists and Partita does not",
         sorted(set(KAFKA_TOPIC_CONFIGS) - set(got)), [])

    # includeSynonyms (kafka-configs.sh --describe asks for them): the topic override first,
    # then the broker settings it would fall back to, most specific first
    # (ConfigHelper.configSynonyms: dynamic broker, dynamic default, static, default).
    syn = configs(ja, "topic", t, synonyms=True)
    c.eq("cleanup.policy synonyms", (syn.get("cleanup.policy") or {}).get("synonyms"), [
        {"name": "cleanup.policy", "value": "compact", "source": DYNAMIC_TOPIC},
        {"name": "log.cleanup.policy", "value": "delete", "source": DEFAULT}])
    c.eq("retention.ms first synonym", ((syn.get("retention.ms") or {}).get("synonyms") or [None])[0],
         {"name": "log.retention.ms", "value": RETENTION_MS, "source": STATIC_BROKER})
    c.eq("segment.bytes synonyms", (syn.get("segment.bytes") or {}).get("synonyms"),
         [{"name": "log.segment.bytes", "value": "1073741824", "source": DEFAULT}])

    c.fails("describeConfigs(unknown topic)", configs(ja, "topic", unique_name("nope")),
            "UnknownTopicOrPartitionException")

    # The broker (kafka-configs.sh --entity-type brokers --entity-name <id> --describe --all): a
    # resource named by the node id; every broker config (ConfigHelper: allConfigs(config)).
    # log.retention.ms is a static setting there, and one of the configs a broker can change at
    # run time (DynamicLogConfig.ReconfigurableConfigs), so not read-only.
    bc = configs(ja, "broker", str(node["id"]))
    assert isinstance(bc, dict) and bc.get("ok") is not False, bc
    # (Whether they are read-only is checked by test_dynamic_broker_configs.)
    c.eq("broker log.retention.ms", without_read_only(flags(bc.get("log.retention.ms"))),
         {"value": RETENTION_MS, "source": STATIC_BROKER, "default": False, "sensitive": False})
    c.eq("broker log.segment.bytes", without_read_only(flags(bc.get("log.segment.bytes"))),
         {"value": "1073741824", "source": DEFAULT, "default": True, "sensitive": False})
    # Broker settings Partita takes too; Kafka lists them (node.id is not dynamic: read-only).
    c.eq("broker node.id", flags(bc.get("node.id")),
         {"value": str(node["id"]), "source": STATIC_BROKER, "default": False, "sensitive": False,
          "read_only": True})
    for name in ("num.partitions", "auto.create.topics.enable", "delete.topic.enable",
                 "message.max.bytes", "offsets.topic.num.partitions",
                 "group.initial.rebalance.delay.ms"):
        c.eq(f"broker config {name} listed", name in bc, True)
    # The cluster-wide default resource (--entity-default, resource name ""): only the dynamic
    # default configs (currentDynamicDefaultConfigs), none here.
    c.eq("describeConfigs(BROKER \"\") with no dynamic defaults", configs(ja, "broker", "-"), {})
    c.done()


# ------------------------------------------------------------------------------------------------
# 4. incrementalAlterConfigs and alterConfigs


@pytest.mark.timeout(120)
def test_alter_configs(broker, jadmin):
    ja = jadmin(broker)
    c = Checks()
    t = unique_name("ac")
    must_create(ja, t, "p=1")

    def current(name: str) -> Optional[dict]:
        return flags(configs(ja, "topic", t).get(name))

    def alter(*ops: str, what: str) -> bool:
        return c.ok(what, ja.call(f"alter-inc topic {t} " + " ".join(ops)))

    # kafka-configs.sh --alter --add-config retention.ms=86400000: SET.
    if alter("set:retention.ms=86400000", what="SET retention.ms"):
        c.eq("after SET retention.ms", current("retention.ms"),
             topic_entry("86400000", DYNAMIC_TOPIC))
    # APPEND to a list config without an override starts from its default ("delete";
    # ConfigurationControlManager.getParts).
    if alter("append:cleanup.policy=compact", what="APPEND cleanup.policy=compact (no override)"):
        c.eq("after APPEND compact", current("cleanup.policy"),
             topic_entry("delete,compact", DYNAMIC_TOPIC))
    # APPEND of a value that is there already changes nothing.
    if alter("append:cleanup.policy=compact", what="APPEND compact again"):
        c.eq("after APPEND compact again", current("cleanup.policy"),
             topic_entry("delete,compact", DYNAMIC_TOPIC))
    if alter("subtract:cleanup.policy=delete", what="SUBTRACT cleanup.policy=delete"):
        c.eq("after SUBTRACT delete", current("cleanup.policy"),
             topic_entry("compact", DYNAMIC_TOPIC))
    # kafka-configs.sh --delete-config cleanup.policy: DELETE -> back to the default.
    if alter("delete:cleanup.policy", what="DELETE cleanup.policy"):
        c.eq("after DELETE", current("cleanup.policy"), topic_entry("delete", DEFAULT))
    # DELETE of a config without an override: nothing to do, no error.
    alter("delete:segment.ms", what="DELETE of a config that is not overridden")
    # Several operations in one request, all applied.
    if alter("set:segment.ms=3600000", "set:cleanup.policy=compact,delete",
             what="two SETs in one request"):
        c.eq("after two SETs", (current("segment.ms"), current("cleanup.policy")),
             (topic_entry("3600000", DYNAMIC_TOPIC), topic_entry("compact,delete", DYNAMIC_TOPIC)))
    # validateOnly: checked, not applied.
    if alter("validate", "set:segment.bytes=1048576", what="SET segment.bytes validateOnly"):
        c.eq("after validateOnly SET", current("segment.bytes"),
             topic_entry("1073741824", DEFAULT))

    before = configs(ja, "topic", t)
    # Refusals, all INVALID_CONFIG (ConfigurationControlManager: a ConfigException of
    # LogConfig.validate, "Unknown topic config name", and "Can't APPEND to key retention.ms
    # because its type is not LIST").
    for op in ("set:retention.ms=abc", "set:cleanup.policy=bogus", "set:segment.bytes=13",
               "set:foo.bar=1", "append:retention.ms=5", "subtract:segment.ms=1"):
        c.fails(f"incrementalAlterConfigs {op}", ja.call(f"alter-inc topic {t} {op}"),
                "InvalidConfigurationException")
    # One bad operation refuses the whole resource.
    c.fails("incrementalAlterConfigs SET retention.ms=1 + SET retention.bytes=x",
            ja.call(f"alter-inc topic {t} set:retention.ms=1 set:retention.bytes=x"),
            "InvalidConfigurationException")
    c.eq("configs after the refused alterations", configs(ja, "topic", t), before)
    c.fails("incrementalAlterConfigs of an unknown topic",
            ja.call(f"alter-inc topic {unique_name('nope')} set:retention.ms=1"),
            "UnknownTopicOrPartitionException")

    # The legacy alterConfigs replaces the topic's whole set of overrides
    # (ConfigurationControlManager.legacyAlterConfigResource: the others are deleted).
    if c.ok("alterConfigs retention.bytes=1048576",
            ja.call(f"alter-legacy topic {t} retention.bytes=1048576")):
        now = configs(ja, "topic", t)
        c.eq("after alterConfigs: overrides",
             sorted(k for k, e in now.items() if e["source"] == DYNAMIC_TOPIC), ["retention.bytes"])
        c.eq("after alterConfigs: retention.ms", flags(now.get("retention.ms")),
             topic_entry("604800000", DEFAULT))
    c.fails("alterConfigs retention.ms=abc", ja.call(f"alter-legacy topic {t} retention.ms=abc"),
            "InvalidConfigurationException")
    c.fails("alterConfigs of an unknown topic",
            ja.call(f"alter-legacy topic {unique_name('nope')} retention.ms=1"),
            "UnknownTopicOrPartitionException")

    # A Kafka topic config Partita may not know (kafka-configs.sh --add-config
    # unclean.leader.election.enable=true is a common one).
    c.ok("incrementalAlterConfigs SET unclean.leader.election.enable=true (validateOnly)",
         ja.call(f"alter-inc topic {t} validate set:unclean.leader.election.enable=true"))
    c.done()


@pytest.mark.xfail(strict=True, reason="dynamic broker configs (KIP-226) are not served yet: "
                   "the broker's log.* defaults are read-only and cannot be altered at run time")
@pytest.mark.timeout(120)
def test_dynamic_broker_configs(broker, jadmin):
    ja = jadmin(broker)
    c = Checks()
    node = ja.ok("cluster")["nodes"][0]
    bc = configs(ja, "broker", str(node["id"]))
    # log.retention.ms is one of the configs a Kafka broker can change at run time
    # (DynamicLogConfig.ReconfigurableConfigs), so not read-only.
    c.eq("broker log.retention.ms read-only", flags(bc.get("log.retention.ms"))["read_only"],
         False)
    # A cluster-wide dynamic broker default (kafka-configs.sh --entity-type brokers
    # --entity-default --alter --add-config log.retention.ms=...): Kafka accepts it;
    # validateOnly so that nothing changes.
    c.ok("incrementalAlterConfigs BROKER \"\" SET log.retention.ms (validateOnly)",
         ja.call("alter-inc broker - validate set:log.retention.ms=86400000"))
    c.done()


# ------------------------------------------------------------------------------------------------
# 5. createPartitions


@pytest.mark.timeout(120)
def test_create_partitions(broker, jadmin):
    ja = jadmin(broker)
    node = single_node(ja)
    c = Checks()
    t = unique_name("cp")
    must_create(ja, t, "p=2")

    # kafka-topics.sh --alter --partitions 4
    if c.ok("createPartitions 2 -> 4", ja.call(f"create-partitions {t} 4")):
        assert_partitions(c, "describeTopics after growing to 4", describe(ja, t), 4, node["id"])
        c.eq("latest offset of a new partition", offset(ja, t, 3, "latest"),
             {"offset": 0, "timestamp": -1})
    # validateOnly: nothing added.
    c.ok("createPartitions 4 -> 6 validateOnly", ja.call(f"create-partitions {t} 6 validate"))
    # Shrinking, or the same count: INVALID_PARTITIONS ("The topic T currently has 4
    # partition(s); 2 would not be an increase." / "Topic already has 4 partition(s).").
    c.fails("createPartitions 4 -> 2", ja.call(f"create-partitions {t} 2"),
            "InvalidPartitionsException")
    c.fails("createPartitions 4 -> 4", ja.call(f"create-partitions {t} 4"),
            "InvalidPartitionsException")
    c.fails("createPartitions of an unknown topic",
            ja.call(f"create-partitions {unique_name('nope')} 3"),
            "UnknownTopicOrPartitionException")
    assert_partitions(c, "describeTopics after the refusals", describe(ja, t), 4, node["id"])
    c.done()


# ------------------------------------------------------------------------------------------------
# 6. listOffsets and deleteRecords


# Record timestamps (after BASE): the largest is in the middle, so that the record with the
# largest timestamp is not the last one, and the first record at or after a timestamp is not the
# one whose timestamp is nearest.
DELTAS = [1000, 2000, 5000, 3000, 4000]


@pytest.mark.timeout(120)
def test_list_offsets_and_delete_records(broker, jadmin):
    ja = jadmin(broker)
    c = Checks()
    t = unique_name("lo")
    must_create(ja, t, "p=3")
    base = int(time.time() * 1000) - 3_600_000
    # Values that compress well: librdkafka sends a batch uncompressed when gzip would not make
    # it smaller.
    records = [{"value": f"v{i}-".encode() + b"a" * 2000, "timestamp": base + d}
               for i, d in enumerate(DELTAS)]
    # Partition 0: uncompressed; partition 1: one gzip batch (Kafka looks into compressed batches
    # for the exact record too); partition 2: empty.
    plain = produce(broker.bootstrap, t, [dict(r, partition=0) for r in records],
                    **{"linger.ms": 200})
    packed = produce(broker.bootstrap, t, [dict(r, partition=1) for r in records],
                     **{"linger.ms": 200, "compression.type": "gzip"})
    assert all(d.err is None for d in plain + packed), plain + packed
    assert [d.offset for d in plain] == [d.offset for d in packed] == list(range(5))

    def at(i: int) -> dict:
        return {"offset": i, "timestamp": base + DELTAS[i]}

    none = {"offset": -1, "timestamp": -1}
    for p in (0, 1):
        what = f"partition {p} ({'gzip' if p else 'uncompressed'})"
        # --time -2 / -1: offsets only (UnifiedLog.fetchOffsetByTimestamp: NO_TIMESTAMP).
        c.eq(f"{what}: earliest", offset(ja, t, p, "earliest"), {"offset": 0, "timestamp": -1})
        c.eq(f"{what}: latest", offset(ja, t, p, "latest"), {"offset": 5, "timestamp": -1})
        # --time -3: the record with the largest timestamp (batch.offsetOfMaxTimestamp).
        c.eq(f"{what}: maxTimestamp", offset(ja, t, p, "max"), at(2))
        # --time <ts>: the first record whose timestamp is at or after ts.
        c.eq(f"{what}: forTimestamp(base)", offset(ja, t, p, str(base)), at(0))
        c.eq(f"{what}: forTimestamp(base+1500)", offset(ja, t, p, str(base + 1500)), at(1))
        c.eq(f"{what}: forTimestamp(base+2500)", offset(ja, t, p, str(base + 2500)), at(2))
        c.eq(f"{what}: forTimestamp(base+5000)", offset(ja, t, p, str(base + 5000)), at(2))
        c.eq(f"{what}: forTimestamp(after the last)", offset(ja, t, p, str(base + 6000)), none)
    # --time -4 (earliest local) is the log start without tiered storage; --time -5 (latest
    # tiered, ListOffsets v9) is -1 when nothing is tiered (UnifiedLog: "TimestampAndOffset(
    # NO_TIMESTAMP, -1L, ...)" without remote storage).
    c.eq("earliestLocal", offset(ja, t, 0, "local"), {"offset": 0, "timestamp": -1})
    c.eq("latestTiered", offset(ja, t, 0, "tiered"), {"offset": -1, "timestamp": -1})
    c.eq("empty partition: earliest", offset(ja, t, 2, "earliest"), {"offset": 0, "timestamp": -1})
    c.eq("empty partition: latest", offset(ja, t, 2, "latest"), {"offset": 0, "timestamp": -1})
    c.eq("empty partition: maxTimestamp", offset(ja, t, 2, "max"), none)
    c.eq("empty partition: forTimestamp", offset(ja, t, 2, str(base)), none)
    # Several partitions in one request (kafka-get-offsets.sh --topic T).
    many = ja.call(f"list-offsets {t} 0=latest,1=earliest,2=latest")
    c.eq("listOffsets of three partitions",
         {p: v.get("offset") for p, v in many["partitions"].items()}, {"0": 5, "1": 0, "2": 0})

    # kafka-delete-records.sh: the log start moves to the offset given (in the middle of a batch
    # too), and ListOffsets follows: earliest, earliestLocal and the timestamp search, which
    # starts at the log start (searchOffsetInLocalLog(ts, logStartOffset)).
    c.eq("deleteRecords(p0, before 3)", delete_records(ja, t, 0, 3), {"low_watermark": 3})
    c.eq("p0 after deleteRecords: earliest", offset(ja, t, 0, "earliest"),
         {"offset": 3, "timestamp": -1})
    c.eq("p0 after deleteRecords: earliestLocal", offset(ja, t, 0, "local"),
         {"offset": 3, "timestamp": -1})
    c.eq("p0 after deleteRecords: latest", offset(ja, t, 0, "latest"),
         {"offset": 5, "timestamp": -1})
    c.eq("p0 after deleteRecords: forTimestamp(base)", offset(ja, t, 0, str(base)), at(3))
    c.eq("deleteRecords(p1, before 2): inside the gzip batch", delete_records(ja, t, 1, 2),
         {"low_watermark": 2})
    c.eq("p1 after deleteRecords: earliest", offset(ja, t, 1, "earliest"),
         {"offset": 2, "timestamp": -1})
    c.eq("p1 after deleteRecords: forTimestamp(base)", offset(ja, t, 1, str(base)), at(2))
    c.eq("p1 after deleteRecords: forTimestamp(base+3500)", offset(ja, t, 1, str(base + 3500)),
         at(2))
    # Below the log start: nothing happens, the low watermark is the log start.
    c.eq("deleteRecords(p0, before 1) below the log start", delete_records(ja, t, 0, 1),
         {"low_watermark": 3})
    # Past the high watermark: OFFSET_OUT_OF_RANGE (Partition.deleteRecordsOnLeader).
    c.fails("deleteRecords(p0, before 6) past the high watermark", delete_records(ja, t, 0, 6),
            "OffsetOutOfRangeException")
    # -1: up to the high watermark (kafka-delete-records.sh "offset": -1).
    c.eq("deleteRecords(p1, before -1 = high watermark)", delete_records(ja, t, 1, -1),
         {"low_watermark": 5})
    c.eq("p1 after deleting everything: earliest", offset(ja, t, 1, "earliest"),
         {"offset": 5, "timestamp": -1})
    c.eq("p1 after deleting everything: forTimestamp(base)", offset(ja, t, 1, str(base)), none)
    c.eq("deleteRecords(empty p2, before 0)", delete_records(ja, t, 2, 0), {"low_watermark": 0})
    # (deleteRecords of an unknown topic is not asked: kafka-clients retries the leader lookup
    # of an unknown topic until the call times out, PartitionLeaderStrategy with
    # tolerateUnknownTopics, against Kafka as against Partita.)
    c.done()


# ------------------------------------------------------------------------------------------------
# 7. deleteTopics


@pytest.mark.timeout(120)
def test_delete_topics(broker, jadmin):
    ja = jadmin(broker)
    c = Checks()
    prefix = unique_name("dt")
    a, bb, keep = f"{prefix}-a", f"{prefix}-b", f"{prefix}-keep"
    under = f"__{prefix}-user"
    ids = {n: must_create(ja, n, "p=2")["topic_id"] for n in (a, bb, keep, under)}
    produce(broker.bootstrap, a, [{"value": b"x", "partition": 0}] * 3)
    assert offset(ja, a, 0, "latest") == {"offset": 3, "timestamp": -1}

    def gone(name: str, topic_id: str):
        """Once deleted: unknown by name (describeTopics, describeConfigs) and by id, and not
        listed. The metadata of a deletion reaches the brokers asynchronously in Kafka, so wait
        for it."""
        try:
            wait_until(lambda: describe(ja, name).get("error") == "UnknownTopicOrPartitionException",
                       15, f"describeTopics({name}) -> UnknownTopicOrPartitionException",
                       interval=0.2)
        except AssertionError:
            c.fails(f"describeTopics({name}) after deleteTopics", describe(ja, name),
                    "UnknownTopicOrPartitionException")
            return
        c.fails(f"describeTopics(ofTopicIds({name})) after deleteTopics",
                describe_id(ja, topic_id), "UnknownTopicIdException")
        c.fails(f"describeConfigs({name}) after deleteTopics", configs(ja, "topic", name),
                "UnknownTopicOrPartitionException")
        c.eq(f"listTopics lists {name} after deleteTopics", name in topics(ja, internal=True),
             False)

    # kafka-topics.sh --delete --topic A: by name.
    r = ja.call(f"delete-topics {a}")
    if c.ok(f"deleteTopics({a})", r):
        gone(a, ids[a])
    # By topic id (Admin.deleteTopics(TopicCollection.ofTopicIds), DeleteTopics v6).
    r = ja.call(f"delete-ids {ids[bb]}")
    if c.ok(f"deleteTopics(ofTopicIds({bb}))", r):
        gone(bb, ids[bb])
    # Again: UNKNOWN_TOPIC_OR_PARTITION by name, UNKNOWN_TOPIC_ID by id
    # (ControllerApis.deleteTopics: findTopicIds / findTopicNames).
    c.fails("deleteTopics of a deleted name", ja.call(f"delete-topics {a}"),
            "UnknownTopicOrPartitionException")
    c.fails("deleteTopics of a deleted id", ja.call(f"delete-ids {ids[bb]}"),
            "UnknownTopicIdException")
    # A user topic named "__...": not internal, so deleted like any other.
    r = ja.call(f"delete-topics {under}")
    if c.ok(f"deleteTopics({under}) (a user topic whose name starts with __)", r):
        gone(under, ids[under])
    # The other topic is untouched.
    assert_partitions(c, f"describeTopics({keep})", describe(ja, keep), 2, single_node(ja)["id"])

    # The same name again: a new topic, with a new id and none of the old records.
    r = must_create(ja, a, "p=1")
    c.eq("re-created topic has a new id", r["topic_id"] != ids[a], True)
    c.eq("re-created topic: latest offset", offset(ja, a, 0, "latest"),
         {"offset": 0, "timestamp": -1})
    c.eq("re-created topic listed with its new id", topics(ja).get(a),
         {"id": r["topic_id"], "internal": False})
    c.done()
