"""Model monitoring, pure: live precision and recall from labels joined to decisions, plus drift.

Analysts label alerts (review/decline) and chargebacks label frauds that were approved; both
arrive on `feedback`, keyed by transaction id, usually days after the decision. `LabelJoin` keeps
recent decisions by transaction id and counts, per model version, labelled decisions by
(decision, label). From those counts:

- precision of declines = frauds among labelled declines (target >= 0.95),
- precision of flagged = frauds among labelled reviews + declines,
- recall = labelled frauds that were flagged / all labelled frauds (chargebacks included).

These are estimates over what has been labelled, not over all traffic: most approvals are never
labelled, so precision of approvals is not measured here. Each version's counts are exported
alongside the ratios so a reader can see how many labels stand behind them.

Memory is bounded: flagged and approved decisions are kept in separate stores with their own
caps (flagged ones are few and each matters for precision), and entries older than `window_s`
are dropped. A label whose decision is not (or no longer) held waits in a bounded pending store
and, if it never matches, counts as unmatched.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fraud.times import epoch_seconds
from stream.monitoring.drift import DriftReference, DriftWindow

DECISIONS = ("approve", "review", "decline")
FLAGGED = ("review", "decline")
LABELS = ("fraud", "legit")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class Quality:
    """Labelled decisions of one model version, counted by (decision, label)."""

    counts: dict[tuple[str, str], int] = field(
        default_factory=lambda: {(d, label): 0 for d in DECISIONS for label in LABELS}
    )

    def count(self, decisions: tuple[str, ...], label: str) -> int:
        return sum(self.counts[(d, label)] for d in decisions)

    @property
    def labelled(self) -> int:
        return sum(self.counts.values())

    @property
    def precision_decline(self) -> float | None:
        frauds = self.count(("decline",), "fraud")
        return _ratio(frauds, frauds + self.count(("decline",), "legit"))

    @property
    def precision_flagged(self) -> float | None:
        frauds = self.count(FLAGGED, "fraud")
        return _ratio(frauds, frauds + self.count(FLAGGED, "legit"))

    @property
    def recall(self) -> float | None:
        return _ratio(self.count(FLAGGED, "fraud"), self.count(DECISIONS, "fraud"))


@dataclass
class _Held:
    version: str
    decision: str
    decided_at: float
    label: str | None = None
    source: str | None = None


def _supersedes(new_source: str, old_source: str | None) -> bool:
    """A later label replaces an earlier one, but an analyst never overrules a chargeback."""
    return not (old_source == "chargeback" and new_source == "analyst")


class LabelJoin:
    def __init__(
        self,
        window_s: float | None = 8 * 86400.0,
        max_flagged: int = 500_000,
        max_approved: int = 1_000_000,
        max_pending_labels: int = 200_000,
    ) -> None:
        self.window_s = window_s
        self._caps = {"flagged": max_flagged, "approved": max_approved}
        self._stores: dict[str, OrderedDict[str, _Held]] = {
            "flagged": OrderedDict(),
            "approved": OrderedDict(),
        }
        self.pending: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.max_pending_labels = max_pending_labels
        self.quality: dict[str, Quality] = {}
        self.unmatched_labels = 0

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores.values())

    def _store_of(self, decision: str) -> OrderedDict[str, _Held]:
        return self._stores["flagged" if decision in FLAGGED else "approved"]

    def _find(self, transaction_id: str) -> tuple[OrderedDict[str, _Held], _Held] | None:
        for store in self._stores.values():
            held = store.get(transaction_id)
            if held is not None:
                return store, held
        return None

    def _count(self, held: _Held, delta: int) -> None:
        if held.label is not None:
            quality = self.quality.setdefault(held.version, Quality())
            quality.counts[(held.decision, held.label)] += delta

    def add_decision(
        self, transaction_id: str, version: str, decision: str, decided_at: float
    ) -> None:
        """Hold a decision; a repeat for the same transaction (a re-delivery) replaces it."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}; expected one of {DECISIONS}")
        held = _Held(version, decision, decided_at)
        found = self._find(transaction_id)
        if found is not None:
            store, previous = found
            self._count(previous, -1)
            del store[transaction_id]
            held.label, held.source = previous.label, previous.source
        elif transaction_id in self.pending:
            held.label, held.source = self.pending.pop(transaction_id)
        store = self._store_of(decision)
        store[transaction_id] = held
        self._count(held, +1)
        cap = self._caps["flagged" if decision in FLAGGED else "approved"]
        while len(store) > cap:
            self._drop(store)

    def add_label(self, transaction_id: str, label: str, source: str) -> None:
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
        found = self._find(transaction_id)
        if found is None:
            previous = self.pending.get(transaction_id)
            if previous is None or _supersedes(source, previous[1]):
                self.pending[transaction_id] = (label, source)
                self.pending.move_to_end(transaction_id)
            while len(self.pending) > self.max_pending_labels:
                self.pending.popitem(last=False)
                self.unmatched_labels += 1
            return
        _, held = found
        if held.label is not None and not _supersedes(source, held.source):
            return
        self._count(held, -1)
        held.label, held.source = label, source
        self._count(held, +1)

    def _drop(self, store: OrderedDict[str, _Held]) -> None:
        _, held = store.popitem(last=False)
        self._count(held, -1)
        quality = self.quality.get(held.version)
        if quality is not None and quality.labelled == 0:
            del self.quality[held.version]

    def expire(self, now: float) -> None:
        """Forget decisions older than the window (arrival order is close to decision order)."""
        if self.window_s is None:
            return
        horizon = now - self.window_s
        for store in self._stores.values():
            while store and next(iter(store.values())).decided_at < horizon:
                self._drop(store)


