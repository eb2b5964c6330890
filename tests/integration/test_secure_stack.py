"""The secured stack end to end (`SECURE=1 ops/services.sh up`, private folder and ports): Kafka
over SASL_SSL with ACLs per role, Redis over TLS with ACL users, MLflow with basic auth, every
process in production mode. The whole worker path decides traffic there; clients without
credentials, or with another role's, are refused."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fraud.errors import ServiceUnavailableError
from fraud.settings import KafkaConnection, Settings
from fraud.times import iso_utc, parse_utc
from simulator.bank import Bank
from simulator.live import LiveTraffic
from simulator.produce import produce_live
from stream.feedback import scan_topic
from stream.kafka_io import make_producer, require_broker
from tests.integration.conftest import Champion
from tests.support.processes import fraud_command, free_port, running, wait_healthy
from tests.support.secure import SecureStack, secure_stack
from tests.support.stack import ROOT
from tests.support.worker import scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "fraud-detector"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("secure")) as stack:
        yield stack


def register_on_server(stack: SecureStack, source: Settings, version: str) -> str:
    """What training does on the secured registry, as the trainer: the champion's files and
    deciding tags registered as a version, signed with the stack's signing key, @champion."""
    from stream.scoring import CHAMPION, TRAINING_EXPERIMENT, download_version, open_store
    from training.governance import ensure_experiment, sign_version

    original = open_store(source).get_model_version(NAME, version)
    tags = {
        k: v for k, v in original.tags.items() if not k.startswith(("integrity.", "promotion."))
    }
    trainer = stack.settings("trainer")
    credentials = {k: v for k, v in stack.env("trainer").items() if k.startswith("MLFLOW_")}
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        folder = download_version(source, NAME, version, Path(tmp))
        for name, value in credentials.items():
            patch.setenv(name, value)
        client = open_store(trainer)
        experiment = ensure_experiment(client, TRAINING_EXPERIMENT, trainer)
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        logged = client.create_logged_model(
            experiment_id=experiment, name="model", source_run_id=run.info.run_id
        )
        client.log_model_artifacts(logged.model_id, str(folder))
        client.create_registered_model(NAME)
        created = client.create_model_version(
            NAME,
            f"models:/{logged.model_id}",
            run_id=run.info.run_id,
            tags=tags,
            model_id=logged.model_id,
        )
        sign_version(trainer, client, NAME, str(created.version))
        client.set_registered_model_alias(NAME, CHAMPION, str(created.version))
    return str(created.version)


@pytest.fixture(scope="module")
def server_champion(secure: SecureStack, champion: Champion) -> str:
    return register_on_server(secure, champion.settings(), champion.version)


