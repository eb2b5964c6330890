"""`fraud monitor` on the real broker, with the drift reference read from a real MLflow store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from fraud.settings import Settings
from stream.kafka_io import make_producer
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

REFERENCE = {
    "edges_from": "validation",
    "score": {"bin_edges": [0.0, 0.5, 1.0], "validation": [0.9, 0.1], "test": [0.5, 0.5]},
    "features": {
        "amount": {
            "kind": "numeric",
            "bin_edges": [0.0, 100.0, 1000.0],
            "validation": [0.5, 0.5],
            "test": [0.5, 0.5],
            "missing_share": {"validation": 0.0, "test": 0.0},
        }
    },
}


def register_version_with_reference(state_dir: Path) -> str:
    """A registered `fraud-detector` version whose run carries reference_distribution.json."""
    from stream.scoring import open_store
    from training.governance import ensure_experiment

    settings = Settings(state_dir=state_dir)
    client = open_store(settings)
    experiment = ensure_experiment(client, "monitor-test", settings)
    run = client.create_run(experiment)
    path = state_dir / "reference_distribution.json"
    path.write_text(json.dumps(REFERENCE))
    client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    client.create_registered_model(settings.model_name)
    version = client.create_model_version(
        settings.model_name, f"runs:/{run.info.run_id}/model", run.info.run_id
    )
    return str(version.version)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_one_shot_report_joins_labels_and_measures_drift(
    stack: Stack, topic_factory: Callable[..., str], tmp_path, monkeypatch
):
    # MLflow exports the URI of the last store a test opened; this test wants its own store.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    version = register_version_with_reference(tmp_path / "state")
    decisions, feedback = topic_factory("mon-decisions"), topic_factory("mon-feedback")
    producer = make_producer(stack.kafka)
    now = time.time()
    rows = [(f"d{i}", "decline", 0.97) for i in range(10)] + [
        (f"a{i}", "approve", 0.02) for i in range(10)
    ]
    for tx, tier, score in rows:
        record = {
            "transaction_id": tx,
            "card_id": "tok_0123456789",
            "event_time": _iso(now - 1),
            "decided_at": _iso(now),
            "score": score,
            "decision": tier,
            "thresholds": {"review": 0.5, "decline": 0.9},
            "model": {"name": "fraud-detector", "version": version, "alias": "champion"},
            "features": {"amount": 20.0 if tier == "approve" else 500.0},
            "reason_codes": [],
            "latency_ms": 3.0,
            "degraded": False,
        }
        producer.produce(decisions, orjson.dumps(record), tx.encode())
    labels = [("d0", "legit", "analyst"), ("d1", "fraud", "analyst"), ("a0", "fraud", "chargeback")]
    for tx, label, source in labels:
        body = {
            "transaction_id": tx,
            "label": label,
            "analyst_id": "a-7",
            "labelled_at": _iso(now),
            "source": source,
        }
        producer.produce(feedback, orjson.dumps(body), tx.encode())
    producer.produce(feedback, b"{not json", b"x")  # counted as invalid, not fatal
    assert producer.flush(10) == 0

    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "FRAUD_STATE_DIR": str(tmp_path / "state"),
        "FRAUD_TOPIC_DECISIONS": decisions,
        "FRAUD_TOPIC_FEEDBACK": feedback,
    }.items():
        monkeypatch.setenv(name, value)
    from fraud.cli.main import _register_commands, app

    _register_commands()
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "--json", "--min-drift", "5", "--lookback-days", "1"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)
    assert report["model_version"] == version
    assert report["precision_decline"] == 0.5  # d1 fraud, d0 legit
    assert report["recall"] == 0.5  # d1 flagged, a0 (chargeback) missed
    assert report["labels"]["approve/fraud"] == 1
    assert report["has_reference"] is True and report["drift_decisions"] == 20
    # Validation had 90% of scores below 0.5, live half: -0.4 ln(5/9) + 0.4 ln(5) = 0.879.
    assert report["psi"]["score"] == pytest.approx(0.4 * 1.6094379 + 0.4 * 0.5877867, abs=1e-4)
    assert report["psi"]["amount"] == pytest.approx(0.0, abs=1e-9)  # half below 100, as trained

    test_period = runner.invoke(
        app, ["monitor", "--json", "--min-drift", "5", "--reference-period", "test"]
    )
    assert json.loads(test_period.output)[0]["psi"]["score"] == pytest.approx(0.0, abs=1e-9)
