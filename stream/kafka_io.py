"""Thin wrappers around confluent-kafka clients, all built from one `KafkaConnection`.

    producer = make_producer(settings.kafka)          # brokers + credentials of this process
    consumer = make_consumer(settings.kafka, "group")
    app = faust.App(..., broker_credentials=faust_credentials(settings.kafka))

Clients are created on demand (no network at import), callers' config dicts are copied,
librdkafka's error callbacks go to the logger instead of stderr, and the connection's security
settings (SASL_SSL: SCRAM user and password, the brokers' CA) are applied to every client, so
no caller can forget them. A caller's extra config cannot override them either.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraud.errors import ConfigError, ServiceUnavailableError
from fraud.settings import KafkaConnection

log = logging.getLogger(__name__)

# The properties `security_config` owns: a caller's `extra` may not set them.
_SECURITY_KEYS = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.endpoint.identification.algorithm",
    }
)


def _error_cb(err: KafkaError) -> None:
    log.warning("kafka client error: %s", err)


def _ca_file(kafka: KafkaConnection) -> str | None:
    if kafka.ca_file is None:
        return None  # the system's CAs
    if not kafka.ca_file.is_file():
        raise ConfigError(
            f"FRAUD_KAFKA_CA_FILE {kafka.ca_file} is not a file; point it at the CA certificate "
            "(PEM) that signed the brokers' certificates"
        )
    return str(kafka.ca_file)


def security_config(kafka: KafkaConnection) -> dict[str, str]:
    """The librdkafka properties that authenticate a client (PLAINTEXT: none)."""
    if not kafka.secure:
        return {"security.protocol": "PLAINTEXT"}
    assert kafka.username and kafka.password, "Settings refuses SASL_SSL without credentials"
    ca_file = _ca_file(kafka)
    config = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": kafka.sasl_mechanism,
        "sasl.username": kafka.username,
        "sasl.password": kafka.password.get_secret_value(),
        # The broker's certificate must name the address we dial (librdkafka's default too).
        "ssl.endpoint.identification.algorithm": "https",
    }
    if ca_file is not None:
        config["ssl.ca.location"] = ca_file
    return config


def _config(kafka: KafkaConnection, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    overriding = _SECURITY_KEYS & set(extra or {})
    if overriding:
        raise ConfigError(
            f"Kafka security properties come from the settings only, not from a client's "
            f"config: {', '.join(sorted(overriding))} (set FRAUD_KAFKA_* instead)"
        )
    # librdkafka's own log lines go through Python logging too (not raw to stderr).
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap,
        "error_cb": _error_cb,
        "logger": logging.getLogger("librdkafka"),
    }
    config.update(dict(extra or {}))
    config.update(security_config(kafka))
    return config


def make_producer(kafka: KafkaConnection, extra: Mapping[str, Any] | None = None) -> Producer:
    """An idempotent producer tuned for small records: batches for 5 ms, lz4-compressed."""
    defaults = {"enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"}
    return Producer(_config(kafka, {**defaults, **dict(extra or {})}))


def make_consumer(
    kafka: KafkaConnection, group: str, extra: Mapping[str, Any] | None = None
) -> Consumer:
    defaults = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    return Consumer(_config(kafka, {**defaults, **dict(extra or {})}))


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """(first offset, end offset) of one partition, asked of the broker now (not cached);
    ServiceUnavailableError when it does not answer within `timeout_s`."""
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
    except KafkaException as exc:
        raise ServiceUnavailableError(f"no offsets for {topic}[{partition}]: {exc}") from exc
    return int(low), int(high)


def make_admin(kafka: KafkaConnection) -> AdminClient:
    return AdminClient(_config(kafka, None))


def faust_credentials(kafka: KafkaConnection) -> Any:
    """`broker_credentials` for a Faust app on this connection (None for PLAINTEXT).

    Faust turns SASL credentials into SASL_SSL only when they carry their own SSL context (an
    App-level ssl_context is ignored once credentials are given, leaving SASL_PLAINTEXT), and
    its default mechanism is PLAIN: both are set explicitly here.
    """
    if not kafka.secure:
        return None
    import faust
    from aiokafka.helpers import create_ssl_context

    assert kafka.username and kafka.password, "Settings refuses SASL_SSL without credentials"
    context = create_ssl_context(cafile=_ca_file(kafka))
    return faust.SASLCredentials(
        username=kafka.username,
        password=kafka.password.get_secret_value(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )


def check_reachable(kafka: KafkaConnection, timeout_s: float) -> None:
    """Fail fast, with one clear message, when no bootstrap address accepts a connection."""
    failures = []
    bootstrap = kafka.bootstrap
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout_s):
                return
        except (OSError, ValueError) as exc:
            failures.append(f"{address.strip()}: {exc}")
    raise ServiceUnavailableError(
        f"no Kafka broker reachable at {bootstrap} ({'; '.join(failures)}); "
        "start one with `make services` or set KAFKA_BOOTSTRAP_SERVERS / --bootstrap"
    )


def wait_for_broker(kafka: KafkaConnection, timeout_s: float = 10.0) -> AdminClient:
    """An admin client whose broker answered, or ServiceUnavailableError after `timeout_s`
    (saying so when the broker refused the credentials or the TLS handshake)."""
    errors: list[KafkaError] = []  # the error raised below names the last one
    config = _config(kafka, None)
    config["error_cb"] = errors.append
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return admin
        except KafkaException as exc:
            last = exc
            admin.poll(0.2)  # serves error_cb: why the broker did not answer
            if _refused(errors):
                break  # credentials or certificates: asking again will not help
    refused = _refused(errors)
    if refused:
        raise ServiceUnavailableError(
            f"the Kafka broker at {kafka.describe()} refused this client ({refused[-1].str()}); "
            "check FRAUD_KAFKA_USERNAME / FRAUD_KAFKA_PASSWORD / FRAUD_KAFKA_CA_FILE"
        )
    if errors:
        last = KafkaException(errors[-1])
    raise ServiceUnavailableError(
        f"no Kafka broker answered at {kafka.describe()} within {timeout_s:.0f} s ({last}); "
        "start one with `make services` or set KAFKA_BOOTSTRAP_SERVERS and FRAUD_KAFKA_*"
    )


def _refused(errors: list[KafkaError]) -> list[KafkaError]:
    return [e for e in errors if e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)]


def require_broker(kafka: KafkaConnection, timeout_s: float = 10.0) -> AdminClient:
    """For commands that need Kafka now: fail at once when nothing listens at the brokers'
    address, and within `timeout_s` when something listens but no broker answers (or it
    refuses this client's credentials): ServiceUnavailableError."""
    check_reachable(kafka, timeout_s=min(timeout_s, 5.0))
    return wait_for_broker(kafka, timeout_s)


def ensure_topics(
    kafka: KafkaConnection,
    names: Iterable[str],
    partitions: int,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created. Replicas: the
    broker's default.replication.factor (1 on the single node, 3 on the cluster)."""
    admin = wait_for_broker(kafka, timeout_s)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [name for name in names if name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=-1) for name in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            ):
                raise ConfigError(
                    f"topic {name} is not visible to {kafka.describe()} and this user may not "
                    "create it: the admin creates topics (`fraud topics`), and the user's ACLs "
                    "(`fraud acls`) decide what it may see"
                ) from exc
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
