"""`fraud warm-store`: the online store loaded from the history, through the stream's own code.

After warming, a card active in the history carries its past into live scoring (exactly the
aggregates the replay gives training), the history's frauds are labels, and a second run changes
nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from fraud.settings import Settings
from stream.features import (
    InMemoryFeatureStore,
    RedisFeatureStore,
    history_events,
    history_labels,
    warm_store,
)
from tests.integration.test_worker_failover import _state
from training.data import read_history

pytestmark = pytest.mark.integration

DAYS = 10


def test_warm_store_loads_the_last_days_once_and_matches_an_in_memory_replay(
    champion, stack, redis_client, unique_name
):
    path = champion.history / "transactions.parquet"
    settings = Settings(redis_url=stack.redis_url, redis_prefix=unique_name("warm"))
    delay = timedelta(days=settings.label_delay_days)
    store = RedisFeatureStore(redis_client, settings.redis_prefix, label_delay=delay)
    history = read_history(path)
    window = history[history["timestamp"] > history["timestamp"].max() - pd.Timedelta(days=DAYS)]
    window = window.sort_values(["timestamp", "transaction_id"], kind="stable")
    try:
        report = warm_store(settings, history, DAYS, batch=500)
        assert report.transactions == len(window)
        assert report.labels == int(window["is_fraud"].sum()) > 0
        state = _state(redis_client, store)
        again = warm_store(settings, history, DAYS, batch=500)
        assert again.transactions == len(window)
        assert _state(redis_client, store) == state, "a second run changed the store"

        # The next transaction of the busiest card: the warmed store and an in-memory store fed
        # the same events and labels give the same features, and they show the card's past.
        card = window["card_id"].value_counts().index[0]
        last = window[window["card_id"] == card].iloc[-1]
        probe = history_events(window[window["card_id"] == card].tail(1))[0]
        probe["transaction_id"] = "probe-after-warm"
        probe["timestamp"] = (last["timestamp"] + pd.Timedelta(hours=2)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        memory = InMemoryFeatureStore(label_delay=delay)
        memory.process_batch(history_events(window))
        memory.apply_labels(history_labels(window, delay))
        expected = memory.process_batch([probe])[0]
        warmed = store.process_batch([probe])[0]
        assert warmed == expected
        assert warmed["card_count_30d"] is not None and warmed["card_count_30d"] > 0
    finally:
        store.clear()
