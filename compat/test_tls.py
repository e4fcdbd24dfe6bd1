"""TLS listeners, configured as Kafka configures them (`listeners`, `advertised.listeners`,
`listener.security.protocol.map`, PEM keystores of KIP-651, `ssl.client.auth`), with a CA and
certificates made here by openssl, and real clients: confluent-kafka, kcat and the Java client.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from partita_compat import free_port, unique_name, wait_until
from test_java import _classpath, compiled_java  # noqa: F401 - the fixture
from test_kcat import KCAT


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", cwd=directory)


def _signed(directory: Path, ca: str, name: str, subject: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=directory)


@pytest.fixture
def pki(tmp_path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate (CN=alice)
    from the same CA, and one from a CA nobody trusts; `server-keystore.pem` holds the
    server's key and certificate as `ssl.keystore.location` takes them."""
    d = tmp_path / "pki"
    d.mkdir()
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _signed(d, "ca", "server", "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _signed(d, "ca", "alice", "/CN=alice", "extendedKeyUsage=clientAuth")
    _signed(d, "rogue-ca", "mallory", "/CN=mallory", "extendedKeyUsage=clientAuth")
    (d / "server-keystore.pem").write_text(
        (d / "server.key").read_text() + (d / "server.pem").read_text())
    return d


class TlsBroker:
    """A broker with a PLAINTEXT listener (the harness's) and an SSL one; in cluster mode
    with `node_id`."""

    def __init__(self, start_broker, pki: Path, node_id: Optional[int] = None, **settings):
        self.tls_port = free_port()
        self.pki = pki
        plain_port = free_port()
        self.plain = f"127.0.0.1:{plain_port}"
        self.tls = f"127.0.0.1:{self.tls_port}"
        listeners = f"PLAINTEXT://{self.plain},SSL://{self.tls}"
        merged = {"listeners": listeners, "advertised.listeners": listeners,
                  "ssl.keystore.type": "PEM",
                  "ssl.keystore.location": str(pki / "server-keystore.pem")}
        merged.update(settings)
        if node_id is None:
            self.broker = start_broker(merged, port=plain_port)
        else:
            self.broker = start_broker(node_id, merged, port=plain_port)
        wait_until(lambda: _connects(self.tls_port), timeout=30, msg="the SSL listener")

    def client(self, **extra) -> dict:
        config = {"bootstrap.servers": self.tls, "security.protocol": "SSL",
                  "ssl.ca.location": str(self.pki / "ca.pem")}
        config.update(extra)
        return config


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


def _round_trip(config: dict, topic: str, count: int = 200) -> None:
    """Creates `topic`, produces `count` records and reads them back, all with `config`."""
    admin = AdminClient(config)
    for f in admin.create_topics([NewTopic(topic, num_partitions=3,
                                           replication_factor=1)]).values():
        f.result(30)
    producer = Producer(dict(config, **{"enable.idempotence": True}))
    for i in range(count):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 3)
    assert producer.flush(60) == 0, "records left unacknowledged"
    consumer = Consumer(dict(config, **{"group.id": unique_name("tls"),
                                        "auto.offset.reset": "earliest",
                                        "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    got = set()

    def all_read():
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error() is None:
                got.add(msg.value().decode())
        return len(got) >= count
    try:
        wait_until(all_read, timeout=60, interval=0, msg=f"{count} records read over TLS")
    finally:
        consumer.close()
    assert got == {f"v{i}" for i in range(count)}


def test_confluent_kafka_over_tls_is_told_of_the_tls_listener(start_broker, pki):
    b = TlsBroker(start_broker, pki)
    config = b.client()
    meta = AdminClient(config).list_topics(timeout=20)
    (only,) = meta.brokers.values()
    # Metadata answers with the address of the listener the client came through.
    assert f"{only.host}:{only.port}" == b.tls
    _round_trip(config, unique_name("tls"))
    # The plaintext listener still serves, and names its own address.
    plain = AdminClient({"bootstrap.servers": b.plain}).list_topics(timeout=20)
    (only,) = plain.brokers.values()
    assert f"{only.host}:{only.port}" == b.plain


def test_a_cluster_names_each_broker_at_its_tls_listener(cluster, pki):
    brokers = [TlsBroker(cluster.start_broker, pki, node_id=n) for n in (1, 2)]
    config = brokers[0].client()
    wanted = {b.tls for b in brokers}
    wait_until(lambda: {f"{x.host}:{x.port}" for x in
                        AdminClient(config).list_topics(timeout=20).brokers.values()} == wanted,
               timeout=30, msg="both brokers listed at their TLS addresses")
    # Partitions led by both brokers, reached over TLS through what Metadata told.
    _round_trip(config, unique_name("cluster-tls"))


@pytest.mark.skipif(KCAT is None, reason="kcat not installed")
def test_kcat_over_tls(start_broker, pki, topic_name):
    b = TlsBroker(start_broker, pki)
    tls = ["-b", b.tls, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki / 'ca.pem'}"]

    def kcat(*args, stdin=None):
        proc = subprocess.run([KCAT, *tls, *args], input=stdin, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, f"kcat {args} exited {proc.returncode}: {proc.stderr}"
        return proc.stdout
    lines = [f"k{i}:line {i}" for i in range(50)]
    kcat("-P", "-t", topic_name, "-K:", stdin="\n".join(lines) + "\n")
    out = kcat("-C", "-t", topic_name, "-e", "-o", "beginning", "-q", "-f", "%k:%s\n")
    assert sorted(out.splitlines()) == sorted(lines)
    listed = json.loads(kcat("-L", "-J"))
    assert [f"{x['name']}" for x in listed["brokers"]] == [b.tls]


@pytest.mark.timeout(300)
def test_java_client_over_tls(start_broker, pki, topic_name, compiled_java, tmp_path):  # noqa: F811
    b = TlsBroker(start_broker, pki)
    run_java_compat_test(compiled_java, tmp_path, b.tls, topic_name,
                         "security.protocol=SSL\nssl.truststore.type=PEM\n"
                         f"ssl.truststore.location={pki / 'ca.pem'}\n")


def run_java_compat_test(compiled_java: Path, tmp_path: Path, bootstrap: str, topic: str,
                         client_properties: str) -> None:
    """compat/java/CompatTest against `bootstrap`, every client of it also given
    `client_properties` (as Kafka's tools take them with --command-config)."""
    properties = tmp_path / "client.properties"
    properties.write_text(client_properties)
    proc = subprocess.run(["java", f"-Dpartita.client.properties={properties}", "-cp",
                           _classpath(compiled_java), "CompatTest", bootstrap, topic],
                          capture_output=True, text=True, timeout=240)
    out = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), out


def test_client_certificates_required(start_broker, pki):
    b = TlsBroker(start_broker, pki, **{"ssl.client.auth": "required",
                                        "ssl.truststore.type": "PEM",
                                        "ssl.truststore.location": str(pki / "ca.pem")})
    alice = b.client(**{"ssl.certificate.location": str(pki / "alice.pem"),
                        "ssl.key.location": str(pki / "alice.key")})
    _round_trip(alice, unique_name("mtls"))
    for refused in (b.client(),
                    b.client(**{"ssl.certificate.location": str(pki / "mallory.pem"),
                                "ssl.key.location": str(pki / "mallory.key")})):
        with pytest.raises(KafkaException):
            AdminClient(refused).list_topics(timeout=8)
    assert "TLS handshake failed" in b.broker.log_text()
    # Those refusals cost nobody else anything.
    AdminClient(alice).list_topics(timeout=20)


def test_wrong_protocols_and_a_truncated_handshake_close_only_their_connection(start_broker,
                                                                              pki):
    b = TlsBroker(start_broker, pki)
    config = b.client()
    admin = AdminClient(config)
    admin.list_topics(timeout=20)
    # A plaintext Kafka request (ApiVersions v0) sent to the TLS port: closed.
    api_versions = bytes.fromhex("0000000e" "0012" "0000" "00000001" "0004") + b"test"
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as s:
        s.sendall(api_versions)
        s.settimeout(10)
        assert _closed(s), "a plaintext request on the TLS port was answered"
    # A TLS client on the plaintext port: its ClientHello is no Kafka frame; closed.
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    plain_port = int(b.plain.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", plain_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                s.recv(1)
    # Half a ClientHello, then the client goes away.
    hello = _client_hello(context)
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as s:
        s.sendall(hello[: len(hello) // 2])
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as s:
        s.sendall(hello[: len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
        s.settimeout(15)
        assert _closed(s), "a truncated handshake was left open"
    # Everyone else carries on, and the broker is still up.
    _round_trip(config, unique_name("after"))
    assert b.broker.is_running()
    assert "TLS handshake failed" in b.broker.log_text()


def _closed(s: socket.socket) -> bool:
    """Whether the peer closes `s` (reading only what it may send first, an alert)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if not s.recv(4096):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight of a TLS client, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("settings, expected", [
    ({"listeners": "SSL://127.0.0.1:{port}"}, "ssl.keystore.location"),
    ({"listeners": "SSL://127.0.0.1:{port}", "ssl.keystore.type": "JKS",
      "ssl.keystore.location": "/nonexistent.jks"}, "PEM"),
    ({"listeners": "CLIENT://127.0.0.1:{port}"}, "listener.security.protocol.map"),
    ({"listeners": "SSL://127.0.0.1:{port}", "ssl.keystore.location": "{pki}/ca.key"},
     "no certificate"),
], ids=["no-keystore", "jks", "unmapped-name", "key-without-certificate"])
def test_a_listener_that_cannot_serve_stops_the_start_with_one_line(start_broker, pki,
                                                                   settings, expected):
    port = free_port()
    resolved = {k: v.format(port=port, pki=pki) for k, v in settings.items()}
    with pytest.raises(RuntimeError) as failed:
        start_broker(resolved)
    assert expected in str(failed.value), str(failed.value)


def _served_certificate(port: int, ca: Path) -> dict:
    import ssl
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert()


def test_a_renewed_certificate_is_served_without_a_restart(start_broker, pki):
    b = TlsBroker(start_broker, pki)
    first = _served_certificate(b.tls_port, pki / "ca.pem")
    admin = AdminClient(b.client())
    admin.list_topics(timeout=20)
    # The operator renews the certificate: a new one from the same CA, written over the file.
    _signed(pki, "ca", "renewed", "/CN=localhost/O=renewed",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    keystore = pki / "server-keystore.pem"
    staged = pki / "server-keystore.new"
    staged.write_text((pki / "renewed.key").read_text() + (pki / "renewed.pem").read_text())
    staged.replace(keystore)
    renewed = wait_until(
        lambda: (lambda c: c if c["serialNumber"] != first["serialNumber"] else None)(
            _served_certificate(b.tls_port, pki / "ca.pem")),
        timeout=30, msg="the renewed certificate served")
    assert ("organizationName", "renewed") in [kv for rdn in renewed["subject"] for kv in rdn]
    assert "TLS key and certificate reloaded" in b.broker.log_text()
    # A broken file (half written) leaves the renewed certificate in use.
    keystore.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    wait_until(lambda: "cannot be used; the one in use stays" in b.broker.log_text(), timeout=30,
               msg="the broken keystore noticed")
    assert _served_certificate(b.tls_port, pki / "ca.pem")["serialNumber"] == \
        renewed["serialNumber"]
    admin.list_topics(timeout=20)


def test_a_changed_truststore_is_used_without_a_restart(start_broker, pki):
    truststore = pki / "truststore.pem"
    truststore.write_text((pki / "ca.pem").read_text())
    b = TlsBroker(start_broker, pki, **{"ssl.client.auth": "required",
                                        "ssl.truststore.type": "PEM",
                                        "ssl.truststore.location": str(truststore)})

    def lists(name: str) -> bool:
        config = b.client(**{"ssl.certificate.location": str(pki / f"{name}.pem"),
                             "ssl.key.location": str(pki / f"{name}.key")})
        try:
            AdminClient(config).list_topics(timeout=5)
            return True
        except KafkaException:
            return False
    assert lists("alice") and not lists("mallory")
    # The operator trusts a second authority: written beside, then moved over the file.
    staged = pki / "truststore.new"
    staged.write_text((pki / "ca.pem").read_text() + (pki / "rogue-ca.pem").read_text())
    staged.replace(truststore)
    wait_until(lambda: lists("mallory"), timeout=60, msg="the added authority trusted")
    assert "TLS truststore reloaded" in b.broker.log_text()
    # ... and withdraws the first one: its clients are turned away from then on.
    staged.write_text((pki / "rogue-ca.pem").read_text())
    staged.replace(truststore)
    wait_until(lambda: not lists("alice"), timeout=60, msg="the withdrawn authority refused")
    assert lists("mallory")
    # A broken file leaves the authorities in use.
    truststore.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    wait_until(lambda: "TLS truststore changed but cannot be used" in b.broker.log_text(),
               timeout=30, msg="the broken truststore noticed")
    assert lists("mallory") and not lists("alice")


def _mtls_broker(start_broker, pki) -> TlsBroker:
    return TlsBroker(start_broker, pki, **{"ssl.client.auth": "required",
                                           "ssl.truststore.type": "PEM",
                                           "ssl.truststore.location": str(pki / "ca.pem")})


@pytest.mark.timeout(300)
def test_java_client_with_a_client_certificate(start_broker, pki, topic_name,  # noqa: F811
                                               compiled_java, tmp_path):
    b = _mtls_broker(start_broker, pki)
    keystore = pki / "alice-keystore.pem"
    keystore.write_text((pki / "alice.key").read_text() + (pki / "alice.pem").read_text())
    run_java_compat_test(compiled_java, tmp_path, b.tls, topic_name,
                         "security.protocol=SSL\nssl.truststore.type=PEM\n"
                         f"ssl.truststore.location={pki / 'ca.pem'}\n"
                         f"ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n")


@pytest.mark.skipif(KCAT is None, reason="kcat not installed")
def test_kcat_with_a_client_certificate(start_broker, pki, topic_name):
    b = _mtls_broker(start_broker, pki)
    args = ["-b", b.tls, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki / 'ca.pem'}",
            "-X", f"ssl.certificate.location={pki / 'alice.pem'}",
            "-X", f"ssl.key.location={pki / 'alice.key'}"]
    lines = [f"line {i}" for i in range(20)]
    produced = subprocess.run([KCAT, *args, "-P", "-t", topic_name], capture_output=True,
                              input="\n".join(lines) + "\n", text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run([KCAT, *args, "-C", "-t", topic_name, "-e", "-o", "beginning",
                               "-q"], capture_output=True, text=True, timeout=60)
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.splitlines()) == sorted(lines)
    # Without a certificate, kcat is turned away at the handshake.
    refused = subprocess.run([KCAT, *args[:6], "-L"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
