"""How good a model is, and for whom: metrics on a time window, the fairness audit, global
feature importance, plots, the reference distributions drift is measured against, and whether
one model is credibly worse than another on the same rows (a paired bootstrap)."""

from training.evaluation import plots
from training.evaluation.bootstrap import bootstrap_average_precision, paired_difference
from training.evaluation.curve import (
    DEFAULT_ALERT_RATES,
    alert_rate_curve,
    threshold_for_alert_rate,
)
from training.evaluation.fairness import (
    ATTRIBUTES,
    FairnessGate,
    age_band,
    attach_groups,
    audit,
    configured_gate,
)
from training.evaluation.importance import global_importance
from training.evaluation.metrics import (
    bank_targets,
    calibration,
    card_precision_at_k,
    evaluate_window,
    flat_metrics,
    ranking_metrics,
    scenario_recall,
    tier_metrics,
)
from training.evaluation.reference import SCORE_EDGES, proportions, reference_distribution

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_ALERT_RATES",
    "SCORE_EDGES",
    "FairnessGate",
    "age_band",
    "alert_rate_curve",
    "attach_groups",
    "audit",
    "bank_targets",
    "bootstrap_average_precision",
    "calibration",
    "card_precision_at_k",
    "configured_gate",
    "evaluate_window",
    "flat_metrics",
    "global_importance",
    "paired_difference",
    "plots",
    "proportions",
    "ranking_metrics",
    "reference_distribution",
    "scenario_recall",
    "threshold_for_alert_rate",
    "tier_metrics",
]
