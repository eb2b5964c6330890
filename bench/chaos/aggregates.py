"""The feature state after a chaos run against a clean replay of what was sent.

`replay` admits every record of the transactions topic through the edge (as the worker does)
and feeds the events, in time order, through an InMemoryFeatureStore: the features each
transaction should have had, and the state the live store should hold now.

`compare_state` asks both stores the same questions through the stores' public, read-only path
(`process(..., write=False)`), so it does not depend on how a store lays out its keys: for
every card a probe transaction one second after the last event (its card features count every
transaction of the card still in its windows) and for every terminal one on a fresh card (its
terminal counts, every transaction at the terminal). A count above the replay's is a
transaction counted twice, below it one the store missed. `recorded_features` reads back what
the live store recorded per transaction, to be compared with what the decisions carried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.chaos.verify import same_value
from fraud.settings import Settings
from schemas import validator
from stream.edge import Admitted, PanKey, Source, admit
from stream.features import (
    CARD_FEATURES,
    TERMINAL_WINDOWS,
    FeatureStore,
    InMemoryFeatureStore,
)

Event = dict[str, Any]
Features = dict[str, float | None]
CHUNK = 500  # events per store call: one batch of the worker's size
CARD_COUNT = "card_count_30d"  # the longest card window: counts every transaction of a run
TERMINAL_COUNTS = tuple(f"terminal_count_{window}" for window, _ in TERMINAL_WINDOWS)


def admitted_events(
    records: Iterable[tuple[int, int, float, bytes]], topic: str, settings: Settings
) -> list[Event]:
    """(partition, offset, broker time, value) of the transactions topic -> the admitted events,
    oldest first (one card's events keep their order: one partition, sent in time order)."""
    import orjson

    key = PanKey.from_settings(settings)
    check = validator("transaction")
    rows = sorted(records, key=lambda r: (orjson.loads(r[3])["timestamp"], r[0], r[1]))
    events = []
    for partition, offset, at, value in rows:
        result = admit(value, Source(topic, partition, offset, at), check, key)
        if isinstance(result, Admitted):
            events.append(result.event)
    return events


def replay(events: Sequence[Event], label_delay: timedelta) -> tuple[InMemoryFeatureStore, dict]:
    """The clean store after every event, and each transaction's features from it."""
    store = InMemoryFeatureStore(label_delay=label_delay)
    features: dict[str, Features] = {}
    for start in range(0, len(events), CHUNK):
        chunk = events[start : start + CHUNK]
        for event, values in zip(chunk, store.process_batch(chunk), strict=True):
            features[event["transaction_id"]] = values
    return store, features


def _probe_time(events: Sequence[Event]) -> str:
    last = max(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events)
    moment = (last + timedelta(seconds=1)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def probes(events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
    """One probe per card (its last event, later, under a new id) and one per terminal (its
    last event, later, on a card of its own)."""
    at = _probe_time(events)
    last_of_card: dict[str, Event] = {}
    last_of_terminal: dict[str, Event] = {}
    for event in events:
        last_of_card[event["card_id"]] = event
        last_of_terminal[event["terminal_id"]] = event
    cards = [
        {**event, "transaction_id": f"chaos-probe-c{i}", "timestamp": at}
        for i, event in enumerate(last_of_card.values())
    ]
    terminals = [
        {
            **event,
            "transaction_id": f"chaos-probe-t{i}",
            "card_id": f"chaos-probe-card-{i}",
            "timestamp": at,
        }
        for i, event in enumerate(last_of_terminal.values())
    ]
    return cards, terminals


def _look(store: FeatureStore, events: Sequence[Event]) -> list[Features]:
    looked: list[Features] = []
    for start in range(0, len(events), CHUNK):
        looked += store.process(events[start : start + CHUNK], write=False).features
    return looked


def _count_gap(live: float | None, ideal: float | None) -> float:
    return (live or 0.0) - (ideal or 0.0)


def compare_state(
    live: FeatureStore, ideal: FeatureStore, events: Sequence[Event]
) -> dict[str, Any]:
    """Cards and terminals whose live state differs from the replay's, and by how many
    transactions (double-counted: live counts above the replay; missed: below)."""
    if not events:
        return {"cards": 0, "terminals": 0, "double_counted": 0, "missed": 0}
    card_probes, terminal_probes = probes(events)
    double = missed = 0.0
    cards_differing, examples = 0, []
    for probe, got, want in zip(
        card_probes, _look(live, card_probes), _look(ideal, card_probes), strict=True
    ):
        if not all(same_value(got[name], want[name]) for name in CARD_FEATURES):
            cards_differing += 1
            examples.append({"card_id": probe["card_id"], "live": got, "replay": want})
        gap = _count_gap(got[CARD_COUNT], want[CARD_COUNT])
        double, missed = double + max(gap, 0.0), missed + max(-gap, 0.0)
    terminals_differing = 0
    for probe, got, want in zip(
        terminal_probes, _look(live, terminal_probes), _look(ideal, terminal_probes), strict=True
    ):
        if not all(same_value(got[name], want[name]) for name in TERMINAL_COUNTS):
            terminals_differing += 1
            examples.append({"terminal_id": probe["terminal_id"], "live": got, "replay": want})
        gap = _count_gap(got[TERMINAL_COUNTS[-1]], want[TERMINAL_COUNTS[-1]])
        double, missed = double + max(gap, 0.0), missed + max(-gap, 0.0)
    return {
        "cards": len(card_probes),
        "terminals": len(terminal_probes),
        "cards_differing": cards_differing,
        "terminals_differing": terminals_differing,
        "double_counted": int(double),
        "missed": int(missed),
        "examples": examples[:3],
    }


def recorded_features(live: FeatureStore, events: Sequence[Event]) -> dict[str, Features]:
    """What the live store hands back for each transaction (its record; nothing is written)."""
    return {
        event["transaction_id"]: features
        for event, features in zip(events, _look(live, events), strict=True)
    }


def records_differing(
    recorded: Mapping[str, Features], decided: Mapping[str, Mapping[str, float | None]]
) -> list[str]:
    """Transactions whose recorded features are not those their decision carried."""
    return sorted(
        tx
        for tx, features in decided.items()
        if tx not in recorded
        or not all(same_value(v, recorded[tx].get(k)) for k, v in features.items())
    )
