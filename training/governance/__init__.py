"""What makes a model accountable: every run tracked in MLflow with its data, code and
environment, versions registered and tagged, promotion only through gates, a model card."""

from training.governance.card_sections import trial_cells
from training.governance.model_card import render
from training.governance.promotion import Gate, PromotionDecision, check_gates, promote
from training.governance.registry import ensure_experiment, set_version_tags
from training.governance.tracking import (
    DataInfo,
    RegisteredVersion,
    file_sha256,
    log_training_run,
    read_test_window,
)

__all__ = [
    "DataInfo",
    "Gate",
    "PromotionDecision",
    "RegisteredVersion",
    "check_gates",
    "ensure_experiment",
    "file_sha256",
    "log_training_run",
    "promote",
    "read_test_window",
    "render",
    "set_version_tags",
    "trial_cells",
]