def delivery_error(kafka: KafkaConnection, topic: str) -> Any:
    """Produce one record; the delivery error (None when the broker took it)."""
    errors: list[Any] = []
    producer = make_producer(kafka, {"message.timeout.ms": 15_000})
    producer.produce(topic, b'{"probe": true}', on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    assert len(errors) == 1, "no delivery report"
    return errors[0]


def test_the_full_worker_path_decides_traffic(
    secure: SecureStack, server_champion: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **secure.env("scorer"),
        "FRAUD_STATE_DIR": str(tmp_path / "state"),
        "FRAUD_WEB_PORT": str(port),
        "FRAUD_MODEL_POLL_INTERVAL_S": "1",
    }
    with running(fraud_command("worker"), env, tmp_path / "worker.log", port) as worker:
        health = wait_healthy(worker)
        assert health["model"]["version"] == server_champion
        simulator = secure.settings("simulator")
        report = produce_live(
            simulator.kafka,
            LiveTraffic(Bank.build(400, 7), 7),
            rate=100,
            duration_s=2,
            topic="transactions",
            truth_topic="transactions.truth",
        )
        assert report.delivery_errors == 0 and report.valid > 0
        decided = 'fraud_transactions_total{outcome="decided"}'
        wait_until(lambda: scrape(worker)[decided] >= report.valid, 90, "every event decided")

        # An analyst reads the decisions and labels one; the worker reads the label back.
        analyst = secure.settings("analyst")
        decisions = [orjson.loads(r.value) for r in scan_topic(analyst.kafka, "decisions")]
        assert len(decisions) == report.valid
        assert {d["model"]["version"] for d in decisions} == {server_champion}
        first = decisions[0]
        at = iso_utc(parse_utc(first["event_time"]) + timedelta(hours=1), field="at")
        label = subprocess.run(
            fraud_command(
                "label", first["transaction_id"], "--fraud", "--analyst", "a.smith", "--at", at
            ),
            cwd=ROOT,
            env={**os.environ, **secure.env("analyst")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert label.returncode == 0, label.stderr
        admin = _redis(secure, "admin")
        wait_until(
            lambda: list(admin.scan_iter("fraud:features:*:tlabel:*")), 60, "the label applied"
        )
        assert scrape(worker)['fraud_dead_letters_total{reason="processing_error"}'] == 0
        log = worker.log()

    for secret in ("KAFKA_PASSWORD_SCORER", "REDIS_PASSWORD_SCORER", "FRAUD_PAN_HASH_KEY"):
        assert secure.secret(secret) not in log, f"{secret} appears in the worker's log"


def _redis(stack: SecureStack, role: str, **overrides: object) -> Any:
    from stream.redis_io import connect_redis

    return connect_redis(stack.settings(role, **overrides), socket_timeout=5)


def test_a_client_without_credentials_is_refused(secure: SecureStack) -> None:
    import redis

    bootstrap = f"127.0.0.1:{secure.kafka_port}"
    with pytest.raises(ServiceUnavailableError, match="no Kafka broker answered"):
        require_broker(KafkaConnection(bootstrap), timeout_s=6)
    stranger = secure.settings("scorer", kafka_password="not-the-password").kafka
    with pytest.raises(ServiceUnavailableError, match="refused this client"):
        require_broker(stranger, timeout_s=10)

    anonymous = redis.Redis(
        host="127.0.0.1", port=secure.redis_port, ssl=True, ssl_ca_certs=str(secure.ca_file)
    )
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("fraud:probe", "1")
    with pytest.raises(redis.AuthenticationError):
        _redis(secure, "scorer", redis_password="not-the-password").ping()
    plaintext = redis.Redis(host="127.0.0.1", port=secure.redis_port, socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        plaintext.ping()


def test_each_role_writes_only_its_topics(secure: SecureStack) -> None:
    from confluent_kafka import KafkaError

    producer, analyst = secure.settings("producer"), secure.settings("analyst")
    assert delivery_error(producer.kafka, "transactions") is None  # its own topic
    refused = delivery_error(producer.kafka, "decisions")
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    refused = delivery_error(analyst.kafka, "transactions")
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused


def test_redis_refuses_the_scorer_outside_its_prefix(secure: SecureStack) -> None:
    import redis

    scorer = _redis(secure, "scorer")
    assert scorer.set("fraud:probe", "1") and scorer.get("fraud:probe") == b"1"
    for refused in (
        lambda: scorer.set("other:probe", "1"),
        lambda: scorer.get("session:42"),
        lambda: scorer.flushall(),
        lambda: scorer.config_get("*"),
        lambda: scorer.keys("*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


def test_production_mode_with_a_default_secret_exits_naming_it(
    secure: SecureStack, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FRAUD_PAN_HASH_KEY"}
    env.update({k: v for k, v in secure.env("scorer").items() if k != "FRAUD_PAN_HASH_KEY"})
    env["FRAUD_STATE_DIR"] = str(tmp_path)
    result = subprocess.run(
        fraud_command("worker"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "FRAUD_PAN_HASH_KEY is the public default" in result.stderr
    assert "FRAUD_ENV=production" in result.stderr


def test_the_registry_needs_credentials_to_write(secure: SecureStack, server_champion: str) -> None:
    api = f"{secure.mlflow_uri}/api/2.0/mlflow"
    alias = {"name": NAME, "alias": "champion", "version": server_champion}
    assert httpx.post(f"{api}/experiments/create", json={"name": "x"}).status_code == 401
    assert httpx.get(f"{api}/registered-models/get", params={"name": NAME}).status_code == 401
    assert httpx.post(f"{api}/registered-models/alias", json=alias).status_code == 401

    reader = ("reader", secure.secret("MLFLOW_PASSWORD_READER"))
    found = httpx.get(f"{api}/registered-models/get", params={"name": NAME}, auth=reader)
    assert found.status_code == 200  # workers read the registry
    moved = httpx.post(f"{api}/registered-models/alias", json=alias, auth=reader)
    assert moved.status_code == 403, moved.text
    tagged = httpx.post(
        f"{api}/model-versions/set-tag",
        json={
            "name": NAME,
            "version": server_champion,
            "key": "policy.decline_threshold",
            "value": "0.99",
        },
        auth=reader,
    )
    assert tagged.status_code == 403, tagged.text
    wrong = httpx.get(
        f"{api}/registered-models/get", params={"name": NAME}, auth=("trainer", "guess")
    )
    assert wrong.status_code == 401
