"""The clients people still run: request versions Kafka 3.9 serves and Kafka 4.0 dropped
(KIP-896), and Kafka's answers where older clients and their test suites expect them.

- sarama from Debian (1.22), configured for Kafka 0.10.2, 1.0 and 2.0 (OffsetCommit v1; for
  0.10.2 also Produce v2 and Fetch v3, the v1 message format): a consumer group reads, leaves,
  and a second member resumes where the first committed.
- kafka-python set to api_version (0, 9) and (0, 10), and librdkafka with
  api.version.request=false and broker.version.fallback=0.9.0, produce and read the v0 and v1
  message formats, gzip-compressed too; a modern client reads what they wrote, and they read
  what a modern transactional producer wrote (without its control records).
- Every old version of the group, topic, config and ACL APIs is sent with kafka-python's own
  protocol classes (its codec covers every version) and its answer decoded by them; what it
  says is checked: offsets committed with v0 and v1 are stored like the others, CreateTopics
  v0 creates, DescribeConfigs v0 says which values are defaults, and so on.
- kcat from Debian with api.version.request=false and broker.version.fallback=0.10.0 (the
  oldest versions of the group APIs, the v1 message format): produces, and a `-G` group
  member reads half, commits as it closes, and the next member reads the other half.
- A v0/v1 message set that cannot be read (a bad CRC) is answered CORRUPT_MESSAGE and stores
  nothing; one sent with Produce v3 or later is INVALID_RECORD, as Kafka 3.9 answers both.
- The group APIs answer unusual input as Kafka 3.9 does (an audit of its KafkaApis and group
  coordinators): LeaveGroup v3+ of a group that does not exist, SyncGroup v5 without a
  protocol type, FindCoordinator with an unknown key type, DeleteGroups naming a group twice
  or an Empty group with a member id handed out, OffsetCommit to the group id "", OffsetFetch
  naming a member of a classic group.
- OffsetCommit of a partition no topic has is answered UNKNOWN_TOPIC_OR_PARTITION and stores
  nothing (librdkafka's test 0030 expects this), while the rest of the request is committed.
- A version the broker does not serve closes the connection, and the log line names the client:
  its client id and the software ApiVersions v3 announced.
- `partita groups describe` of a group with no members and no offsets says it has no active
  members, as kafka-consumer-groups.sh does, instead of that it does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.protocol.admin import (CreateTopicsRequest, CreateTopicsResponse, DeleteGroupsRequest,
                                  DeleteGroupsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
                                  DescribeAclsRequest, DescribeAclsResponse,
                                  DescribeConfigsRequest, DescribeConfigsResponse,
                                  DescribeGroupsRequest)
from kafka.protocol.consumer.group import (JoinGroupRequest, JoinGroupResponse,
                                           LeaveGroupRequest, LeaveGroupResponse,
                                           OffsetCommitRequest, OffsetCommitResponse,
                                           OffsetDeleteRequest, OffsetDeleteResponse,
                                           OffsetFetchRequest, OffsetFetchResponse,
                                           SyncGroupRequest, SyncGroupResponse)
from kafka.protocol.consumer.offsets import (OffsetForLeaderEpochRequest,
                                             OffsetForLeaderEpochResponse)
from kafka.protocol.metadata import (ApiVersionsRequest, ApiVersionsResponse,
                                     FindCoordinatorRequest, FindCoordinatorResponse)
from kafka.protocol.producer import (ProduceRequest, ProduceResponse, TxnOffsetCommitRequest,
                                     TxnOffsetCommitResponse)
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from confluent_util import admin_client, create_topic
from partita_compat import broker_binary, unique_name, wait_until

HERE = Path(__file__).resolve().parent
GO = shutil.which("go")
SARAMA = Path("/usr/share/gocode/src/github.com/Shopify/sarama")
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUEST = 42
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
MEMBER_ID_REQUIRED = 79
INVALID_RECORD = 87
SECURITY_DISABLED = 54

# The oldest version of each API Kafka 3.9 serves (its ApiVersions answer), for the APIs this
# broker serves.
KAFKA_3_9_OLDEST = {
    "Produce": 0, "Fetch": 0,
    "ListOffsets": 0, "Metadata": 0, "OffsetCommit": 0, "OffsetFetch": 0, "FindCoordinator": 0,
    "JoinGroup": 0, "Heartbeat": 0, "LeaveGroup": 0, "SyncGroup": 0, "DescribeGroups": 0,
    "ListGroups": 0, "ApiVersions": 0, "CreateTopics": 0, "DeleteTopics": 0, "DeleteRecords": 0,
    "InitProducerId": 0, "OffsetForLeaderEpoch": 0, "AddPartitionsToTxn": 0,
    "AddOffsetsToTxn": 0, "EndTxn": 0, "WriteTxnMarkers": 0, "TxnOffsetCommit": 0,
    "DescribeAcls": 0, "CreateAcls": 0, "DeleteAcls": 0, "DescribeConfigs": 0,
    "AlterConfigs": 0, "CreatePartitions": 0, "DeleteGroups": 0, "IncrementalAlterConfigs": 0,
    "OffsetDelete": 0, "DescribeCluster": 0, "DescribeProducers": 0, "ListTransactions": 0,
    "DescribeTransactions": 0, "SaslHandshake": 0, "SaslAuthenticate": 0,
}


# ------------------------------------------------------------------------------------------------
# one request at a time, encoded and decoded by kafka-python's protocol classes


def build(cls, **fields):
    """A kafka-python request or nested struct from plain values: lists of dicts become lists
    of the nested struct the schema names."""
    values = {}
    for name, value in fields.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            nested = getattr(cls, cls.fields[name]._json["type"].lstrip("[]"))  # noqa: SLF001
            value = [build(nested, **v) for v in value]
        values[name] = value
    return cls(**values)


class Wire:
    """A connection speaking one request at a time."""

    def __init__(self, bootstrap: str, client_id: str = "old-clients-test"):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.client_id = client_id
        self.correlation = 0

    def send(self, request_class, response_class, version: int, **fields):
        request = build(request_class[version], **fields)
        self.correlation += 1
        request.with_header(correlation_id=self.correlation, client_id=self.client_id)
        self.sock.sendall(bytes(request.encode(header=True, framed=True)))
        return response_class.decode(self._frame(), version=version, header=True)

    def _frame(self) -> bytes:
        size = struct.unpack(">i", self._exactly(4))[0]
        return self._exactly(size)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            data += chunk
        return data

    def close(self):
        self.sock.close()


@pytest.fixture
def wire(broker):
    w = Wire(broker.bootstrap)
    yield w
    w.close()


def committed(bootstrap: str, group: str, partitions) -> dict:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {(tp.topic, tp.partition): tp.offset
                for tp in c.committed(partitions, timeout=30)}
    finally:
        c.close()


def produce(bootstrap: str, topic: str, values, partition=None):
    p = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        if partition is None:
            p.produce(topic, v.encode())
        else:
            p.produce(topic, v.encode(), partition=partition)
    assert p.flush(30) == 0


# ------------------------------------------------------------------------------------------------
# versions


def test_every_version_kafka_3_9_serves_is_advertised(wire):
    answer = wire.send(ApiVersionsRequest, ApiVersionsResponse, 0)
    served = {}
    from kafka.protocol.api_key import ApiKey
    for api in answer.api_keys:
        served[ApiKey(api.api_key).name] = (api.min_version, api.max_version)
    names = {k.replace("_", "").lower(): k for k in served}
    for api, oldest in KAFKA_3_9_OLDEST.items():
        key = names.get(api.lower())
        assert key is not None, f"{api} is not served"
        assert served[key][0] <= oldest, f"{api}: served from v{served[key][0]}, Kafka 3.9 v{oldest}"


def test_offsets_committed_with_v0_and_v1_are_stored_like_the_others(broker, wire):
    topic, group = unique_name("old-commit"), unique_name("old-commit-g")
    create_topic(admin_client(broker.bootstrap), topic, 2)
    produce(broker.bootstrap, topic, [f"r{i}" for i in range(10)], partition=0)
    produce(broker.bootstrap, topic, [f"r{i}" for i in range(10)], partition=1)

    v0 = wire.send(OffsetCommitRequest, OffsetCommitResponse, 0, group_id=group, topics=[
        {"name": topic, "partitions": [
            {"partition_index": 0, "committed_offset": 4, "committed_metadata": "zk-era"}]}])
    assert [p.error_code for t in v0.topics for p in t.partitions] == [0]
    v1 = wire.send(OffsetCommitRequest, OffsetCommitResponse, 1, group_id=group,
                   generation_id_or_member_epoch=-1, member_id="", topics=[
                       {"name": topic, "partitions": [
                           {"partition_index": 1, "committed_offset": 7,
                            "commit_timestamp": -1, "committed_metadata": "v1"}]}])
    assert [p.error_code for t in v1.topics for p in t.partitions] == [0]

    fetched = wire.send(OffsetFetchRequest, OffsetFetchResponse, 0, group_id=group,
                        topics=[{"name": topic, "partition_indexes": [0, 1]}])
    got = {(p.partition_index, p.committed_offset, p.metadata, p.error_code)
           for t in fetched.topics for p in t.partitions}
    assert got == {(0, 4, "zk-era", 0), (1, 7, "v1", 0)}
    # A modern client sees the same offsets.
    assert committed(broker.bootstrap, group,
                     [TopicPartition(topic, 0), TopicPartition(topic, 1)]) == {
        (topic, 0): 4, (topic, 1): 7}


def test_topics_are_created_described_and_deleted_with_the_oldest_versions(broker, wire):
    topic, overridden = unique_name("old-topic"), unique_name("old-topic-ret")
    created = wire.send(CreateTopicsRequest, CreateTopicsResponse, 0, timeout_ms=30000, topics=[
        {"name": topic, "num_partitions": 3, "replication_factor": 1,
         "assignments": [], "configs": []},
        {"name": overridden, "num_partitions": 1, "replication_factor": 1, "assignments": [],
         "configs": [{"name": "retention.ms", "value": "3600000"}]}])
    assert {(t.name, t.error_code) for t in created.topics} == {(topic, 0), (overridden, 0)}
    metadata = admin_client(broker.bootstrap).list_topics(timeout=30).topics
    assert len(metadata[topic].partitions) == 3

    # v1's validate_only creates nothing.
    dry = unique_name("old-topic-dry")
    validated = wire.send(CreateTopicsRequest, CreateTopicsResponse, 1, timeout_ms=30000,
                          validate_only=True, topics=[
                              {"name": dry, "num_partitions": 1, "replication_factor": 1,
                               "assignments": [], "configs": []}])
    assert [(t.name, t.error_code) for t in validated.topics] == [(dry, 0)]
    assert dry not in admin_client(broker.bootstrap).list_topics(timeout=30).topics

    described = wire.send(DescribeConfigsRequest, DescribeConfigsResponse, 0, resources=[
        {"resource_type": 2, "resource_name": topic, "configuration_keys": ["retention.ms"]},
        {"resource_type": 2, "resource_name": overridden,
         "configuration_keys": ["retention.ms"]}])
    seen = {(r.resource_name, c.name, c.value, c.is_default)
            for r in described.results for c in r.configs}
    assert seen == {(topic, "retention.ms", "604800000", True),
                    (overridden, "retention.ms", "3600000", False)}

    epochs = wire.send(OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, 0, topics=[
        {"topic": topic, "partitions": [{"partition": 0, "leader_epoch": 0}]}])
    assert [(p.error_code, p.end_offset) for t in epochs.topics for p in t.partitions] == [(0, 0)]

    deleted = wire.send(DeleteTopicsRequest, DeleteTopicsResponse, 0, timeout_ms=30000,
                        topic_names=[topic, overridden])
    assert {(r.name, r.error_code) for r in deleted.responses} == {(topic, 0), (overridden, 0)}
    wait_until(lambda: topic not in admin_client(broker.bootstrap).list_topics(timeout=30).topics,
               msg="topic deleted")


def test_acls_v0_is_answered_as_kafka_answers_without_an_authorizer(wire):
    answer = wire.send(DescribeAclsRequest, DescribeAclsResponse, 0, resource_type_filter=1,
                       resource_name_filter=None, principal_filter=None, host_filter=None,
                       operation=1, permission_type=1)
    assert answer.error_code == SECURITY_DISABLED


# ------------------------------------------------------------------------------------------------
# Kafka's answers


def test_offset_commit_for_an_unknown_topic_or_partition_is_refused_and_stores_nothing(
        broker, wire):
    topic, group = unique_name("commit-unknown"), unique_name("commit-unknown-g")
    missing = unique_name("no-such-topic")
    create_topic(admin_client(broker.bootstrap), topic, 2)
    answer = wire.send(OffsetCommitRequest, OffsetCommitResponse, 8, group_id=group,
                       generation_id_or_member_epoch=-1, member_id="", topics=[
                           {"name": topic, "partitions": [
                               {"partition_index": 0, "committed_offset": 0,
                                "committed_metadata": ""},
                               {"partition_index": 5, "committed_offset": 3,
                                "committed_metadata": ""}]},
                           {"name": missing, "partitions": [
                               {"partition_index": 0, "committed_offset": 9,
                                "committed_metadata": ""}]}])
    codes = {(t.name, p.partition_index): p.error_code
             for t in answer.topics for p in t.partitions}
    assert codes == {(topic, 0): 0, (topic, 5): UNKNOWN_TOPIC_OR_PARTITION,
                     (missing, 0): UNKNOWN_TOPIC_OR_PARTITION}
    stored = committed(broker.bootstrap, group, [TopicPartition(topic, 0),
                                                 TopicPartition(missing, 0)])
    assert stored[(topic, 0)] == 0
    assert stored[(missing, 0)] < 0, "an offset was stored for a topic that does not exist"
    # The topic created later starts with nothing committed.
    create_topic(admin_client(broker.bootstrap), missing, 1)
    assert committed(broker.bootstrap, group, [TopicPartition(missing, 0)])[(missing, 0)] < 0

    # TxnOffsetCommit alike: unknown partitions are answered before the transaction is looked
    # at (this producer has none, which the partition that exists is told).
    other = unique_name("no-such-topic")

    def partition(index):
        return {"partition_index": index, "committed_offset": 1, "committed_leader_epoch": -1,
                "committed_metadata": ""}
    answer = wire.send(TxnOffsetCommitRequest, TxnOffsetCommitResponse, 3,
                       transactional_id=unique_name("no-such-txn"), group_id=group,
                       producer_id=4242, producer_epoch=0, generation_id=-1, member_id="",
                       group_instance_id=None, topics=[
                           {"name": topic, "partitions": [partition(1), partition(9)]},
                           {"name": other, "partitions": [partition(0)]}])
    codes = {(t.name, p.partition_index): p.error_code
             for t in answer.topics for p in t.partitions}
    assert codes.keys() == {(topic, 1), (topic, 9), (other, 0)}, codes
    assert codes[(topic, 9)] == codes[(other, 0)] == UNKNOWN_TOPIC_OR_PARTITION, codes
    assert codes[(topic, 1)] not in (0, UNKNOWN_TOPIC_OR_PARTITION), codes

    # And OffsetDelete.
    answer = wire.send(OffsetDeleteRequest, OffsetDeleteResponse, 0, group_id=group, topics=[
        {"name": topic, "partitions": [{"partition_index": 0}, {"partition_index": 9}]},
        {"name": other, "partitions": [{"partition_index": 0}]}])
    assert answer.error_code == 0
    codes = {(t.name, p.partition_index): p.error_code
             for t in answer.topics for p in t.partitions}
    assert codes == {(topic, 0): 0, (topic, 9): UNKNOWN_TOPIC_OR_PARTITION,
                     (other, 0): UNKNOWN_TOPIC_OR_PARTITION}, codes
    assert committed(broker.bootstrap, group, [TopicPartition(topic, 0)])[(topic, 0)] < 0


def test_group_apis_answer_unusual_input_as_kafka_does(broker, wire):
    topic, group = unique_name("audit"), unique_name("audit-g")
    create_topic(admin_client(broker.bootstrap), topic, 1)
    missing = unique_name("no-such-group")

    # LeaveGroup: a batch (v3+) is answered member by member; v0-2 at the top.
    answer = wire.send(LeaveGroupRequest, LeaveGroupResponse, 3, group_id=missing,
                       members=[{"member_id": "m1", "group_instance_id": None}])
    assert answer.error_code == 0
    assert [(m.member_id, m.error_code) for m in answer.members] == [("m1", UNKNOWN_MEMBER_ID)]
    answer = wire.send(LeaveGroupRequest, LeaveGroupResponse, 1, group_id=missing,
                       member_id="m1")
    assert answer.error_code == UNKNOWN_MEMBER_ID

    # SyncGroup v5 must name the protocol type and name.
    answer = wire.send(SyncGroupRequest, SyncGroupResponse, 5, group_id=missing,
                       generation_id=1, member_id="m1", group_instance_id=None,
                       protocol_type=None, protocol_name="range", assignments=[])
    assert answer.error_code == INCONSISTENT_GROUP_PROTOCOL

    # FindCoordinator: key types 0 (group) and 1 (transaction) only; 2 (share) from v6.
    answer = wire.send(FindCoordinatorRequest, FindCoordinatorResponse, 3, key=group,
                       key_type=7)
    assert (answer.error_code, answer.node_id) == (INVALID_REQUEST, -1)
    for key_type in (7, 2):
        answer = wire.send(FindCoordinatorRequest, FindCoordinatorResponse, 4,
                           key_type=key_type, coordinator_keys=[group, missing])
        assert [(c.key, c.error_code) for c in answer.coordinators] == [
            (group, INVALID_REQUEST), (missing, INVALID_REQUEST)]
    answer = wire.send(FindCoordinatorRequest, FindCoordinatorResponse, 4, key_type=0,
                       coordinator_keys=[group])
    assert answer.coordinators[0].error_code == 0

    # OffsetCommit to the group id "" is a commit like any other.
    def commit(group_id):
        return wire.send(OffsetCommitRequest, OffsetCommitResponse, 8, group_id=group_id,
                         generation_id_or_member_epoch=-1, member_id="", topics=[
                             {"name": topic, "partitions": [
                                 {"partition_index": 0, "committed_offset": 4,
                                  "committed_metadata": ""}]}])
    assert commit("").topics[0].partitions[0].error_code == 0

    # OffsetFetch does not check the member of a classic group.
    assert commit(group).topics[0].partitions[0].error_code == 0
    answer = wire.send(OffsetFetchRequest, OffsetFetchResponse, 9, require_stable=False,
                       groups=[{"group_id": gid, "member_id": "not-a-member",
                                "member_epoch": 5,
                                "topics": [{"name": topic, "partition_indexes": [0]}]}
                               for gid in (group, "")])
    fetched = [(g.group_id, g.error_code, g.topics[0].partitions[0].committed_offset)
               for g in answer.groups]
    assert fetched == [(group, 0, 4), ("", 0, 4)]

    # DeleteGroups: a group named twice is answered once; an Empty group is deleted even
    # when a member id was handed out and not used yet.
    answer = wire.send(JoinGroupRequest, JoinGroupResponse, 4, group_id=group,
                       session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
                       protocol_type="consumer",
                       protocols=[{"name": "range", "metadata": b""}])
    assert answer.error_code == MEMBER_ID_REQUIRED
    answer = wire.send(DeleteGroupsRequest, DeleteGroupsResponse, 2,
                       groups_names=[group, group])
    assert [(r.group_id, r.error_code) for r in answer.results] == [(group, 0)]
    assert committed(broker.bootstrap, group, [TopicPartition(topic, 0)])[(topic, 0)] < 0


def test_a_version_not_served_closes_the_connection_and_the_log_names_the_client(broker):
    w = Wire(broker.bootstrap, client_id="billing-consumer")
    try:
        w.send(ApiVersionsRequest, ApiVersionsResponse, 3,
               client_software_name="legacy-kafka-lib", client_software_version="0.8.2")
        with pytest.raises((ConnectionError, OSError)):
            # DescribeGroups v6 is Kafka 4's; this broker serves up to v5.
            w.send(DescribeGroupsRequest, DescribeGroupsRequest, 6, groups=["g"],
                   include_authorized_operations=False)
    finally:
        w.close()

    def logged():
        for line in broker.log_path.read_text(errors="replace").splitlines():
            if "closing connection" in line and "DescribeGroups v6" in line:
                return line
    line = wait_until(logged, msg="the refusal in the broker's log")
    assert "client_id=billing-consumer" in line, line
    assert "legacy-kafka-lib 0.8.2" in line, line


def test_an_empty_group_without_offsets_is_described_as_having_no_active_members(broker):
    topic, group = unique_name("empty-group"), unique_name("empty-group-g")
    create_topic(admin_client(broker.bootstrap), topic, 1)
    produce(broker.bootstrap, topic, ["x"])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    wait_until(lambda: c.poll(0.5) is not None, msg="a record")
    c.close()

    def run(*args):
        return subprocess.run([str(broker_binary()), *args, "--bootstrap-server",
                               broker.bootstrap], capture_output=True, text=True, timeout=60)
    listed = run("groups", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    state = {g["group"]: g["state"] for g in json.loads(listed.stdout)}
    assert state.get(group) == "Empty", listed.stdout
    described = run("groups", "describe", "--group", group)
    assert described.returncode == 0, described.stderr
    assert f"Consumer group '{group}' has no active members." in described.stdout
    missing = run("groups", "describe", "--group", unique_name("never-seen"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


# ------------------------------------------------------------------------------------------------
# sarama


@pytest.fixture(scope="session")
def sarama_member(tmp_path_factory) -> Path:
    if GO is None or not SARAMA.is_dir():
        pytest.skip("go or sarama not installed (scripts/setup: apt-get install -y golang-go "
                    "golang-github-shopify-sarama-dev)")
    source = HERE / "sarama" / "main.go"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "partita" / "bin"
    binary = cache / f"sarama-member-{digest}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        build = tmp_path_factory.mktemp("sarama")
        shutil.copy(source, build / "main.go")
        env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
                   GOCACHE=str(Path.home() / ".cache" / "go-build"))
        subprocess.run([GO, "build", "-o", str(build / "sarama-member"), "main.go"],
                       cwd=build, env=env, check=True, capture_output=True, timeout=600)
        shutil.move(str(build / "sarama-member"), binary)
    return binary


def run_sarama(binary: Path, bootstrap: str, version: str, group: str, topic: str,
               records: int) -> list:
    proc = subprocess.run([str(binary), "-brokers", bootstrap, "-version", version,
                           "-group", group, "-topic", topic, "-records", str(records),
                           "-idle", "60s"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"sarama member failed:\n{proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("version", ["0.10.2.0", "1.0.0", "2.0.0"])
def test_a_sarama_group_commits_and_the_next_member_resumes_there(broker, sarama_member,
                                                                  version):
    topic, group = unique_name("sarama"), unique_name("sarama-g")
    create_topic(admin_client(broker.bootstrap), topic, 2)
    values = [f"v{i}" for i in range(40)]
    produce(broker.bootstrap, topic, values)

    first = run_sarama(sarama_member, broker.bootstrap, version, group, topic, 20)
    assert len(first) == 20
    stored = committed(broker.bootstrap, group, [TopicPartition(topic, 0),
                                                 TopicPartition(topic, 1)])
    read = {}
    for r in first:
        read[r["partition"]] = max(read.get(r["partition"], -1), r["offset"])
    for partition, last in read.items():
        assert stored[(topic, partition)] == last + 1, stored
    assert sum(max(o, 0) for o in stored.values()) == 20, stored

    second = run_sarama(sarama_member, broker.bootstrap, version, group, topic, 20)
    assert sorted(r["value"] for r in first + second) == sorted(values), \
        "the second member did not resume where the first committed"


# ------------------------------------------------------------------------------------------------
# the v0 and v1 message formats


def first(consumer, count: int, shape) -> list:
    """The first `count` records a kafka-python consumer reads (fewer if its
    consumer_timeout_ms passes without one), shaped."""
    got = []
    for m in consumer:
        got.append(shape(m))
        if len(got) == count:
            break
    return got


def read_librdkafka(bootstrap: str, topic: str, count: int, **conf) -> list:
    """The first `count` records of partition 0, as (offset, key, value), read by librdkafka
    (the newest versions it knows, unless `conf` says otherwise)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    try:
        def more():
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append((m.offset(), m.key(), m.value()))
            return len(got) >= count
        wait_until(more, msg=f"{count} records read")
    finally:
        c.close()
    return got


