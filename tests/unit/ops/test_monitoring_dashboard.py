"""The provisioned Grafana dashboard: valid, wired to the provisioned data source, and only
querying metrics the worker and the two exporters actually export."""

from __future__ import annotations

import json
import re
from itertools import combinations

import yaml

from tests.support.stack import ROOT
from tests.unit.ops.test_alert_rules import exported_metric_names, metric_names_in

GRAFANA = ROOT / "ops" / "grafana"


def _dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "fraud-scorer.json").read_text())


def _panels() -> list[dict]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _expressions() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def test_dashboard_uses_the_provisioned_data_source():
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for panel in _panels():
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_dashboard_queries_only_exported_metrics():
    used = set().union(*(metric_names_in(e) for e in _expressions()))
    assert used - exported_metric_names() == set()


def test_dashboard_covers_throughput_latency_tiers_lag_drift_and_precision():
    used = set().union(*(metric_names_in(e) for e in _expressions()))
    assert {
        "fraud_transactions_total",  # throughput
        "fraud_decisions_total",  # tiers
        "fraud_event_to_decision_seconds_bucket",  # latency
        "fraud_consumer_lag_messages",
        "fraud_consumer_lag_seconds",
        "fraud_consumer_partition_status",
        "fraud_score_psi",
        "fraud_feature_psi",
        "fraud_live_precision_decline",
        "fraud_live_recall",
    } <= used


def test_dashboard_variables_are_defined_and_panels_do_not_overlap():
    dashboard = _dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = set().union(*(re.findall(r"\$(\w+)", e) for e in _expressions())) - {"__rate_interval"}
    assert used <= defined
    boxes = [
        (p["title"], p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"])
        for p in dashboard["panels"]
    ]
    for (a, ax, ay, aw, ah), (b, bx, by, bw, bh) in combinations(boxes, 2):
        overlap = ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah
        assert not overlap, f"panels '{a}' and '{b}' overlap"
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dashboard["panels"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_provider_reads_the_folder_compose_mounts():
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "fraud-scorer.yml").read_text()
    )
    (provider,) = providers["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in volumes
