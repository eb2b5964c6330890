"""docker-compose.yml describes the same stack as `make services` (no engine runs the file here)."""

from __future__ import annotations

from urllib.parse import urlparse

import yaml

from fraud.settings import Settings
from tests.stack import ROOT, kafka_version


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_present_with_pinned_versions():
    services = _compose()["services"]
    assert {"kafka", "redis", "mlflow", "topics"} <= set(services)
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    mlflow_pin = next(line.split("==")[1] for line in constraints if line.startswith("mlflow=="))
    assert services["mlflow"]["image"].endswith(f":v{mlflow_pin}")


def test_ports_and_environment_match_project_defaults(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    services = _compose()["services"]
    kafka_env = services["kafka"]["environment"]

    host_port = defaults.kafka_bootstrap_servers
    assert f"127.0.0.1:{host_port.rsplit(':', 1)[1]}:9092" in services["kafka"]["ports"]
    assert f"PLAINTEXT://{host_port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka_env["KAFKA_NUM_PARTITIONS"] == str(defaults.topic_partitions)

    redis_port = urlparse(defaults.redis_url).port
    assert f"127.0.0.1:{redis_port}:6379" in services["redis"]["ports"]

    topic_command = " ".join(services["topics"]["command"])
    for topic in defaults.topics.all():
        assert topic in topic_command
    assert f"--partitions {defaults.topic_partitions}" in topic_command