def test_an_unreadable_message_set_is_corrupt_and_stores_nothing(broker, wire):
    topic = unique_name("corrupt-set")
    create_topic(admin_client(broker.bootstrap), topic, 1)

    def message_set(value: bytes) -> bytes:
        builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
        builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=value)
        return bytes(builder.build())

    def produce_answer(version: int, records: bytes):
        fields = {"transactional_id": None} if version >= 3 else {}
        answer = wire.send(ProduceRequest, ProduceResponse, version, acks=-1, timeout_ms=30000,
                           topic_data=[{"name": topic, "partition_data": [
                               {"index": 0, "records": records}]}], **fields)
        partition = answer.responses[0].partition_responses[0]
        return partition.error_code, partition.base_offset

    bad = bytearray(message_set(b"lost"))
    bad[-1] ^= 0xFF  # the value's last byte: the CRC no longer matches
    assert produce_answer(2, bytes(bad))[0] == CORRUPT_MESSAGE
    # Produce v3 and later carry v2 batches only.
    assert produce_answer(3, message_set(b"lost"))[0] == INVALID_RECORD
    assert produce_answer(2, message_set(b"kept")) == (0, 0), "something was stored before"
    assert [v for _, _, v in read_librdkafka(broker.bootstrap, topic, 1)] == [b"kept"]


