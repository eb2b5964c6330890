"""`fraud retrain` against the real broker and a private copy of the champion's registry: it
refuses thin or missing input with a message and a non-zero exit, registering nothing, and a
worse challenger is registered but refused by the gates, the champion untouched."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
import pytest

from fraud.settings import KafkaConnection
from stream.feedback import build_label
from stream.kafka_io import make_producer
from tests.integration.conftest import Champion
from tests.support.processes import fraud_command, free_port
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.integration


def iso(moment: pd.Timestamp) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def registry_state(champion: Champion) -> tuple[str | None, list[str]]:
    """(version at @champion, every registered version)."""
    from stream.scoring import open_store, version_at_alias

    settings = champion.settings()
    client = open_store(settings)
    at = version_at_alias(client, settings.model_name, "champion")
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    return (None if at is None else str(at.version)), sorted(str(v.version) for v in versions)


@pytest.fixture
def retrain(
    stack: Stack, private_champion: Champion, topic_factory: Callable[..., str]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    topics = {kind: topic_factory(kind) for kind in ("feedback", "decisions")}

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            **private_champion.env(),
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "FRAUD_TOPIC_FEEDBACK": topics["feedback"],
            "FRAUD_TOPIC_DECISIONS": topics["decisions"],
            **(env or {}),
        }
        command = fraud_command(
            "retrain",
            "--data",
            str(private_champion.history / "transactions.parquet"),
            "--model-card",
            str(private_champion.state_dir / "card.md"),
            "--results-dir",
            str(private_champion.state_dir / "retrain"),
            *args,
        )
        return subprocess.run(
            command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600
        )

    run.topics = topics  # type: ignore[attr-defined]
    return run


def a_decision(transaction_id: str, event_time: pd.Timestamp, features: dict[str, Any]) -> dict:
    return {
        "transaction_id": transaction_id,
        "card_id": "card-00001",
        "event_time": iso(event_time),
        "decided_at": iso(event_time + pd.Timedelta(milliseconds=5)),
        "score": 0.5,
        "decision": "review",
        "thresholds": {"review": 0.4, "decline": 0.9},
        "model": {"name": "fraud-detector", "version": "1", "alias": "champion"},
        "features": features,
        "reason_codes": [],
        "latency_ms": 5.0,
        "degraded": False,
    }


def publish(bootstrap: str, topic: str, records: list[tuple[str, dict]]) -> None:
    producer = make_producer(KafkaConnection(bootstrap))
    for key, value in records:
        producer.produce(topic, orjson.dumps(value), key.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def test_no_feedback_yet_exits_2_and_registers_nothing(retrain, private_champion) -> None:
    before = registry_state(private_champion)
    result = retrain()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no feedback yet on '" + retrain.topics["feedback"] in result.stderr
    assert registry_state(private_champion) == before


def test_too_few_labels_exits_2_and_registers_nothing(stack, retrain, private_champion) -> None:
    old = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)
    decisions = [(f"tx-{i}", a_decision(f"tx-{i}", old, {"amount": 10.0})) for i in range(8)]
    labels = [
        (
            f"tx-{i}",
            build_label(
                f"tx-{i}", "fraud" if i < 3 else "legit", "ann", labelled_at=datetime.now(UTC)
            ),
        )
        for i in range(8)
    ]
    publish(stack.bootstrap, retrain.topics["decisions"], decisions)
    publish(stack.bootstrap, retrain.topics["feedback"], labels)
    before = registry_state(private_champion)

    result = retrain("--label-delay-seconds", "60", "--min-labels", "20")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "too few labels: 8 usable from 8 feedback records" in " ".join(result.stderr.split())
    assert registry_state(private_champion) == before


def test_unreachable_services_exit_2_quickly_and_register_nothing(
    retrain, private_champion
) -> None:
    before = registry_state(private_champion)
    started = time.monotonic()
    no_broker = retrain(env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    no_registry = retrain(env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    assert time.monotonic() - started < 120  # not the clients' minutes of retries
    assert no_broker.returncode == 2 and "no Kafka broker reachable" in no_broker.stderr
    assert no_registry.returncode == 2
    assert "MLflow tracking server" in no_registry.stderr and "not reachable" in no_registry.stderr
    assert registry_state(private_champion) == before


def test_a_worse_challenger_is_registered_refused_and_the_champion_stays(
    stack, retrain, private_champion
) -> None:
    """Analysts who got the older labels backwards: the challenger learns the inverse of fraud
    and loses to the champion on the recent labelled window, which was labelled correctly."""
    from stream.scoring import open_store
    from training.governance import read_test_window

    settings = private_champion.settings()
    client = open_store(settings)
    version = client.get_model_version(settings.model_name, private_champion.version)
    window = read_test_window(client, version.run_id).sort_values("timestamp")
    features = [name for name in orjson.loads(version.tags["model.feature_names"])]
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=2)
    cut = int(len(window) * 0.7)
    decisions, labels = [], []
    for position, row in enumerate(window.itertuples(index=False)):
        tid = f"tx-worse-{position:05d}"
        vector = {
            name: (None if pd.isna(v) else float(v))
            for name, v in zip(features, (getattr(row, n) for n in features), strict=True)
        }
        decisions.append((tid, a_decision(tid, start + pd.Timedelta(seconds=position), vector)))
        truth = bool(row.is_fraud)
        said = truth if position >= cut else not truth
        labels.append(
            (
                tid,
                build_label(
                    tid, "fraud" if said else "legit", "ann", labelled_at=datetime.now(UTC)
                ),
            )
        )
    publish(stack.bootstrap, retrain.topics["decisions"], decisions)
    publish(stack.bootstrap, retrain.topics["feedback"], labels)
    champion_before, versions_before = registry_state(private_champion)

    result = retrain("--label-delay-seconds", "1", "--no-presume-legit", "--param", "max_iter=100")

    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output[-3000:]
    assert "gate recent_window: FAIL" in output
    assert f"@champion stays at v{champion_before}" in output
    champion_after, versions_after = registry_state(private_champion)
    assert champion_after == champion_before
    (new,) = set(versions_after) - set(versions_before)
    tags = client.get_model_version(settings.model_name, new).tags
    assert tags["promotion.status"] == "refused"
    gates = {gate["name"]: gate["passed"] for gate in orjson.loads(tags["promotion.gates"])}
    assert gates["recent_window"] is False
    assert float(tags["retrain.recent_average_precision"]) < float(
        tags["retrain.recent_champion_average_precision"]
    )
    # Credibly worse, not a coin flip: the 95% upper bound of the difference is below 0.
    assert float(tags["retrain.recent_ap_confidence"]) == 0.95
    assert float(tags["retrain.recent_tolerance"]) == 0.0
    assert float(tags["retrain.recent_ap_difference"]) < float(
        tags["retrain.recent_ap_difference_upper"]
    )
    assert float(tags["retrain.recent_ap_difference_upper"]) < 0
    assert int(tags["retrain.labels"]) == len(window)
    assert tags["retrain.feedback_topic"] == retrain.topics["feedback"]
    alias = client.get_model_version_by_alias(settings.model_name, "challenger")
    assert str(alias.version) == new
