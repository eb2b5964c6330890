"""The feature store in a process of its own (FRAUD_STORE_PROCESS=1) against the in-process one."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import redis

from bench.features import history_events, synthetic_history
from fraud.errors import ValidationError
from fraud.settings import Settings
from stream.features import RedisFeatureStore
from stream.worker.store_process import StoreProcess, redis_feature_store
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration]


def test_the_store_process_gives_the_features_labels_and_errors_of_the_store(
    stack: Stack, redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    """Batches in the child, labels in the worker's own store: the features are those of one
    store; errors and a dead child are handled."""
    events = history_events(synthetic_history(1500, days=2, seed=4))
    ours = Settings(redis_url=stack.redis_url, redis_prefix=unique_name("process"))
    direct = RedisFeatureStore(
        redis_client, unique_name("direct"), label_delay=timedelta(days=ours.label_delay_days)
    )
    process = StoreProcess(ours, redis_feature_store(ours))
    local_calls: list[int] = []
    local_process = process._local.process

    def counted(batch: Any, **kwargs: Any) -> Any:
        local_calls.append(len(batch))
        return local_process(batch, **kwargs)

    process._local.process = counted  # type: ignore[method-assign]
    try:
        start = 0
        for size in itertools.islice(itertools.cycle([300, 20, 150, 63, 64, 5]), 12):
            batch = events[start : start + size]
            start += size
            expected = direct.process(batch)
            got = process.process(batch)
            np.testing.assert_array_equal(got.matrix, expected.matrix)
            assert got.conflicts == expected.conflicts
        assert local_calls == []  # every batch in the child
        # A redelivery is recognised whichever store recorded it; a look writes nothing.
        again = process.process(events[:400], write=False)
        np.testing.assert_array_equal(again.matrix, direct.process(events[:400]).matrix)
        labels = [
            {"transaction_id": tx, "label": "fraud", "labelled_at": "2030-01-01T00:00:00Z"}
            for tx in [e["transaction_id"] for e in events[:20]] + ["tx-unknown"]
        ]
        assert process.apply_labels_checked(labels) == direct.apply_labels_checked(labels)
        np.testing.assert_array_equal(
            process.default_matrix(events[:3]), direct.default_matrix(events[:3])
        )

        # What the child's store raises reaches the caller, and the child goes on.
        card_number = dict(events[0], card_id="4111111111111111", transaction_id="tx-pan")
        with pytest.raises(ValidationError) as raised:
            process.process([*events[start : start + 70], card_number])
        assert raised.value.field == "card_id"

        # The child dies between calls: the next batch starts a new one.
        child = process._process.pid
        os.kill(child, signal.SIGKILL)
        process._process.join(5)
        batch = events[start : start + 100]
        start += 100
        np.testing.assert_array_equal(process.process(batch).matrix, direct.process(batch).matrix)
        assert process._process.pid != child
        # The child dies with a batch in hand: the worker's own store runs that batch.
        os.kill(process._process.pid, signal.SIGKILL)
        process._process.join(5)
        process._process.is_alive = lambda: True  # as if it died after the check
        local_calls.clear()
        batch = events[start : start + 100]
        np.testing.assert_array_equal(process.process(batch).matrix, direct.process(batch).matrix)
        assert local_calls == [100]
    finally:
        process.close()
        direct.clear()
        for key in redis_client.scan_iter(f"{ours.redis_prefix}:*", count=1000):
            redis_client.delete(key)


def test_a_redis_failure_in_the_store_process_is_a_redis_error(
    unique_name: Callable[[str], str],
) -> None:
    from tests.support.processes import free_port

    nowhere = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_prefix=unique_name("x")
    )
    process = StoreProcess(nowhere, redis_feature_store(nowhere))
    try:
        events = history_events(synthetic_history(100, days=1, seed=1))
        with pytest.raises(redis.RedisError):
            process.process(events)
        with pytest.raises(redis.RedisError):
            process.apply_labels_checked(
                [
                    {
                        "transaction_id": "tx-1",
                        "label": "fraud",
                        "labelled_at": "2030-01-01T00:00:00Z",
                    }
                ]
            )
    finally:
        process.close()
    assert process._process is None  # closed: no child left
