"""An in-memory test kit for the worker's batch path: no broker, no Redis, no registry.

    producer = MemoryProducer()
    handler = BatchHandler(settings, InMemoryFeatureStore(), holding(fixed_model()), producer,
                           ScorerMetrics())
    await handler.handle([RawMessage(value, Source("transactions", 0, offset))])
    producer.values("decisions")          # the decoded records written to a topic

`fixed_model` scores with a plain rule over the features (no trained model), so a test knows
each transaction's tier in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from fraud.settings import Settings
from stream.features import FEATURE_NAMES
from stream.scoring import ScoringModel, Thresholds
from stream.worker.metrics import ScorerMetrics
from stream.worker.models import ModelHolder

Record = tuple[str, bytes | None, bytes]


@dataclass
class MemoryProducer:
    """`BatchProducer.deliver` into a list: every batch's records, in order."""

    records: list[Record] = field(default_factory=list)
    batches: int = 0

    async def deliver(self, records: list[Record]) -> None:
        self.records.extend(records)
        self.batches += 1

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(value) for name, _key, value in self.records if name == topic]

    def close(self) -> None:
        pass


def fixed_model(
    score: Callable[[Mapping[str, float | None]], float] | None = None,
    thresholds: Thresholds = Thresholds(review=0.5, decline=0.9),
    version: str = "1",
) -> ScoringModel:
    """A ScoringModel over every stream feature whose score is `score(features)` (default:
    the amount over 1,000, capped at 1); reason codes name the largest feature."""
    names = tuple(FEATURE_NAMES)

    def default(features: Mapping[str, float | None]) -> float:
        amount = features.get("amount") or 0.0
        return min(1.0, float(amount) / 1000.0)

    rule = score or default

    def predict_proba(matrix: np.ndarray) -> np.ndarray:
        rows = [dict(zip(names, row, strict=True)) for row in matrix.tolist()]
        return np.array([rule({k: (None if v != v else v) for k, v in r.items()}) for r in rows])

    def explain(matrix: np.ndarray) -> list[list[dict[str, Any]]]:
        reasons = []
        for row in np.nan_to_num(matrix):
            column = int(np.argmax(row))
            reasons.append(
                [{"feature": names[column], "value": float(row[column]), "contribution": 1.0}]
            )
        return reasons

    return ScoringModel(
        name="fraud-detector",
        version=version,
        alias="champion",
        thresholds=thresholds,
        feature_names=names,
        predict_proba=predict_proba,
        explain=explain,
    )


def holding(model: ScoringModel, settings: Settings | None = None) -> ModelHolder:
    """A ModelHolder already serving `model` (its loader and probe never touch a registry)."""
    holder = ModelHolder(
        settings or Settings(),
        ScorerMetrics(),
        loader=lambda _settings, _alias: model,
        probe=lambda _settings, _alias: model.version,
    )
    holder.load()
    return holder


def raw_events(events: Sequence[Mapping[str, Any]]) -> list[bytes]:
    return [orjson.dumps(dict(event)) for event in events]
