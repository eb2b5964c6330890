"""Shared fixtures. Integration fixtures start the real services only when a test needs them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.stack import Stack, test_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Real Kafka + Redis: containers when Docker answers, `make services` otherwise."""
    with test_stack() as running:
        yield running


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names that no other test (or earlier run) uses: `<prefix>-<test>-<random>`."""
    test = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_factory(stack: Stack, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics for one test; they are deleted afterwards."""
    from stream.kafka_io import ensure_topics, make_admin

    created: list[str] = []

    def make(prefix: str = "topic", partitions: int = 4) -> str:
        name = unique_name(prefix)
        ensure_topics(stack.kafka, [name], partitions)
        created.append(name)
        return name

    yield make
    if created:
        futures = make_admin(stack.kafka).delete_topics(created, operation_timeout=10)
        for future in futures.values():
            try:
                future.result()
            except Exception:  # noqa: BLE001 - cleanup is best effort
                pass


@pytest.fixture
def redis_client(stack: Stack) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()
