"""docker-compose.yml describes the same stack as `make services` (no engine runs the file here)."""

from __future__ import annotations

from urllib.parse import urlparse

import yaml

from fraud.settings import Settings
from tests.support.stack import ROOT, kafka_version


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_present_with_pinned_versions():
    services = _compose()["services"]
    assert {"kafka", "redis", "mlflow", "mlflow-users", "topics"} <= set(services)
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    # MLflow runs from the project's virtualenv: the version constraints.txt pins, with the
    # Flask-WTF its basic-auth app needs.
    assert services["mlflow"]["command"][:2] == ["/venv/bin/mlflow", "server"]
    assert "fraud-venv:/venv" in services["mlflow"]["volumes"]
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("mlflow==") for line in constraints)
    assert any(line.startswith("Flask-WTF==") for line in constraints)


def _required(value: str, variable: str) -> bool:
    """A compose value that refuses to start without `variable` (`${VAR:?message}`)."""
    return value.startswith(f"${{{variable}:?") and value.endswith("}")


def test_no_default_passwords_and_no_anonymous_access():
    services = _compose()["services"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana
    assert _required(grafana["GF_SECURITY_ADMIN_PASSWORD"], "GRAFANA_ADMIN_PASSWORD")
    # Prometheus without the lifecycle API (no remote reload or shutdown over HTTP).
    assert not any("lifecycle" in flag for flag in services["prometheus"]["command"])

    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert _required(mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"], "MLFLOW_ADMIN_PASSWORD")
    assert _required(
        mlflow["environment"]["MLFLOW_FLASK_SERVER_SECRET_KEY"], "MLFLOW_FLASK_SERVER_SECRET_KEY"
    )
    assert mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    assert "./ops/mlflow:/etc/mlflow:ro" in mlflow["volumes"]
    auth = (ROOT / "ops" / "mlflow" / "basic_auth.ini").read_text()
    assert "default_permission = READ" in auth and "admin_password" not in auth
    # The project's processes read the registry as `reader`, whose password is required too.
    for name in ("worker", "lag-exporter", "model-monitor"):
        environment = services[name]["environment"]
        assert environment["MLFLOW_TRACKING_USERNAME"] == "reader"
        assert _required(environment["MLFLOW_TRACKING_PASSWORD"], "MLFLOW_READER_PASSWORD")
    users = services["mlflow-users"]
    assert users["command"][-2:] == ["trainer", "reader"]
    assert _required(users["environment"]["MLFLOW_PASSWORD_READER"], "MLFLOW_READER_PASSWORD")


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


# -- the scorer and its monitoring ------------------------------------------------------------

PROMETHEUS = ROOT / "ops" / "prometheus"


def _prometheus(name: str) -> dict:
    return yaml.safe_load((PROMETHEUS / name).read_text())


def _targets(config: dict) -> dict[str, str]:
    """job -> its one target."""
    targets = {}
    for job in config["scrape_configs"]:
        ((target,),) = [c["targets"] for c in job["static_configs"]]
        targets[job["job_name"]] = target
    return targets


def _serve_port(service: dict) -> int:
    command = service["command"]
    return int(command[command.index("--serve") + 1])


def test_monitoring_services_present():
    services = _compose()["services"]
    assert {
        "worker",
        "lag-exporter",
        "model-monitor",
        "prometheus",
        "alertmanager",
        "alert-webhook",
        "grafana",
    } <= set(services)
    assert services["worker"]["image"].startswith("python:3.11")
    assert services["worker"]["command"] == ["/venv/bin/fraud", "worker"]
    assert services["lag-exporter"]["command"][:2] == ["/venv/bin/fraud", "lag"]
    assert services["model-monitor"]["command"][:2] == ["/venv/bin/fraud", "monitor"]
    for name in ("worker", "lag-exporter", "model-monitor"):
        depends = services[name]["depends_on"]
        assert depends["fraud-install"]["condition"] == "service_completed_successfully"
        assert "fraud-venv:/venv" in services[name]["volumes"]
    assert "-c constraints.txt" in services["fraud-install"]["command"][0]


def test_project_processes_reach_kafka_on_the_compose_listener():
    services = _compose()["services"]
    internal = next(
        address.split("//")[1]
        for address in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
        if address.startswith("INTERNAL://")
    )
    for name in ("worker", "lag-exporter", "model-monitor"):
        environment = services[name]["environment"]
        assert environment["KAFKA_BOOTSTRAP_SERVERS"] == internal
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_prometheus_targets_match_the_services(monkeypatch):
    monkeypatch.delenv("FRAUD_WEB_PORT", raising=False)
    services = _compose()["services"]
    ports = {
        "fraud-worker": ("worker", int(services["worker"]["environment"]["FRAUD_WEB_PORT"])),
        "fraud-lag": ("lag-exporter", _serve_port(services["lag-exporter"])),
        "fraud-monitor": ("model-monitor", _serve_port(services["model-monitor"])),
    }
    assert ports["fraud-worker"][1] == Settings().web_port
    docker, local = _prometheus("prometheus.docker.yml"), _prometheus("prometheus.yml")
    docker_targets, local_targets = _targets(docker), _targets(local)
    for job, (service, port) in ports.items():
        assert docker_targets[job] == f"{service}:{port}"
        assert local_targets[job] == f"127.0.0.1:{port}"
        assert f"127.0.0.1:{port}:{port}" in services[service]["ports"]
    # Same jobs, rules and intervals for both; only the addresses differ.
    assert docker_targets.keys() == local_targets.keys()
    assert docker["rule_files"] == local["rule_files"]
    assert docker["global"] == local["global"]

    prometheus = services["prometheus"]
    assert "./ops/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.docker.yml" in prometheus["command"]


def test_alertmanager_addresses_match():
    services = _compose()["services"]
    (docker_am,) = _prometheus("prometheus.docker.yml")["alerting"]["alertmanagers"]
    (local_am,) = _prometheus("prometheus.yml")["alerting"]["alertmanagers"]
    assert docker_am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    local_port = local_am["static_configs"][0]["targets"][0].rsplit(":", 1)[1]
    assert f"127.0.0.1:{local_port}:9093" in services["alertmanager"]["ports"]
    assert local_port != "9093"  # Kafka's controller port in `make services`

    # The webhook example shares alertmanager's network, where the receivers point.
    webhook = services["alert-webhook"]
    assert webhook["network_mode"] == "service:alertmanager"
    port = webhook["command"][webhook["command"].index("--port") + 1]
    config = yaml.safe_load((ROOT / "ops" / "alertmanager" / "alertmanager.yml").read_text())
    urls = [hook["url"] for r in config["receivers"] for hook in r["webhook_configs"]]
    assert urls and all(url.startswith(f"http://127.0.0.1:{port}/") for url in urls)


def test_grafana_is_provisioned_from_the_repository():
    grafana = _compose()["services"]["grafana"]
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "127.0.0.1:3000:3000" in grafana["ports"]
    source = yaml.safe_load(
        (ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
