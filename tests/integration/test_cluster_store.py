"""The feature store on a Redis Cluster: the same code as on one Redis, the same features.

The same event stream (with labels) gives identical feature values on a single Redis, on the
Redis Cluster of the clustered stack, and from the offline replay training uses; a zombie's
stale write is refused there too; and the store's keys spread over the three primaries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import redis

from bench.chaos import ClusterStack
from bench.features import history_events, synthetic_history
from fraud.settings import Settings
from stream.features import FEATURE_NAMES, RedisFeatureStore, StaleStateError
from stream.features.warm import history_labels
from stream.redis_io import connect_redis
from training.data import replay_features

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELAY = timedelta(days=7)


def _cluster_client(cluster: ClusterStack) -> Any:
    return connect_redis(Settings(redis_url=cluster.redis_url, redis_cluster=True))


def _run(store: RedisFeatureStore, events: list[dict], labels: list[dict]) -> list[dict]:
    """Batches of up to 250 in time order; a label is applied as soon as it is known, before
    the first event at or after its labelled_at (as the replay assumes)."""
    rows: list[dict] = []
    pending = sorted(labels, key=lambda label: label["labelled_at"])
    batch: list[dict] = []
    for event in events:
        due = [label for label in pending if label["labelled_at"] <= event["timestamp"]]
        if due or len(batch) == 250:
            rows += store.process_batch(batch) if batch else []
            batch = []
        if due:
            store.apply_labels(due)
            pending = pending[len(due) :]
        batch.append(event)
    return rows + (store.process_batch(batch) if batch else [])


def test_single_redis_cluster_and_replay_give_the_same_features(
    cluster: ClusterStack, redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    history = synthetic_history(3000, days=20, seed=8)
    events = history_events(history)
    labels = history_labels(history, DELAY)
    assert labels, "the history needs frauds for the label-based features"
    on_cluster = RedisFeatureStore(
        _cluster_client(cluster), unique_name("parity"), label_delay=DELAY
    )
    single = RedisFeatureStore(redis_client, unique_name("parity"), label_delay=DELAY)
    try:
        clustered_rows = _run(on_cluster, events, labels)
        single_rows = _run(single, events, labels)
        assert clustered_rows == single_rows
        replayed = replay_features(history, label_delay=DELAY)
        for name in FEATURE_NAMES:
            column = np.array([row[name] for row in clustered_rows], dtype=float)
            np.testing.assert_allclose(column, replayed[name].to_numpy(float), err_msg=name)
        # The keys are spread over the three primaries (one slot per shard).
        keys_per_node = {}
        for port, role in cluster.redis_roles().items():
            if role == "master":
                with redis.Redis(port=port) as node:
                    keys_per_node[port] = sum(
                        1 for _ in node.scan_iter(match=f"{on_cluster.key_prefix}*", count=1000)
                    )
        assert len(keys_per_node) == 3 and min(keys_per_node.values()) > 0, keys_per_node
    finally:
        on_cluster.clear()
        single.clear()


def test_a_zombie_write_is_refused_on_the_cluster(
    cluster: ClusterStack, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("zombie")
    zombie = RedisFeatureStore(_cluster_client(cluster), prefix, label_delay=DELAY)
    owner = RedisFeatureStore(_cluster_client(cluster), prefix, label_delay=DELAY)
    events = history_events(synthetic_history(50, days=1, seed=4))
    card = events[0]["card_id"]
    mine = [e for e in events if e["card_id"] == card][:3]
    try:
        owner.process_batch(mine[:1])
        stale = zombie._read  # the zombie reads, then the owner moves the card on
        state_holder: list[Any] = []

        def read(*args: Any) -> Any:
            state = stale(*args)
            if not state_holder:
                state_holder.append(owner.process_batch([mine[1]]))
            return state

        zombie._read = read  # type: ignore[method-assign]
        zombie.max_attempts = 1
        with pytest.raises(StaleStateError) as refused:
            zombie.process_batch([mine[2]])
        assert refused.value.cards == [card]
    finally:
        owner.clear()
