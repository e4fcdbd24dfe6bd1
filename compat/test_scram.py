"""SASL SCRAM-SHA-256 and SCRAM-SHA-512: the first user added before the first start with
`partita storage format --add-scram` (as `kafka-storage format --add-scram`), more managed
through AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554, what
`kafka-configs.sh --entity-type users` and the admin clients send), and clients
authenticating with them: confluent-kafka, kcat, kafka-python and the Java client; in cluster
mode a user added through one broker authenticates through another."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from partita_compat import broker_binary, free_port, unique_name, wait_until
from test_java import compiled_java  # noqa: F401 - the fixture
from test_kcat import KCAT
from test_sasl import kafka_python_round_trip, kcat_round_trip
from test_tls import _round_trip, pki, run_java_compat_test  # noqa: F401 - the fixture

ADMIN_PASSWORD = "admin-Scram-9q!"
ALICE_PASSWORD = "alice-Scram-3k?"


def format_storage(settings: dict, *users: str) -> subprocess.CompletedProcess:
    """`partita storage format` with the broker's settings and `--add-scram` for each user."""
    cmd = [str(broker_binary()), "storage", "format"]
    for name, value in settings.items():
        cmd += ["--set", f"{name}={value}"]
    for user in users:
        cmd += ["--add-scram", user]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


class ScramBroker:
    """A broker with a PLAINTEXT listener (the harness's), a SASL_SSL and a SASL_PLAINTEXT one,
    both with SCRAM-SHA-256 and SCRAM-SHA-512; `admin` (SHA-512) and `alice` (SHA-256) added
    before its first start."""

    def __init__(self, start_broker, pki, tmp_path):
        self.pki = pki
        plain, ssl_port, sasl_port = free_port(), free_port(), free_port()
        self.plain = f"127.0.0.1:{plain}"
        self.sasl_ssl = f"127.0.0.1:{ssl_port}"
        self.sasl_plaintext = f"127.0.0.1:{sasl_port}"
        self.data_dir = tmp_path / "data0"  # the first broker's, as start_broker names it
        formatted = format_storage(
            {"log.dirs": self.data_dir},
            f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]",
            f'SCRAM-SHA-256=[name=alice,iterations=8192,password="{ALICE_PASSWORD}"]')
        assert formatted.returncode == 0, formatted.stderr
        assert ADMIN_PASSWORD not in formatted.stdout + formatted.stderr
        listeners = (f"PLAINTEXT://{self.plain},SASL_SSL://{self.sasl_ssl},"
                     f"SASL_PLAINTEXT://{self.sasl_plaintext}")
        self.broker = start_broker({
            "listeners": listeners, "advertised.listeners": listeners,
            "ssl.keystore.location": str(pki / "server-keystore.pem"),
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        }, port=plain)
        for port in (ssl_port, sasl_port):
            wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=2),
                       timeout=30, msg="the SASL listeners")

    def client(self, user="admin", password=ADMIN_PASSWORD, mechanism="SCRAM-SHA-512",
               tls=True) -> dict:
        config = {"bootstrap.servers": self.sasl_ssl if tls else self.sasl_plaintext,
                  "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
                  "sasl.mechanism": mechanism, "sasl.username": user,
                  "sasl.password": password}
        if tls:
            config["ssl.ca.location"] = str(self.pki / "ca.pem")
        return config


def authenticates(config: dict) -> bool:
    """Whether a client with `config` gets Metadata; an authentication failure is False."""
    errors = []
    admin = AdminClient(dict(config, error_cb=errors.append))
    try:
        admin.list_topics(timeout=8)
        return True
    except KafkaException:
        admin.poll(1)  # serves the error callbacks
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
        return False


def described(admin: AdminClient) -> dict:
    """Every user's mechanisms and iterations, as DescribeUserScramCredentials lists them."""
    every = admin.describe_user_scram_credentials().result(20)
    return {user: sorted((str(i.mechanism), i.iterations) for i in d.scram_credential_infos)
            for user, d in every.items()}