@pytest.mark.parametrize("api_version,compression", [
    ((0, 9), None), ((0, 9), "gzip"), ((0, 10), None), ((0, 10), "gzip"), ((1, 0), "gzip")])
def test_kafka_python_on_the_old_message_formats(broker, api_version, compression):
    from kafka import KafkaConsumer, KafkaProducer
    topic = unique_name("kp-old-format")
    create_topic(admin_client(broker.bootstrap), topic, 1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=api_version,
                      compression_type=compression, linger_ms=50)
    sent = [p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0) for i in range(20)]
    offsets = [f.get(timeout=30).offset for f in sent]
    p.close()
    assert offsets == list(range(20))

    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, api_version=api_version,
                      auto_offset_reset="earliest", consumer_timeout_ms=30000, group_id=None)
    got = first(c, 20, lambda m: (m.offset, m.key, m.value))
    c.close()
    expected = [(i, b"k%d" % i, b"v%d" % i) for i in range(20)]
    assert got == expected
    assert read_librdkafka(broker.bootstrap, topic, 20) == expected


@pytest.mark.parametrize("api_version", [(0, 10), (1, 0)])
def test_a_kafka_python_group_on_old_versions_commits_and_resumes(broker, api_version):
    from kafka import KafkaConsumer, KafkaProducer
    topic, group = unique_name("kp-old-group"), unique_name("kp-old-group-g")
    create_topic(admin_client(broker.bootstrap), topic, 2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=api_version)
    for i in range(20):
        p.send(topic, value=b"v%d" % i)
    p.flush(30)
    p.close()

    def member():
        return KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, api_version=api_version,
                             group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=30000)
    c = member()
    first_half = first(c, 10, lambda m: m.value)
    c.commit()
    c.close()
    c = member()
    second_half = first(c, 10, lambda m: m.value)
    c.close()
    # Each partition goes on from its committed offset: nothing read twice, nothing skipped.
    assert sorted(first_half + second_half) == sorted(b"v%d" % i for i in range(20))


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_librdkafka_without_api_versions_on_the_v0_format(broker, compression):
    topic = unique_name("rdk-fallback")
    create_topic(admin_client(broker.bootstrap), topic, 1)
    old = {"bootstrap.servers": broker.bootstrap, "api.version.request": False,
           "broker.version.fallback": "0.9.0"}
    p = Producer(dict(old, **{"compression.codec": compression, "linger.ms": 50}))
    for i in range(20):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0)
    assert p.flush(30) == 0
    got = read_librdkafka(broker.bootstrap, topic, 20, **old)
    expected = [(i, b"k%d" % i, b"v%d" % i) for i in range(20)]
    assert got == expected
    assert read_librdkafka(broker.bootstrap, topic, 20) == expected


