"""Prometheus config and alert rules: promtool checks them and runs their unit tests.

Also keeps them honest against the code: every metric a rule uses is one the worker, the lag
exporter or the model monitor actually exports, and every alert has a promtool test that fires it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.monitoring import LagMetrics, MonitorMetrics
from stream.worker import ScorerMetrics
from tests.support.stack import ROOT

PROMETHEUS = ROOT / "ops" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus; CI installs it)",
)


def promtool(*args: str | Path) -> str:
    result = subprocess.run(
        [PROMTOOL or "promtool", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROMETHEUS,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@needs_promtool
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.docker.yml"])
def test_prometheus_config_is_valid(config):
    output = promtool("check", "config", config)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output


@needs_promtool
def test_alert_rules_are_valid():
    output = promtool("check", "rules", *RULE_FILES)
    assert output.count("SUCCESS") == len(RULE_FILES)


@needs_promtool
def test_alert_rule_unit_tests_pass():
    assert RULE_TESTS, "ops/prometheus/tests/ holds the promtool tests"
    output = promtool("test", "rules", *RULE_TESTS)
    assert output.count("SUCCESS") == len(RULE_TESTS)


def _rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_every_alert_has_a_test_that_fires_it():
    alerts = {rule["alert"] for rule in _rules()}
    fired = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - fired == set(), "alerts without a promtool test that fires them"
    assert {
        "FraudWorkerDown",
        "FraudDeadLetterRateHigh",
        "FraudDegradedMode",
        "FraudLatencyP99High",
        "FraudConsumerLagHigh",
        "FraudConsumerLagGrowing",
        "FraudConsumerStalled",
        "FraudConsumerStopped",
        "FraudScoreDrift",
        "FraudFeatureDrift",
        "FraudLivePrecisionLow",
    } <= alerts


def exported_metric_names() -> set[str]:
    """Every sample name the three exporters can emit (counters with _total, histograms...)."""
    names = set()
    for registry in (
        ScorerMetrics().registry,
        LagMetrics().registry,
        MonitorMetrics().registry,
    ):
        assert isinstance(registry, CollectorRegistry)
        for family in registry.collect():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "info": ("_info",),
            }.get(family.type, ("",))
            names.update(family.name + suffix for suffix in suffixes)
    return names


def metric_names_in(expression: str) -> set[str]:
    return set(re.findall(r"\bfraud_[a-z0-9_]+", expression))


def test_rules_only_use_metrics_that_exist():
    exported = exported_metric_names()
    used = set().union(*(metric_names_in(rule["expr"]) for rule in _rules()))
    assert used, "the rules should reference the project's metrics"
    assert used - exported == set()


def test_expected_thresholds():
    by_name = {rule["alert"]: rule for rule in _rules()}
    assert "> 0.1" in by_name["FraudLatencyP99High"]["expr"]  # 100 ms, the bank's target
    assert "< 0.95" in by_name["FraudLivePrecisionLow"]["expr"]  # precision of declines
    assert "> 0.2" in by_name["FraudScoreDrift"]["expr"]
    assert "> 0.2" in by_name["FraudFeatureDrift"]["expr"]


# -- Alertmanager -----------------------------------------------------------------------------

ALERTMANAGER = ROOT / "ops" / "alertmanager"
AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (Debian: apt-get install prometheus-alertmanager)"
)


@needs_amtool
def test_alertmanager_config_is_valid():
    result = subprocess.run(
        [AMTOOL or "amtool", "check-config", "alertmanager.yml"],
        capture_output=True,
        text=True,
        cwd=ALERTMANAGER,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "oncall"), ("warning", "oncall"), ("info", "ticket")]
)
def test_alerts_route_by_severity(severity, receiver):
    result = subprocess.run(
        [
            *(AMTOOL or "amtool", "config", "routes", "test", "--config.file=alertmanager.yml"),
            *(
                f"--verify.receivers={receiver}",
                f"severity={severity}",
                "alertname=FraudScoreDrift",
            ),
        ],
        capture_output=True,
        text=True,
        cwd=ALERTMANAGER,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_severity_used_by_a_rule_has_a_route():
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    routed = {
        matcher.split("=", 1)[1].strip('"')
        for route in config["route"]["routes"]
        for matcher in route["matchers"]
    }
    severities = {rule["labels"]["severity"] for rule in _rules()}
    assert severities == {"critical", "warning", "info"}
    assert severities - routed <= {"warning"}  # warnings take the default route (oncall)


def test_webhook_example_prints_one_line_per_alert():
    import importlib.util

    spec = importlib.util.spec_from_file_location("webhook_echo", ALERTMANAGER / "webhook_echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "FraudConsumerStopped",
                    "severity": "critical",
                    "group": "g",
                },
                "annotations": {"summary": "Group g stopped committing (STOP)"},
            },
            {"status": "resolved", "labels": {"alertname": "FraudDegradedMode"}, "annotations": {}},
        ],
    }
    assert module.format_notification("/alerts/oncall", payload) == [
        "/alerts/oncall [FIRING] critical FraudConsumerStopped group=g :: "
        "Group g stopped committing (STOP)",
        "/alerts/oncall [RESOLVED] - FraudDegradedMode  :: ",
    ]
