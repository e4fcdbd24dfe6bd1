"""ACLs with Kafka's semantics (`authorizer.class.name=org.apache.kafka.metadata.authorizer.
StandardAuthorizer`, `super.users`): created, listed and deleted with the admin API
(CreateAcls, DescribeAcls, DeleteAcls, what kafka-acls.sh sends), checked by every API as
Kafka checks it, kept across a restart and, in cluster mode, shared by every broker."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic, ResourcePatternType,
                                   ResourceType)

from partita_compat import free_port, unique_name, wait_until
from test_tls import TlsBroker, _signed, pki  # noqa: F401 - the fixture

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
USERS = {"admin": "admin-pw-1", "alice": "alice-pw-2", "bob": "bob-pw-3"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required " +
        " ".join(f'user_{u}="{p}"' for u, p in USERS.items()) + ";")


def acl_settings(port: int, plain: int) -> dict:
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{port}"
    return {"listeners": listeners, "advertised.listeners": listeners,
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
            "authorizer.class.name": AUTHORIZER, "super.users": "User:admin"}


class AclBroker:
    """A broker with ACLs on, a SASL_PLAINTEXT listener for the users admin (a super user),
    alice and bob, and the harness's PLAINTEXT one (anonymous)."""

    def __init__(self, start_broker):
        plain, self.port = free_port(), free_port()
        self.broker = start_broker(acl_settings(self.port, plain), port=plain)
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=2),
                   timeout=30, msg="the SASL listener")

    def config(self, user: str, **extra) -> dict:
        return dict({"bootstrap.servers": f"127.0.0.1:{self.port}",
                     "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                     "sasl.username": user, "sasl.password": USERS[user]}, **extra)

    def admin(self, user: str = "admin") -> AdminClient:
        return AdminClient(self.config(user))


def allow(resource_type, name, principal, operation,
          pattern=ResourcePatternType.LITERAL, permission=AclPermissionType.ALLOW):
    return AclBinding(resource_type, name, pattern, principal, "*", operation, permission)


def create(admin: AdminClient, *bindings) -> None:
    for f in admin.create_acls(list(bindings)).values():
        f.result(20)


def every_acl() -> AclBindingFilter:
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                            AclOperation.ANY, AclPermissionType.ANY)


def produced(config: dict, topic: str, count: int = 10) -> None:
    producer = Producer(config)
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
    assert producer.flush(30) == 0


def make_topic(admin: AdminClient, topic: str) -> None:
    for f in admin.create_topics([NewTopic(topic, num_partitions=1,
                                           replication_factor=1)]).values():
        f.result(30)


def consume_error(config: dict, topic: str, group: str, timeout: float = 30) -> KafkaError:
    """The first error a consumer of `group` meets, or a failure if it reads a record."""
    consumer = Consumer(dict(config, **{"group.id": group, "auto.offset.reset": "earliest",
                                        "enable.auto.commit": False}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is None:
                continue
            assert msg.error() is not None, f"read {msg.value()!r} without the right"
            return msg.error()
        raise AssertionError("no error within the deadline")
    finally:
        consumer.close()


def test_acls_are_created_listed_deleted_and_kept_across_a_restart(start_broker):
    b = AclBroker(start_broker)
    admin = b.admin()
    bindings = [
        allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.READ),
        allow(ResourceType.TOPIC, "pay", "User:bob", AclOperation.WRITE,
              pattern=ResourcePatternType.PREFIXED),
        allow(ResourceType.GROUP, "*", "User:alice", AclOperation.READ),
    ]
    create(admin, *bindings)
    assert sorted(map(str, admin.describe_acls(every_acl()).result(20))) == \
        sorted(map(str, bindings))
    # MATCH: the ACLs that apply to one resource, literal, wildcard and prefix alike.
    matching = AclBindingFilter(ResourceType.TOPIC, "payments", ResourcePatternType.MATCH, None,
                                None, AclOperation.ANY, AclPermissionType.ANY)
    assert [a.name for a in admin.describe_acls(matching).result(20)] == ["pay"]

    # Only a principal with ALTER on the cluster may change them.
    with pytest.raises(KafkaException) as refused:
        create(b.admin("alice"), allow(ResourceType.TOPIC, "x", "User:alice", AclOperation.ALL))
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

    b.broker.restart()
    admin = b.admin()
    assert len(admin.describe_acls(every_acl()).result(20)) == 3, "ACLs lost with the restart"
    only_bob = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob",
                                None, AclOperation.ANY, AclPermissionType.ANY)
    (deleted,) = admin.delete_acls([only_bob]).values()
    assert [a.principal for a in deleted.result(20)] == ["User:bob"]
    assert {a.principal for a in admin.describe_acls(every_acl()).result(20)} == {"User:alice"}


def test_a_member_without_read_on_its_group_is_refused_and_no_offset_moves(start_broker):
    b = AclBroker(start_broker)
    admin = b.admin()
    topic, group = unique_name("acl-orders"), unique_name("acl-group")
    make_topic(admin, topic)
    produced(b.config("admin"), topic)
    create(admin, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ))
    error = consume_error(b.config("alice"), topic, group)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    committed = admin.list_consumer_group_offsets(
        [_request(group, topic)])[group].result(20).topic_partitions
    assert [tp.offset for tp in committed] == [-1001], "an offset moved"

    # With READ on the group, the same member reads and commits.
    create(admin, allow(ResourceType.GROUP, group, "User:alice", AclOperation.READ))
    consumer = Consumer(dict(b.config("alice"), **{"group.id": group,
                                                   "auto.offset.reset": "earliest",
                                                   "enable.auto.commit": False}))
    consumer.subscribe([topic])
    got = []
    wait_until(lambda: _read_into(consumer, got) >= 10, timeout=60, msg="10 records read")
    consumer.commit(asynchronous=False)
    consumer.close()
    committed = admin.list_consumer_group_offsets(
        [_request(group, topic)])[group].result(20).topic_partitions
    assert [tp.offset for tp in committed] == [10]