KCAT = shutil.which("kcat") or shutil.which("kafkacat")


@pytest.mark.skipif(KCAT is None, reason="kcat not found (scripts/setup installs it)")
def test_kcat_on_the_oldest_versions_produces_and_a_group_resumes(broker):
    topic, group = unique_name("kcat-old"), unique_name("kcat-old-g")
    create_topic(admin_client(broker.bootstrap), topic, 1)
    old = ["-b", broker.bootstrap, "-X", "api.version.request=false",
           "-X", "broker.version.fallback=0.10.0"]

    def kcat(*args, stdin=None):
        proc = subprocess.run([KCAT, *old, *args], input=stdin, capture_output=True, text=True,
                              timeout=90)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    kcat("-P", "-t", topic, "-p", "0", "-K:", stdin="".join(f"k{i}:v{i}\n" for i in range(10)))
    halves = [kcat("-G", group, "-c", "5", "-q", "-f", "%o:%s\n",
                   "-X", "auto.offset.reset=earliest", topic).split() for _ in range(2)]
    assert halves == [[f"{i}:v{i}" for i in range(5)], [f"{i}:v{i}" for i in range(5, 10)]]
    assert committed(broker.bootstrap, group, [TopicPartition(topic, 0)])[(topic, 0)] == 10


def test_an_old_reader_gets_a_transactions_records_without_its_markers(broker):
    from kafka import KafkaConsumer
    topic = unique_name("old-reader-txn")
    create_topic(admin_client(broker.bootstrap), topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap,
                  "transactional.id": unique_name("old-reader-tx")})
    p.init_transactions(30)
    for batch in range(2):
        p.begin_transaction()
        for i in range(3):
            p.produce(topic, key=b"k", value=b"t%d-%d" % (batch, i), partition=0,
                      headers=[("h", b"x")])
        p.commit_transaction(30)
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, api_version=(0, 10),
                      auto_offset_reset="earliest", consumer_timeout_ms=30000, group_id=None)
    got = first(c, 6, lambda m: (m.offset, m.value))
    # Nothing else comes: the markers are not records.
    assert not c.poll(timeout_ms=1000), "more than the transactions' records"
    c.close()
    # Each transaction's commit marker takes an offset of its own, never handed out.
    assert got == [(0, b"t0-0"), (1, b"t0-1"), (2, b"t0-2"),
                   (4, b"t1-0"), (5, b"t1-1"), (6, b"t1-2")]
