"""Analyst labels on `feedback`: build and check a record, find the decision it is about,
publish it; and reading a topic back (`scan_topic`) for retraining and the monitor.

    outcome = label_transaction(settings, "tx-123", "fraud", "a.smith", note="confirmed")
"""

from stream.feedback.labels import (
    CHARGEBACK_ANALYST,
    LABELS,
    SOURCES,
    LabelOutcome,
    Published,
    TopicRecord,
    UnknownTransactionError,
    build_label,
    check_analyst_id,
    find_decision,
    label_transaction,
    partitions_of,
    publish_feedback,
    scan_topic,
)

__all__ = [
    "CHARGEBACK_ANALYST",
    "LABELS",
    "SOURCES",
    "LabelOutcome",
    "Published",
    "TopicRecord",
    "UnknownTransactionError",
    "build_label",
    "check_analyst_id",
    "find_decision",
    "label_transaction",
    "partitions_of",
    "publish_feedback",
    "scan_topic",
]
