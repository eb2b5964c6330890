"""The worker's model holder refuses a version that fails its integrity check: the current one
keeps deciding, the refusal is logged once and counted for the alert rule."""

from __future__ import annotations

import asyncio
import gc
import logging

import numpy as np

from fraud.errors import ModelIntegrityError
from fraud.settings import Settings
from stream.scoring import ScoringModel, Thresholds
from stream.worker import ModelHolder, ScorerMetrics


def model(version: str) -> ScoringModel:
    return ScoringModel(
        name="fraud-detector",
        version=version,
        alias="champion",
        thresholds=Thresholds(review=0.5, decline=0.9),
        feature_names=("amount",),
        predict_proba=lambda matrix: np.zeros(len(matrix)),
        explain=lambda matrix: [[] for _ in range(len(matrix))],
    )


def test_a_tampered_version_is_refused_counted_once_and_the_current_one_kept(caplog):
    at_alias = {"version": "1"}
    loads: list[str] = []

    def loader(_settings: Settings, _alias: str) -> ScoringModel:
        version = at_alias["version"]
        loads.append(version)
        if version == "2":
            raise ModelIntegrityError("the model artifact differs from what was signed")
        return model(version)

    metrics = ScorerMetrics()
    holder = ModelHolder(Settings(), metrics, loader, lambda _s, _a: at_alias["version"])
    assert holder.load().version == "1"

    at_alias["version"] = "2"
    with caplog.at_level(logging.ERROR):
        assert asyncio.run(holder.refresh()) is False
        assert asyncio.run(holder.refresh()) is False  # not tried again
    assert holder.current is not None and holder.current.version == "1"
    assert loads == ["1", "2"]
    refused = metrics.registry.get_sample_value(
        "fraud_model_refused_total", {"reason": "integrity"}
    )
    assert refused == 1
    assert [r.levelname for r in caplog.records if "version 2" in r.getMessage()] == ["ERROR"]
    assert metrics.registry.get_sample_value("fraud_model_reloads_total") == 0

    at_alias["version"] = "3"  # a good version later swaps in as usual
    try:
        assert asyncio.run(holder.refresh()) is True and holder.current.version == "3"
        # The swap froze the heap again (the old model's cycles collected first): no full
        # collection walks the worker's long-lived objects in the middle of a batch.
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
