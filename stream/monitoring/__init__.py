"""Watching the scorer run: consumer lag, live model quality and drift.

Each concern is a pure module and its exporter (Kafka/MLflow in, Prometheus out):

    lag      -> lag_exporter        per-partition lag in messages and seconds, with a status
    quality  -> quality_exporter    live precision/recall per model version, from labels
    drift                           population stability index of scores and features
"""

from stream.monitoring.drift import (
    PSI_ALERT_THRESHOLD,
    SCORE,
    Binning,
    DriftReference,
    DriftWindow,
    bin_index,
    parse_reference,
    psi,
)
from stream.monitoring.lag import (
    Commit,
    CommitWindow,
    EndOffsetTable,
    GroupLag,
    LagRules,
    PartitionLag,
    Status,
    evaluate_partition,
    group_status,
    lag_at,
    lag_seconds,
)
from stream.monitoring.lag_exporter import (
    DEFAULT_LAG_PORT,
    LagMetrics,
    LagMonitor,
    check_group_exists,
    run_exporter,
)
from stream.monitoring.quality import LabelJoin, ModelMonitor, Quality, VersionHealth
from stream.monitoring.quality_exporter import (
    DEFAULT_MONITOR_PORT,
    MonitorMetrics,
    MonitorService,
    registry_references,
)

__all__ = [
    "DEFAULT_LAG_PORT",
    "DEFAULT_MONITOR_PORT",
    "PSI_ALERT_THRESHOLD",
    "SCORE",
    "Binning",
    "Commit",
    "CommitWindow",
    "DriftReference",
    "DriftWindow",
    "EndOffsetTable",
    "GroupLag",
    "LabelJoin",
    "LagMetrics",
    "LagMonitor",
    "LagRules",
    "ModelMonitor",
    "MonitorMetrics",
    "MonitorService",
    "PartitionLag",
    "Quality",
    "Status",
    "VersionHealth",
    "bin_index",
    "check_group_exists",
    "evaluate_partition",
    "group_status",
    "lag_at",
    "lag_seconds",
    "parse_reference",
    "psi",
    "registry_references",
    "run_exporter",
]