def test_users_added_before_the_first_start_authenticate_with_both_mechanisms(
        start_broker, pki, tmp_path):
    b = ScramBroker(start_broker, pki, tmp_path)
    _round_trip(b.client(), unique_name("scram512"))
    _round_trip(b.client("alice", ALICE_PASSWORD, "SCRAM-SHA-256", tls=False),
                unique_name("scram256"))
    # A mechanism the user has no credential for is refused like a wrong password.
    assert not authenticates(b.client("alice", ALICE_PASSWORD, "SCRAM-SHA-512"))
    stored = (b.data_dir / "scram-credentials.json").read_text()
    assert ALICE_PASSWORD not in stored and ADMIN_PASSWORD not in stored
    assert {e["user"] for e in json.loads(stored)} == {"admin", "alice"}


def test_credentials_managed_through_the_admin_api_take_effect_and_survive_a_restart(
        start_broker, pki, tmp_path):
    b = ScramBroker(start_broker, pki, tmp_path)
    admin = AdminClient(b.client())
    assert described(admin) == {"admin": [("ScramMechanism.SCRAM_SHA_512", 4096)],
                                "alice": [("ScramMechanism.SCRAM_SHA_256", 8192)]}
    bob = "bob-Pw-1"
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(
                "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), bob.encode()),
    ]).values():
        f.result(20)
    assert authenticates(b.client("bob", bob, "SCRAM-SHA-256"))
    assert not authenticates(b.client("bob", "not-" + bob, "SCRAM-SHA-256"))

    # Kafka's answers to changes that cannot be made, each for its own user.
    refused = admin.alter_user_scram_credentials([
        UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512),
        UserScramCredentialUpsertion(
            "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 100), b"pw"),
    ])
    for user, code in (("carol", KafkaError.RESOURCE_NOT_FOUND),
                       ("dave", KafkaError.UNACCEPTABLE_CREDENTIAL)):
        with pytest.raises(KafkaException) as failed:
            refused[user].result(20)
        assert failed.value.args[0].code() == code, failed.value
    missing = admin.describe_user_scram_credentials(["carol"])["carol"]
    with pytest.raises(KafkaException) as failed:
        missing.result(20)
    assert failed.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND

    b.broker.restart()
    assert authenticates(b.client("bob", bob, "SCRAM-SHA-256")), "bob lost with the restart"
    admin = AdminClient(b.client())
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)]).values():
        f.result(20)
    assert not authenticates(b.client("bob", bob, "SCRAM-SHA-256"))
    assert "bob" not in described(admin)
    own_lines = [line for line in b.broker.log_text().splitlines()
                 if not line.startswith("===== start")]
    assert not [line for line in own_lines if bob in line or ADMIN_PASSWORD in line]


def test_kafka_python_with_scram_sha_256(start_broker, pki, tmp_path, topic_name):
    b = ScramBroker(start_broker, pki, tmp_path)
    kafka_python_round_trip(
        {"bootstrap_servers": b.sasl_plaintext, "security_protocol": "SASL_PLAINTEXT",
         "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "alice",
         "sasl_plain_password": ALICE_PASSWORD}, topic_name, count=50)


@pytest.mark.skipif(KCAT is None, reason="kcat not installed")
def test_kcat_with_scram_sha_512_over_tls(start_broker, pki, tmp_path, topic_name):
    b = ScramBroker(start_broker, pki, tmp_path)
    args = ["-b", b.sasl_ssl, "-X", "security.protocol=SASL_SSL",
            "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=admin",
            "-X", f"sasl.password={ADMIN_PASSWORD}", "-X", f"ssl.ca.location={pki / 'ca.pem'}"]
    kcat_round_trip(args, topic_name)