def _request(group: str, topic: str):
    from confluent_kafka import ConsumerGroupTopicPartitions
    return ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])


def _read_into(consumer, got: list) -> int:
    msg = consumer.poll(1)
    if msg is not None:
        assert msg.error() is None, msg.error()
        got.append(msg.value())
    return len(got)


def test_read_on_one_group_reaches_no_other_group_s_offsets(start_broker):
    b = AclBroker(start_broker)
    admin = b.admin()
    topic = unique_name("acl-shared")
    mine, theirs = unique_name("alice-g"), unique_name("bob-g")
    make_topic(admin, topic)
    create(admin,
           allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ),
           allow(ResourceType.GROUP, "alice-", "User:alice", AclOperation.ALL,
                 pattern=ResourcePatternType.PREFIXED))
    from confluent_kafka import ConsumerGroupTopicPartitions
    for group in (mine, theirs):
        admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, 0, 0)])])[group].result(20)
    alice = b.admin("alice")
    # Alice's own group: she may reset it.
    alice.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        mine, [TopicPartition(topic, 0, 0)])])[mine].result(20)
    # Bob's: neither reset nor deleted.
    with pytest.raises(KafkaException) as refused:
        alice.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            theirs, [TopicPartition(topic, 0, 0)])])[theirs].result(20)
    assert refused.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as refused:
        alice.delete_consumer_groups([theirs])[theirs].result(20)
    assert refused.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    listed = {g.group_id for g in alice.list_consumer_groups().result(20).valid}
    assert mine in listed and theirs not in listed
    committed = admin.list_consumer_group_offsets(
        [_request(theirs, topic)])[theirs].result(20).topic_partitions
    assert [tp.offset for tp in committed] == [0]


