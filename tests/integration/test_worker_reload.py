"""Hot reload: @champion moves to another version while traffic flows; the worker swaps to it
without a restart, and every transaction is decided exactly once, by one version or the other."""

from __future__ import annotations

from collections import Counter

import httpx
import orjson
import pytest

from tests.integration.conftest import Champion
from tests.support.worker import BackgroundTraffic, scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _register_again(champion: Champion, signed: bool = True) -> str:
    """The champion's artifact registered as a new version (same model, thresholds, features,
    and with `signed` the same signature, which covers exactly these)."""
    from stream.scoring import open_store

    settings = champion.settings()
    client = open_store(settings)
    current = client.get_model_version(settings.model_name, champion.version)
    dropped = ("promotion.",) if signed else ("promotion.", "integrity.")
    tags = {k: v for k, v in current.tags.items() if not k.startswith(dropped)}
    again = client.create_model_version(
        settings.model_name,
        current.source,
        run_id=current.run_id,
        tags=tags,
        description=f"v{current.version} registered again for a hot-reload test",
        model_id=current.model_id,
    )
    return str(again.version)


def _move_champion(champion: Champion, version: str) -> None:
    """What a forced `fraud promote` ends with, minus its gate checks (they score the whole
    test window with both models: tens of seconds on a busy two-core machine)."""
    from stream.scoring import CHAMPION, open_store

    settings = champion.settings()
    open_store(settings).set_registered_model_alias(settings.model_name, CHAMPION, version)


def test_champion_swap_under_traffic_decides_every_transaction_once(
    worker_env, private_champion, consume_raw
):
    worker_env.champion = private_champion
    version_a = private_champion.version
    version_b = _register_again(private_champion)
    assert version_b != version_a

    with worker_env.worker() as worker, BackgroundTraffic(worker_env, rate=300) as traffic:
        decided = lambda: scrape(worker)['fraud_transactions_total{outcome="decided"}']  # noqa: E731
        wait_until(lambda: decided() >= 300, 60, "300 decisions by the first version")
        _move_champion(private_champion, version_b)
        wait_until(
            lambda: httpx.get(worker.url("/health")).json()["model"]["version"] == version_b,
            30,
            f"worker serving v{version_b}",
        )
        at_swap = decided()
        wait_until(lambda: decided() >= at_swap + 300, 60, "300 decisions after the swap")
        assert traffic.running, "traffic must flow across the swap"
        report = traffic.stop()
        records = consume_raw(worker_env.topics["decisions"], count=report.valid)
        metrics = scrape(worker)
        assert worker.popen.poll() is None  # swapped in place, never restarted

    decisions = [orjson.loads(record.value) for record in records]
    per_id = Counter(d["transaction_id"] for d in decisions)
    assert len(per_id) == report.valid == report.sent
    assert max(per_id.values()) == 1, "a transaction was decided twice"
    times = {version_a: [], version_b: []}
    for decision in decisions:
        times[decision["model"]["version"]].append(decision["decided_at"])
    assert len(times[version_a]) >= 300 and len(times[version_b]) >= 300, {
        v: len(t) for v, t in times.items()
    }
    # A batch takes the model once: every decision of A precedes every decision of B.
    assert max(times[version_a]) < min(times[version_b])
    assert metrics["fraud_model_reloads_total"] == 1
    assert (
        metrics[f'fraud_model_info{{alias="champion",name="fraud-detector",version="{version_b}"}}']
        == 1
    )
    assert f"model swapped: {version_a} -> {version_b}" in worker.log()


def test_a_version_needing_features_the_stream_lacks_is_refused(private_champion, caplog):
    """A model trained on another feature definition would be fed missing values: the worker
    keeps its current version (and says why, once); a fresh start refuses it outright."""
    import asyncio
    import json

    from fraud.errors import ModelNotFoundError
    from stream.scoring import open_store
    from stream.worker import ModelHolder, ScorerMetrics
    from training.governance import sign_version

    settings = private_champion.settings()
    holder = ModelHolder(settings, ScorerMetrics())
    assert holder.load().version == private_champion.version
    client = open_store(settings)
    # Signed like any version training registers (the key holder trained it on an older
    # feature definition): refused for its features, not for its integrity.
    stale = _register_again(private_champion, signed=False)
    names = json.loads(
        client.get_model_version(settings.model_name, stale).tags["model.feature_names"]
    )
    client.set_model_version_tag(
        settings.model_name, stale, "model.feature_names", json.dumps([*names[:-1], "card_risk_v0"])
    )
    sign_version(settings, client, settings.model_name, stale)
    _move_champion(private_champion, stale)

    assert asyncio.run(holder.refresh()) is False
    assert asyncio.run(holder.refresh()) is False
    assert holder.current is not None and holder.current.version == private_champion.version
    refusals = [r for r in caplog.records if "card_risk_v0" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelname == "ERROR"
    with pytest.raises(ModelNotFoundError, match="card_risk_v0"):
        ModelHolder(settings, ScorerMetrics()).load()

    fixed = _register_again(private_champion)
    _move_champion(private_champion, fixed)
    assert asyncio.run(holder.refresh()) is True and holder.current.version == fixed