@pytest.mark.timeout(300)
def test_java_client_with_scram_sha_512_over_tls(start_broker, pki, tmp_path,  # noqa: F811
                                                 topic_name, compiled_java):
    b = ScramBroker(start_broker, pki, tmp_path)
    run_java_compat_test(
        compiled_java, tmp_path, b.sasl_ssl, topic_name,
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="admin" password="{ADMIN_PASSWORD}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={pki / 'ca.pem'}\n")


def test_bad_add_scram_arguments_are_refused_without_echoing_the_password(tmp_path):
    for bad in ("SCRAM-SHA-1=[name=a,password=Secret-1]",
                "SCRAM-SHA-256=[name=a,password=Secret-1,iterations=12]"):
        proc = format_storage({"log.dirs": tmp_path / "data"}, bad)
        assert proc.returncode != 0 and "--add-scram" in proc.stderr, proc.stderr
        assert "Secret-1" not in proc.stderr
    assert not (tmp_path / "data" / "scram-credentials.json").exists()


@pytest.mark.timeout(300)
def test_in_a_cluster_a_user_added_through_one_broker_authenticates_through_another(
        cluster, pki):
    formatted = format_storage(cluster.settings(1),
                               f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]")
    assert formatted.returncode == 0, formatted.stderr
    brokers = []
    for node in (1, 2):
        plain, port = free_port(), free_port()
        listeners = f"PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{port}"
        brokers.append(cluster.start_broker(node, {
            "listeners": listeners, "advertised.listeners": listeners,
            "ssl.keystore.location": str(pki / "server-keystore.pem"),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512"}, port=plain))
        brokers[-1].sasl_ssl = f"127.0.0.1:{port}"

    def client(broker, user, password):
        return {"bootstrap.servers": broker.sasl_ssl, "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                "sasl.password": password, "ssl.ca.location": str(pki / "ca.pem")}

    for broker in brokers:
        wait_until(lambda: authenticates(client(broker, "admin", ADMIN_PASSWORD)), timeout=60,
                   msg="the user formatted into PostgreSQL authenticating")
    admin = AdminClient(client(brokers[0], "admin", ADMIN_PASSWORD))
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(
                "erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                b"erin-Pw-2")]).values():
        f.result(20)
    assert authenticates(client(brokers[1], "erin", "erin-Pw-2"))
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialDeletion("erin", ScramMechanism.SCRAM_SHA_512)]).values():
        f.result(20)
    assert not authenticates(client(brokers[1], "erin", "erin-Pw-2"))


def partita(*args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(broker_binary()), *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_the_operator_cli_manages_users_over_sasl_ssl_with_scram(start_broker, pki, tmp_path):
    b = ScramBroker(start_broker, pki, tmp_path)
    properties = tmp_path / "admin.properties"
    properties.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
        f'    username="admin" password="{ADMIN_PASSWORD}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={pki / 'ca.pem'}\n")
    common = ["--bootstrap-server", b.sasl_ssl, "--command-config", str(properties)]
    dave = "dave-Pw-4"
    done = partita("users", "set-password", *common, "--user", "dave",
                   "--mechanism", "SCRAM-SHA-256", stdin=dave + "\n")
    assert done.returncode == 0, done.stderr
    assert authenticates(b.client("dave", dave, "SCRAM-SHA-256"))
    listed = partita("users", "list", *common, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert {"user": "dave", "mechanism": "SCRAM-SHA-256", "iterations": 8192} in \
        json.loads(listed.stdout)
    done = partita("users", "delete", *common, "--user", "dave", "--mechanism", "SCRAM-SHA-256")
    assert done.returncode == 0, done.stderr
    assert not authenticates(b.client("dave", dave, "SCRAM-SHA-256"))
    # A wrong password in the properties: one line, no secret in it.
    properties.write_text(properties.read_text().replace(ADMIN_PASSWORD, "wrong-Pw-0"))
    refused = partita("topics", "list", *common)
    assert refused.returncode == 1 and "authentication" in refused.stderr, refused.stderr
    assert "wrong-Pw-0" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