def test_topics_the_principal_may_not_describe_are_hidden_and_writes_refused(start_broker):
    b = AclBroker(start_broker)
    admin = b.admin()
    visible, hidden = unique_name("acl-visible"), unique_name("acl-hidden")
    for topic in (visible, hidden):
        make_topic(admin, topic)
    create(admin,
           allow(ResourceType.TOPIC, "acl-", "User:bob", AclOperation.WRITE,
                 pattern=ResourcePatternType.PREFIXED),
           allow(ResourceType.TOPIC, hidden, "User:bob", AclOperation.ALL,
                 permission=AclPermissionType.DENY))
    topics = b.admin("bob").list_topics(timeout=20).topics
    assert visible in topics and hidden not in topics
    produced(b.config("bob"), visible)
    errors = []
    producer = Producer(b.config("bob"))
    producer.produce(hidden, value=b"no", partition=0,
                     on_delivery=lambda err, _m: errors.append(err))
    producer.flush(30)
    assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
    # Nothing was written: the admin (a super user) reads an empty topic.
    low, high = Consumer(b.config("admin", **{"group.id": unique_name("g")})) \
        .get_watermark_offsets(TopicPartition(hidden, 0), timeout=20)
    assert (low, high) == (0, 0)
    # An anonymous client (the PLAINTEXT listener) sees no topic at all.
    anonymous = AdminClient({"bootstrap.servers": b.broker.bootstrap})
    assert not [t for t in anonymous.list_topics(timeout=20).topics if t.startswith("acl-")]


def test_without_an_authorizer_the_acl_apis_say_security_is_disabled(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as refused:
        create(admin, allow(ResourceType.TOPIC, "t", "User:alice", AclOperation.READ))
    assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED


@pytest.mark.timeout(300)
def test_in_a_cluster_an_acl_created_through_one_broker_applies_on_another(cluster):
    ports = []
    for node in (1, 2):
        plain, port = free_port(), free_port()
        cluster.start_broker(node, acl_settings(port, plain), port=plain)
        ports.append(port)

    def config(port, user):
        return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": USERS[user]}
    admin = AdminClient(config(ports[0], "admin"))
    topic = unique_name("acl-cluster")
    make_topic(admin, topic)
    alice_on_2 = AdminClient(config(ports[1], "alice"))
    assert topic not in alice_on_2.list_topics(timeout=20).topics
    create(admin, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE))
    wait_until(lambda: topic in AdminClient(config(ports[1], "alice"))
               .list_topics(timeout=20).topics, timeout=30,
               msg="the ACL in force on the other broker")


def test_authorized_operations_in_describe_answers_follow_the_acls(start_broker):
    """KIP-430: what Describe answers say the principal may do comes from its ACLs. (The
    cluster resource is BROKER, 4, in librdkafka's names.)"""
    from confluent_kafka import TopicCollection
    b = AclBroker(start_broker)
    admin = b.admin()
    topic, group = unique_name("acl-ops"), unique_name("acl-ops-g")
    make_topic(admin, topic)
    create(admin,
           allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ),
           allow(ResourceType.GROUP, group, "User:alice", AclOperation.READ),
           allow(ResourceType.BROKER, "kafka-cluster", "User:alice", AclOperation.DESCRIBE))
    alice = b.admin("alice")
    (described,) = alice.describe_topics(TopicCollection([topic]),
                                         include_authorized_operations=True).values()
    assert set(described.result(20).authorized_operations) == \
        {AclOperation.READ, AclOperation.DESCRIBE}
    (group_described,) = alice.describe_consumer_groups(
        [group], include_authorized_operations=True).values()
    assert set(group_described.result(20).authorized_operations) == \
        {AclOperation.READ, AclOperation.DESCRIBE}
    cluster = alice.describe_cluster(include_authorized_operations=True).result(20)
    assert set(cluster.authorized_operations) == {AclOperation.DESCRIBE}
    # A super user may do everything the cluster supports.
    everything = admin.describe_cluster(include_authorized_operations=True).result(20)
    assert AclOperation.ALTER in everything.authorized_operations


