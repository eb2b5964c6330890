"""Who may read and write which topic: the Kafka ACLs of each role, and applying them.

    grants = role_grants(settings)            # pure: what each role may do, by the settings' names
    apply_grants(settings.kafka, grants)      # as a super user: create them, wait until visible
    set_scram_users(settings.kafka, {"scorer": password})   # create a user or change a password

One SCRAM user per role, named like the role (`ops/services.sh` creates them). The broker runs
StandardAuthorizer with allow.everyone.if.no.acl.found=false, so whatever is not granted here
is refused:

  scorer     reads transactions and feedback (group = FRAUD_CONSUMER_GROUP); writes decisions,
             alerts and the dead-letter topic
  producer   writes transactions (a bank's payment systems)
  simulator  writes transactions and the simulated ground truth (`fraud produce`)
  analyst    writes feedback; reads alerts, decisions and the simulated ground truth
  trainer    reads feedback and decisions (`fraud retrain`)
  monitor    reads decisions and feedback (`fraud monitor`) and the group's committed offsets
             (`fraud lag`: describe the group and the topics, read `__consumer_offsets`)

Readers that assign partitions and never commit (analysts, trainer, monitor) need no group
ACL. Creating topics and ACLs is left to the admin user (a super user on the broker).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from fraud.errors import ServiceUnavailableError
from fraud.settings import KafkaConnection, Settings
from stream.kafka_io import make_admin

ROLES = ("scorer", "producer", "simulator", "analyst", "trainer", "monitor")
OFFSETS_TOPIC = "__consumer_offsets"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW rule: `user` may `operation` the `resource` named `name` (literal name)."""

    user: str
    resource: str  # "topic" | "group"
    name: str
    operation: str  # "read" | "write" | "describe"

    def describe(self) -> str:
        return f"User:{self.user} {self.operation.upper()} {self.resource} {self.name}"


def role_grants(settings: Settings) -> list[Grant]:
    """Every grant of every role, for the topic and group names of `settings`."""
    topics = settings.topics
    group = settings.consumer_group

    def topic(user: str, operation: str, *names: str) -> list[Grant]:
        return [Grant(user, "topic", name, operation) for name in names]

    grants = [
        *topic("scorer", "read", topics.transactions, topics.feedback),
        *topic("scorer", "write", topics.decisions, topics.alerts, topics.dead_letter),
        Grant("scorer", "group", group, "read"),
        *topic("producer", "write", topics.transactions),
        *topic("simulator", "write", topics.transactions, topics.truth),
        *topic("analyst", "write", topics.feedback),
        *topic("analyst", "read", topics.alerts, topics.decisions, topics.truth),
        *topic("trainer", "read", topics.feedback, topics.decisions),
        *topic("monitor", "read", topics.decisions, topics.feedback, OFFSETS_TOPIC),
        *topic("monitor", "describe", topics.transactions),
        Grant("monitor", "group", group, "describe"),
    ]
    return sorted(set(grants))


def _binding(grant: Grant) -> AclBinding:
    resource = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}[grant.resource]
    operation = {
        "read": AclOperation.READ,
        "write": AclOperation.WRITE,
        "describe": AclOperation.DESCRIBE,
    }[grant.operation]
    return AclBinding(
        resource,
        grant.name,
        ResourcePatternType.LITERAL,
        f"User:{grant.user}",
        "*",
        operation,
        AclPermissionType.ALLOW,
    )


def _wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Ask again until `check()` holds: the controller commits a change before the broker's
    own view of the metadata shows it."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(f"not {what} after {timeout_s} s")
        time.sleep(0.1)


def apply_grants(kafka: KafkaConnection, grants: Iterable[Grant], timeout_s: float = 30.0) -> int:
    """Create the grants' ACLs (existing ones are kept) and wait until the broker shows them
    all; returns how many grants there are."""
    wanted = [_binding(grant) for grant in grants]
    admin = make_admin(kafka)
    try:
        for future in admin.create_acls(wanted, request_timeout=timeout_s).values():
            future.result()
        anything: Any = None  # a filter's None matches every name, principal and host
        everything = AclBindingFilter(
            ResourceType.ANY,
            anything,
            ResourcePatternType.ANY,
            anything,
            anything,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )

        def all_visible() -> bool:
            visible = set(admin.describe_acls(everything, request_timeout=timeout_s).result())
            return all(binding in visible for binding in wanted)

        _wait_for(all_visible, timeout_s, f"the ACLs visible on {kafka.describe()}")
        return len(wanted)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"could not create the ACLs on {kafka.describe()}: {exc}; they need the admin user "
            "(a super user): `ops/services.sh as admin fraud acls`"
        ) from exc


SCRAM_ITERATIONS = 8192


def set_scram_users(
    kafka: KafkaConnection, passwords: Mapping[str, str], timeout_s: float = 30.0
) -> None:
    """Create SCRAM-SHA-512 users or change their passwords (as a super user), and wait until
    the broker knows them all. Passwords travel inside the TLS connection, never on a command
    line; the broker keeps only salted hashes."""
    mechanism = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[Any] = [
        UserScramCredentialUpsertion(user, mechanism, password.encode())
        for user, password in passwords.items()
    ]
    admin = make_admin(kafka)
    try:
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result()

        def all_known() -> bool:
            futures = admin.describe_user_scram_credentials(list(passwords))
            assert isinstance(futures, dict)  # one future per user asked for
            try:
                for future in futures.values():
                    future.result()
            except KafkaException:
                return False  # a user not known yet: the broker answers for none
            return True

        _wait_for(all_known, timeout_s, f"the SCRAM users known to {kafka.describe()}")
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"could not set SCRAM users on {kafka.describe()}: {exc}; this needs the admin user"
        ) from exc
