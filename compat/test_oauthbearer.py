"""SASL OAUTHBEARER with JWTs checked as Kafka's OAuthBearerValidatorCallbackHandler checks
them (KIP-768): against the keys of a JWKS file or https:// endpoint
(`sasl.oauthbearer.jwks.endpoint.url`), with the expected issuer and audience, the expiry; the
principal is the subject. The tokens are made
here with PyJWT and keys of the test's own; clients are librdkafka's (confluent-kafka), which
ask for a token through `oauth_cb`."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from partita_compat import free_port, unique_name, wait_until
from test_tls import _round_trip, pki  # noqa: F401 - the fixture

ISSUER = "https://idp.partita.test"
AUDIENCE = "kafka-brokers"


class Issuer:
    """An identity provider of the test's own: an RSA key and an EC key in a JWKS file."""

    def __init__(self, directory):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = []
        for kid, key, algorithm in (("rsa-1", self.rsa, jwt.algorithms.RSAAlgorithm),
                                    ("ec-1", self.ec, jwt.algorithms.ECAlgorithm)):
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            jwk["kid"] = kid
            keys.append(jwk)
        self.jwks = directory / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": keys}))

    def jwk(self, kid: str, key) -> dict:
        algorithm = (jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey)
                     else jwt.algorithms.ECAlgorithm)
        return dict(json.loads(algorithm.to_jwk(key.public_key())), kid=kid)

    def token(self, sub="alice", lifetime=300, audience=AUDIENCE, issuer=ISSUER, kid="rsa-1",
              key=None, algorithm="RS256") -> str:
        now = int(time.time())
        claims = {"sub": sub, "iss": issuer, "aud": audience, "iat": now, "exp": now + lifetime}
        signing = key if key is not None else (self.rsa if kid == "rsa-1" else self.ec)
        return jwt.encode(claims, signing, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def issuer(tmp_path) -> Issuer:
    return Issuer(tmp_path)


def oauth_broker(start_broker, issuer: Issuer, **extra):
    plain, port = free_port(), free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{port}"
    start_broker(dict({
        "listeners": listeners, "advertised.listeners": listeners,
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.jwks.endpoint.url": f"file://{issuer.jwks}",
        "sasl.oauthbearer.expected.issuer": ISSUER,
        "sasl.oauthbearer.expected.audience": AUDIENCE}, **extra), port=plain)
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=2), timeout=30,
               msg="the SASL listener")
    return port


def client(port: int, token: str) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": lambda _config: (token, time.time() + 300)}


def refused(config: dict) -> bool:
    errors = []
    admin = AdminClient(dict(config, error_cb=errors.append))
    try:
        admin.list_topics(timeout=8)
        return False
    except KafkaException:
        admin.poll(1)
        return any(e.code() == KafkaError._AUTHENTICATION for e in errors)


def test_a_valid_token_reads_and_writes(start_broker, issuer):
    port = oauth_broker(start_broker, issuer)
    _round_trip(client(port, issuer.token()), unique_name("oauth"))
    # An EC key of the same JWKS signs as well.
    AdminClient(client(port, issuer.token(kid="ec-1", algorithm="ES256"))).list_topics(timeout=20)


def test_expired_foreign_and_misaddressed_tokens_are_refused(start_broker, issuer, tmp_path):
    port = oauth_broker(start_broker, issuer, **{"sasl.oauthbearer.clock.skew.seconds": 0})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token in (issuer.token(lifetime=-60),
                  issuer.token(audience="someone-else"),
                  issuer.token(issuer="https://evil.test"),
                  issuer.token(key=stranger),
                  jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "shared-secret",
                             algorithm="HS256", headers={"kid": "rsa-1"})):
        assert refused(client(port, token)), jwt.decode(token, options={"verify_signature": False})
    # A good token still gets in.
    AdminClient(client(port, issuer.token())).list_topics(timeout=20)


def test_the_subject_is_the_principal_for_acls(start_broker, issuer):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       NewTopic, ResourcePatternType, ResourceType)
    port = oauth_broker(start_broker, issuer, **{
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ops"})
    admin = AdminClient(client(port, issuer.token(sub="ops")))
    topic = unique_name("oauth-acl")
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(20)
    for f in admin.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                           "User:alice", "*", AclOperation.DESCRIBE,
                                           AclPermissionType.ALLOW)]).values():
        f.result(20)
    assert topic in AdminClient(client(port, issuer.token(sub="alice"))).list_topics(
        timeout=20).topics
    assert topic not in AdminClient(client(port, issuer.token(sub="bob"))).list_topics(
        timeout=20).topics


def test_a_listener_without_a_jwks_refuses_to_start(start_broker):
    port = free_port()
    with pytest.raises(RuntimeError) as failed:
        start_broker({"listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
                      "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
                      "sasl.enabled.mechanisms": "OAUTHBEARER"})
    assert "sasl.oauthbearer.jwks.endpoint.url" in str(failed.value)


class JwksEndpoint:
    """An identity provider's JWKS endpoint of the test's own: Python's HTTP server over TLS
    with a certificate from the test's CA, answering whatever `keys` holds."""

    def __init__(self, pki: Path, keys: list):
        self.keys = keys
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                endpoint.requests += 1
                body = json.dumps({"keys": endpoint.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "server.pem", pki / "server.key")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_jwks_endpoint_over_https_with_keys_rotated(start_broker, issuer, pki):
    """The JWKS fetched from the provider's https:// endpoint, its certificate checked against
    the truststore of the listener's JAAS options as Kafka takes them; a key the provider adds
    later is fetched when a token first names it, long before the hourly refresh."""
    endpoint = JwksEndpoint(pki, [issuer.jwk("rsa-1", issuer.rsa)])
    try:
        jaas = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                f'ssl.truststore.location="{pki / "ca.pem"}" ssl.truststore.type="PEM";')
        port = oauth_broker(start_broker, issuer, **{
            "sasl.oauthbearer.jwks.endpoint.url": endpoint.url,
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": jaas})
        assert endpoint.requests == 1
        _round_trip(client(port, issuer.token()), unique_name("oauth-https"))
        # The provider rotates: a new key beside the old one.
        newer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        endpoint.keys = [issuer.jwk("rsa-1", issuer.rsa), issuer.jwk("rsa-2", newer)]
        wait_until(lambda: not refused(client(port, issuer.token(kid="rsa-2", key=newer))),
                   timeout=30, msg="a token signed with the new key accepted")
        # A token naming a key nobody published is still refused; the old key still works.
        assert refused(client(port, issuer.token(kid="rsa-9", key=newer)))
        AdminClient(client(port, issuer.token())).list_topics(timeout=20)
    finally:
        endpoint.close()


def test_an_untrusted_jwks_endpoint_stops_the_start(start_broker, issuer, pki):
    # Without the JAAS truststore, the endpoint's certificate (from the test's own CA) is not
    # trusted: the broker has no keys and does not start.
    endpoint = JwksEndpoint(pki, [issuer.jwk("rsa-1", issuer.rsa)])
    try:
        with pytest.raises(RuntimeError) as failed:
            oauth_broker(start_broker, issuer,
                         **{"sasl.oauthbearer.jwks.endpoint.url": endpoint.url})
        assert endpoint.url in str(failed.value)
    finally:
        endpoint.close()