@dataclass(frozen=True)
class VersionHealth:
    """What the monitor exports for one model version."""

    version: str
    quality: Quality
    psi: dict[str, float]
    drift_decisions: int
    has_reference: bool


class ModelMonitor:
    """Decisions and feedback in, per-version precision/recall and PSI out. No I/O.

    Drift needs the version's training reference; the edge supplies it with `set_reference`
    when `wanted_references()` names a version it has not seen yet.
    """

    def __init__(
        self,
        join: LabelJoin | None = None,
        drift_window: int = 5000,
        min_drift_decisions: int = 500,
    ) -> None:
        self.join = join if join is not None else LabelJoin()
        self.drift_window = drift_window
        self.min_drift_decisions = min_drift_decisions
        self.drift: dict[str, DriftWindow] = {}
        # Decisions of versions whose reference is still being looked up, replayed into the
        # drift window once it arrives (the lookback read on start would otherwise be lost).
        self.unbinned: dict[str, deque[tuple[float, Mapping[str, Any]]]] = {}
        self.references: dict[str, DriftReference | None] = {}
        self.models: dict[str, str] = {}  # version -> model name, for reference look-ups
        self.last_decision_at: dict[str, float] = {}

    def add_decision(self, decision: Mapping[str, Any]) -> None:
        """A record of the `decisions` topic (already validated against its schema)."""
        model = decision["model"]
        version = str(model["version"])
        decided_at = epoch_seconds(decision["decided_at"])
        self.models.setdefault(version, str(model["name"]))
        self.last_decision_at[version] = max(decided_at, self.last_decision_at.get(version, 0.0))
        self.join.add_decision(
            decision["transaction_id"], version, decision["decision"], decided_at
        )
        row = (decision["score"], decision.get("features") or {})
        window = self.drift.get(version)
        if window is not None:
            window.add(*row)
        elif version not in self.references:
            self.unbinned.setdefault(version, deque(maxlen=self.drift_window)).append(row)

    def add_feedback(self, feedback: Mapping[str, Any]) -> None:
        """A record of the `feedback` topic (already validated against its schema)."""
        self.join.add_label(feedback["transaction_id"], feedback["label"], feedback["source"])

    def wanted_references(self) -> list[tuple[str, str]]:
        """(model name, version) pairs whose reference has not been supplied yet."""
        return [(self.models[v], v) for v in self.models if v not in self.references]

    def set_reference(self, version: str, reference: DriftReference | None) -> None:
        """Supply a version's reference; None records that it has none (no drift for it)."""
        self.references[version] = reference
        waiting = self.unbinned.pop(version, ())
        if reference is not None:
            window = self.drift[version] = DriftWindow(reference, self.drift_window)
            for row in waiting:
                window.add(*row)

    def forget_reference(self, version: str) -> None:
        """Ask for a version's reference again (after a failed look-up)."""
        self.references.pop(version, None)

    def expire(self, now: float) -> None:
        self.join.expire(now)
        if self.join.window_s is None:
            return
        for version, last in list(self.last_decision_at.items()):
            if last < now - self.join.window_s:
                for table in (
                    self.last_decision_at,
                    self.drift,
                    self.references,
                    self.models,
                    self.unbinned,
                ):
                    table.pop(version, None)

    def snapshot(self) -> list[VersionHealth]:
        versions = sorted(set(self.join.quality) | set(self.models), key=_version_order)
        health = []
        for version in versions:
            window = self.drift.get(version)
            enough = window is not None and len(window) >= self.min_drift_decisions
            health.append(
                VersionHealth(
                    version=version,
                    quality=self.join.quality.get(version, Quality()),
                    psi=window.psi() if enough and window is not None else {},
                    drift_decisions=len(window) if window is not None else 0,
                    has_reference=window is not None,
                )
            )
        return health


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
