"""SASL OAUTHBEARER with JWTs checked as Kafka's OAuthBearerValidatorCallbackHandler checks
them (KIP-768): against the keys of a JWKS file (`sasl.oauthbearer.jwks.endpoint.url`), with
the expected issuer and audience, the expiry; the principal is the subject. The tokens are made
here with PyJWT and keys of the test's own; clients are librdkafka's (confluent-kafka), which
ask for a token through `oauth_cb`."""

from __future__ import annotations

import json
import socket
import time

import jwt
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from partita_compat import free_port, unique_name, wait_until
from test_tls import _round_trip

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
