"""SASL PLAIN on SASL_SSL and SASL_PLAINTEXT listeners, configured as Kafka configures them
(`sasl.enabled.mechanisms`, `listener.name.<listener>.plain.sasl.jaas.config`), with
confluent-kafka, kcat, kafka-python and the Java client."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from partita_compat import free_port, unique_name, wait_until
from test_java import compiled_java  # noqa: F401 - the fixture
from test_kcat import KCAT
from test_limits import read_response
from test_tls import _closed, _round_trip, pki, run_java_compat_test  # noqa: F401 - the fixture

PASSWORD = "alice-Secret-7x!"
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        f'username="admin" password="admin-pw" user_admin="admin-pw" user_alice="{PASSWORD}";')


class SaslBroker:
    """A broker with a PLAINTEXT listener (the harness's), a SASL_SSL and a SASL_PLAINTEXT
    one, both with PLAIN and the users admin and alice."""

    def __init__(self, start_broker, pki, **extra):
        self.pki = pki
        plain, ssl_port, sasl_port = free_port(), free_port(), free_port()
        self.plain = f"127.0.0.1:{plain}"
        self.sasl_ssl = f"127.0.0.1:{ssl_port}"
        self.sasl_plaintext = f"127.0.0.1:{sasl_port}"
        self.sasl_port = sasl_port
        listeners = (f"PLAINTEXT://{self.plain},SASL_SSL://{self.sasl_ssl},"
                     f"SASL_PLAINTEXT://{self.sasl_plaintext}")
        self.broker = start_broker({
            "listeners": listeners, "advertised.listeners": listeners,
            "ssl.keystore.location": str(pki / "server-keystore.pem"),
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
            **extra,
        }, port=plain)
        for port in (ssl_port, sasl_port):
            wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=2),
                       timeout=30, msg="the SASL listeners")

    def client(self, user="alice", password=PASSWORD, tls=True) -> dict:
        config = {"bootstrap.servers": self.sasl_ssl if tls else self.sasl_plaintext,
                  "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
                  "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": password}
        if tls:
            config["ssl.ca.location"] = str(self.pki / "ca.pem")
        return config


def test_confluent_kafka_with_sasl_plain_over_tls_and_plaintext(start_broker, pki):
    b = SaslBroker(start_broker, pki)
    for tls in (True, False):
        config = b.client(tls=tls)
        (only,) = AdminClient(config).list_topics(timeout=20).brokers.values()
        assert f"{only.host}:{only.port}" == (b.sasl_ssl if tls else b.sasl_plaintext)
        _round_trip(config, unique_name("sasl"))


def test_a_wrong_password_is_refused_and_never_logged(start_broker, pki):
    b = SaslBroker(start_broker, pki)
    good = AdminClient(b.client())
    good.list_topics(timeout=20)
    for user, password in (("alice", "not-" + PASSWORD), ("nobody", PASSWORD)):
        errors = []
        config = dict(b.client(user=user, password=password), error_cb=errors.append)
        admin = AdminClient(config)
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=8)
        admin.poll(1)  # serves the error callbacks
        # What the broker answered, as librdkafka reports it.
        assert any(e.code() == KafkaError._AUTHENTICATION and
                   "Invalid username or password" in e.str() for e in errors), errors
    wait_until(lambda: "SASL authentication failed" in b.broker.log_text(), timeout=20,
               msg="the failure logged")
    # Written by the broker itself, not by this harness's note of the command line.
    own_lines = [line for line in b.broker.log_text().splitlines()
                 if not line.startswith("===== start")]
    assert not [line for line in own_lines if PASSWORD in line or "admin-pw" in line]
    # The client that authenticated is unaffected.
    good.list_topics(timeout=20)


def test_nothing_is_answered_before_authentication(start_broker, pki):
    b = SaslBroker(start_broker, pki)
    # A Metadata v1 request for every topic, before any SASL exchange: the connection closes.
    metadata = bytes.fromhex("00000012" "0003" "0001" "00000007" "0004") + b"test" + \
        bytes.fromhex("ffffffff")
    with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
        s.sendall(metadata)
        s.settimeout(10)
        assert _closed(s), "a request before authentication was answered"
    assert b.broker.is_running()
    AdminClient(b.client(tls=False)).list_topics(timeout=20)


def kafka_python_round_trip(common: dict, topic: str, count: int = 100) -> None:
    """kafka-python produces `count` records with `common` settings and reads them back."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    producer = KafkaProducer(**common)
    for i in range(count):
        producer.send(topic, value=f"r{i}".encode(), partition=0)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(**common, enable_auto_commit=False, consumer_timeout_ms=10_000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got = []
    wait_until(lambda: got.extend(m.value.decode() for m in consumer) or len(got) >= count,
               timeout=60, msg=f"{count} records read back")
    consumer.close()
    assert got == [f"r{i}" for i in range(count)]


def kcat_round_trip(args: list, topic: str) -> None:
    """kcat (librdkafka 2.0) produces 20 lines with `args` and reads them back."""
    lines = [f"line {i}" for i in range(20)]
    proc = subprocess.run([KCAT, *args, "-P", "-t", topic], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([KCAT, *args, "-C", "-t", topic, "-e", "-o", "beginning", "-q"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted(lines)


def test_kafka_python_with_sasl_plaintext(start_broker, pki, topic_name):
    b = SaslBroker(start_broker, pki)
    common = {"bootstrap_servers": b.sasl_plaintext, "security_protocol": "SASL_PLAINTEXT",
              "sasl_mechanism": "PLAIN", "sasl_plain_username": "alice",
              "sasl_plain_password": PASSWORD}
    kafka_python_round_trip(common, topic_name)


@pytest.mark.skipif(KCAT is None, reason="kcat not installed")
def test_kcat_with_sasl_plain_over_tls(start_broker, pki, topic_name):
    b = SaslBroker(start_broker, pki)
    args = ["-b", b.sasl_ssl, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=PLAIN",
            "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORD}",
            "-X", f"ssl.ca.location={pki / 'ca.pem'}"]
    kcat_round_trip(args, topic_name)


@pytest.mark.timeout(300)
def test_java_client_with_sasl_plain_over_tls(start_broker, pki, topic_name,  # noqa: F811
                                              compiled_java, tmp_path):
    b = SaslBroker(start_broker, pki)
    run_java_compat_test(
        compiled_java, tmp_path, b.sasl_ssl, topic_name,
        "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="alice" password="{PASSWORD}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={pki / 'ca.pem'}\n")


@pytest.mark.parametrize("settings, expected", [
    ({}, "GSSAPI"),
    ({"sasl.enabled.mechanisms": "PLAIN"}, "listener.name.sasl_plaintext.plain.sasl.jaas.config"),
    ({"sasl.enabled.mechanisms": "OAUTHBEARER"}, "OAUTHBEARER"),
], ids=["default-gssapi", "no-jaas", "oauthbearer-without-jwks"])
def test_a_sasl_listener_that_cannot_serve_stops_the_start(start_broker, settings, expected):
    port = free_port()
    merged = {"listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
              "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}"}
    merged.update(settings)
    with pytest.raises(RuntimeError) as failed:
        start_broker(merged)
    assert expected in str(failed.value), str(failed.value)


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def test_sasl_handshake_v0_then_a_bare_token_as_old_clients_send(start_broker, pki):
    b = SaslBroker(start_broker, pki)
    client_id = b"\x00\x04test"
    # SaslHandshake v0 (api key 17), correlation id 1, mechanism "PLAIN".
    handshake = _frame(bytes.fromhex("0011" "0000" "00000001") + client_id + b"\x00\x05PLAIN")
    with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
        s.sendall(handshake)
        answer = read_response(s)
        assert answer[:4] == (1).to_bytes(4, "big") and answer[4:6] == b"\x00\x00", answer
        # The PLAIN token bare, and a bare empty token back.
        s.sendall(_frame(b"\x00alice\x00" + PASSWORD.encode()))
        assert read_response(s) == b""
        # Authenticated: a Metadata v1 request is answered.
        s.sendall(_frame(bytes.fromhex("0003" "0001" "00000002") + client_id +
                         bytes.fromhex("ffffffff")))
        assert read_response(s)[:4] == (2).to_bytes(4, "big")
    with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
        s.sendall(handshake)
        read_response(s)
        s.sendall(_frame(b"\x00alice\x00wrong-password"))
        s.settimeout(10)
        assert _closed(s), "a wrong bare token was answered"


def _plain_authenticate(s: socket.socket, user: str, password: str, correlation: int) -> tuple:
    """SaslHandshake v1 and SaslAuthenticate v1 with PLAIN by hand: (error code, session
    lifetime in ms)."""
    client_id = b"\x00\x04test"
    s.sendall(_frame(bytes.fromhex("0011" "0001") + correlation.to_bytes(4, "big") + client_id +
                     b"\x00\x05PLAIN"))
    answer = read_response(s)
    assert answer[4:6] == b"\x00\x00", answer
    token = b"\x00" + user.encode() + b"\x00" + password.encode()
    s.sendall(_frame(bytes.fromhex("0024" "0001") + (correlation + 1).to_bytes(4, "big") +
                     client_id + len(token).to_bytes(4, "big") + token))
    answer = read_response(s)
    error = int.from_bytes(answer[4:6], "big")
    if error:
        return error, None
    at = 6
    message_length = int.from_bytes(answer[at:at + 2], "big", signed=True)
    at += 2 + max(message_length, 0)
    at += 4 + int.from_bytes(answer[at:at + 4], "big")
    return error, int.from_bytes(answer[at:at + 8], "big")


def _metadata_answered(s: socket.socket, correlation: int) -> bool:
    s.sendall(_frame(bytes.fromhex("0003" "0001") + correlation.to_bytes(4, "big") +
                     b"\x00\x04test" + bytes.fromhex("ffffffff")))
    s.settimeout(10)
    try:
        return read_response(s)[:4] == correlation.to_bytes(4, "big")
    except (ConnectionError, OSError, AssertionError):
        return False


def test_re_authentication_keeps_a_connection_and_its_absence_ends_it(start_broker, pki):
    """KIP-368 with connections.max.reauth.ms: the lifetime is told in SaslAuthenticate; a
    client that re-authenticates in time (the same principal) keeps its connection, one that
    does not is closed at its next request, one that changes principal is refused."""
    b = SaslBroker(start_broker, pki, **{"connections.max.reauth.ms": 1500})
    with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
        assert _plain_authenticate(s, "alice", PASSWORD, 1) == (0, 1500)
        assert _metadata_answered(s, 3)
        time.sleep(1.0)
        assert _plain_authenticate(s, "alice", PASSWORD, 4) == (0, 1500)
        time.sleep(1.0)  # 2 s after the first authentication, 1 s after the second
        assert _metadata_answered(s, 6)
        time.sleep(1.7)
        assert not _metadata_answered(s, 7), "a request after the session ran out was answered"
    with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
        assert _plain_authenticate(s, "alice", PASSWORD, 1) == (0, 1500)
        error, _ = _plain_authenticate(s, "admin", "admin-pw", 3)
        assert error == 58 or _closed(s), "a principal changed on re-authentication"
    # Clients that re-authenticate by themselves keep producing through the expiries.
    expired_before = b.broker.log_text().count("expired without re-authentication")
    config = dict(b.client(tls=False), **{"enable.idempotence": True})
    from confluent_kafka import Producer
    producer = Producer(config)
    topic = unique_name("reauth")
    deadline = time.monotonic() + 5
    sent = 0
    while time.monotonic() < deadline:
        producer.produce(topic, value=f"v{sent}".encode())
        producer.poll(0.05)
        sent += 1
    assert producer.flush(30) == 0
    assert b.broker.log_text().count("expired without re-authentication") == expired_before, \
        "librdkafka's connection ran out instead of re-authenticating"
