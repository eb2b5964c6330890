"""Every Kafka and Redis client takes the one set of security settings: librdkafka, Faust and
redis-py get the same user, password and CA, and no caller can swap them for others."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from fraud.errors import ConfigError
from fraud.settings import KafkaConnection, Settings
from stream.kafka_acl import ROLES, Grant, role_grants
from stream.kafka_io import faust_credentials, make_consumer, make_producer, security_config
from stream.redis_io import redis_address, redis_options

# Any PEM bundle of CA certificates will do: the clients are built, never connected.
CA_FILE = Path(certifi.where())


def secure_connection(ca_file: Path = CA_FILE) -> KafkaConnection:
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9192",
        kafka_security_protocol="SASL_SSL",
        kafka_username="scorer",
        kafka_password="pw-123",
        kafka_ca_file=ca_file,
    )
    return settings.kafka


def test_plaintext_by_default_and_sasl_ssl_with_the_settings_credentials():
    assert security_config(KafkaConnection("127.0.0.1:9092")) == {"security.protocol": "PLAINTEXT"}
    assert security_config(secure_connection()) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "scorer",
        "sasl.password": "pw-123",
        "ssl.ca.location": str(CA_FILE),
        "ssl.endpoint.identification.algorithm": "https",
    }
    with pytest.raises(ConfigError, match=r"FRAUD_KAFKA_CA_FILE /no/such/ca\.pem is not a file"):
        security_config(secure_connection(Path("/no/such/ca.pem")))


def test_a_caller_cannot_override_the_security_settings():
    with pytest.raises(ConfigError, match=r"sasl\.username"):
        make_producer(secure_connection(), {"sasl.username": "admin"})
    with pytest.raises(ConfigError, match=r"security\.protocol"):
        make_consumer(secure_connection(), "group", {"security.protocol": "PLAINTEXT"})


def test_faust_gets_scram_over_tls_with_the_same_user():
    assert faust_credentials(KafkaConnection("127.0.0.1:9092")) is None
    credentials = faust_credentials(secure_connection())
    assert credentials.username == "scorer" and credentials.password == "pw-123"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    # Without its own SSL context Faust would fall back to SASL_PLAINTEXT.
    assert credentials.ssl_context is not None
    assert credentials.protocol.value == "SASL_SSL"


def test_redis_clients_take_the_user_and_verify_tls_against_the_ca():
    plain = Settings(REDIS_URL="redis://127.0.0.1:6379/0")
    assert redis_options(plain) == {}
    secured = Settings(
        REDIS_URL="rediss://127.0.0.1:6380/0",
        redis_username="scorer",
        redis_password="r-pw",
        redis_ca_file="/etc/ca.pem",
    )
    assert redis_options(secured) == {
        "username": "scorer",
        "password": "r-pw",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    assert redis_address(Settings(REDIS_URL="redis://u:secret@h:1/0")) == "redis://u:***@h:1/0"


def test_each_role_gets_only_its_topics():
    settings = Settings()
    topics = settings.topics
    grants = role_grants(settings)
    assert {g.user for g in grants} == set(ROLES)

    def writes(user: str) -> set[str]:
        return {g.name for g in grants if g.user == user and g.operation == "write"}

    assert writes("scorer") == {topics.decisions, topics.alerts, topics.dead_letter}
    assert writes("producer") == {topics.transactions}
    assert writes("simulator") == {topics.transactions, topics.truth}
    assert writes("analyst") == {topics.feedback}
    assert writes("trainer") == writes("monitor") == set()
    assert Grant("scorer", "group", settings.consumer_group, "read") in grants
    reads = {g.name for g in grants if g.user == "scorer" and g.operation == "read"}
    assert reads == {topics.transactions, topics.feedback, settings.consumer_group}
    # The topic names follow the settings.
    renamed = Settings(topics={"transactions": "tx-live"}, consumer_group="scorers-b")
    assert Grant("producer", "topic", "tx-live", "write") in role_grants(renamed)
    assert Grant("scorer", "group", "scorers-b", "read") in role_grants(renamed)
