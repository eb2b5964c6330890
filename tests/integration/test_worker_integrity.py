"""A running worker whose @champion is moved to a tampered version (a changed model file; an
MLmodel pointing at a payload that would write a file) refuses it, counts it, never runs the
payload, and keeps deciding with the version it had."""

from __future__ import annotations

import httpx
import orjson
import pytest

from stream.scoring import CHAMPION, open_store
from tests.support.tamper import change_model_file, point_mlmodel_at_payload, publish_tampered_copy
from tests.support.worker import produce, scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_worker_refuses_tampered_versions_and_keeps_deciding(
    worker_env, private_champion, consume_raw, tmp_path
):
    worker_env.champion = private_champion
    settings = private_champion.settings()
    good = private_champion.version
    marker = tmp_path / "payload-ran"
    changed = publish_tampered_copy(settings, good, change_model_file)
    payload = publish_tampered_copy(settings, good, point_mlmodel_at_payload(marker))
    refused = 'fraud_model_refused_total{reason="integrity"}'

    with worker_env.worker() as worker:
        before = produce(worker_env, rate=200, seconds=1)
        for count, version in enumerate((changed, payload), start=1):
            open_store(settings).set_registered_model_alias(settings.model_name, CHAMPION, version)
            wait_until(lambda c=count: scrape(worker)[refused] == c, 60, f"v{version} refused")
        after = produce(worker_env, rate=200, seconds=1, seed=6)
        records = consume_raw(worker_env.topics["decisions"], count=before.valid + after.valid)
        health = httpx.get(worker.url("/health")).json()
        log = worker.log()
        assert worker.popen.poll() is None

    decisions = [orjson.loads(record.value) for record in records]
    assert len(decisions) == before.valid + after.valid
    assert {d["model"]["version"] for d in decisions} == {good}
    assert health["ready"] and health["model"]["version"] == good
    assert not marker.exists(), "the payload ran"
    assert f"not swapping @champion to version {changed} (keeping version {good})" in log
    assert "changed: model.skops" in log and "not signed: payload.pkl" in log