def test_a_client_certificate_s_subject_is_its_principal(start_broker, pki):
    """With `ssl.client.auth`, a TLS client is `User:` and its certificate's subject, most
    specific attribute first, as Kafka's default principal builder names it."""
    _signed(pki, "ca", "carol", "/O=Partita/OU=eng/CN=carol", "extendedKeyUsage=clientAuth")
    # Here the anonymous PLAINTEXT listener of the harness administers.
    b = TlsBroker(start_broker, pki, **{
        "ssl.client.auth": "required", "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki / "ca.pem"),
        "authorizer.class.name": AUTHORIZER, "super.users": "User:ANONYMOUS"})
    admin = AdminClient({"bootstrap.servers": b.plain})
    topic = unique_name("acl-mtls")
    make_topic(admin, topic)
    create(admin, allow(ResourceType.TOPIC, topic, "User:CN=carol,OU=eng,O=Partita",
                        AclOperation.DESCRIBE))

    def sees(name: str) -> bool:
        config = b.client(**{"ssl.certificate.location": str(pki / f"{name}.pem"),
                             "ssl.key.location": str(pki / f"{name}.key")})
        return topic in AdminClient(config).list_topics(timeout=20).topics
    assert sees("carol")
    assert not sees("alice")


def test_ssl_principal_mapping_rules_name_the_certificate_principal(start_broker, pki):
    """`ssl.principal.mapping.rules` rewrite a certificate's subject as Kafka's do; a
    certificate that no rule names is turned away."""
    _signed(pki, "ca", "carol", "/O=Partita/OU=eng/CN=carol", "extendedKeyUsage=clientAuth")
    b = TlsBroker(start_broker, pki, **{
        "ssl.client.auth": "required", "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki / "ca.pem"),
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]*),OU=eng,O=Partita$/$1/U",
        "authorizer.class.name": AUTHORIZER, "super.users": "User:ANONYMOUS"})
    admin = AdminClient({"bootstrap.servers": b.plain})
    topic = unique_name("acl-mapped")
    make_topic(admin, topic)
    create(admin, allow(ResourceType.TOPIC, topic, "User:CAROL", AclOperation.DESCRIBE))

    def client(name: str) -> AdminClient:
        return AdminClient(b.client(**{"ssl.certificate.location": str(pki / f"{name}.pem"),
                                       "ssl.key.location": str(pki / f"{name}.key")}))
    assert topic in client("carol").list_topics(timeout=20).topics
    with pytest.raises(KafkaException):
        client("alice").list_topics(timeout=8)
    assert "no rule of ssl.principal.mapping.rules applies" in b.broker.log_text()
    assert topic in client("carol").list_topics(timeout=20).topics


def test_the_operator_cli_adds_lists_and_removes_acls(start_broker, tmp_path):
    import json
    import subprocess
    from partita_compat import broker_binary
    b = AclBroker(start_broker)
    properties = tmp_path / "admin.properties"
    properties.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                          "sasl.username=admin\n" f"sasl.password={USERS['admin']}\n")
    common = ["--bootstrap-server", f"127.0.0.1:{b.port}", "--command-config", str(properties)]

    def partita(*args):
        done = subprocess.run([str(broker_binary()), "acls", *args, *common], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    topic = unique_name("acl-cli")
    make_topic(b.admin(), topic)
    partita("add", "--topic", topic, "--allow-principal", "User:alice", "--operation", "Read",
            "--operation", "Describe")
    partita("add", "--group", "cli-", "--resource-pattern-type", "prefixed",
            "--deny-principal", "User:bob", "--operation", "All")
    listed = json.loads(partita("list", "--output", "json"))
    assert sorted((a["resource_type"], a["operation"], a["permission"]) for a in listed) == [
        ("GROUP", "ALL", "DENY"), ("TOPIC", "DESCRIBE", "ALLOW"), ("TOPIC", "READ", "ALLOW")]
    assert topic in b.admin("alice").list_topics(timeout=20).topics
    removed = json.loads(partita("remove", "--topic", topic, "--output", "json"))
    assert len(removed) == 2
    assert topic not in b.admin("alice").list_topics(timeout=20).topics
    assert [a["resource_type"] for a in json.loads(partita("list", "--output", "json"))] == \
        ["GROUP"]
