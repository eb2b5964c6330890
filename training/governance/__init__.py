"""What makes a model accountable: every run tracked in MLflow with its data, code and
environment, versions registered, tagged and signed (`signing`: Ed25519 over the digest of every
artifact file), promotion only through gates and only of a version whose signature verifies,
a model card."""

from training.governance.card_sections import trial_cells
from training.governance.model_card import render
from training.governance.promotion import Gate, PromotionDecision, check_gates, promote
from training.governance.registry import ensure_experiment, set_version_tags
from training.governance.signing import (
    generate_key_pair,
    public_key_of,
    resign_version,
    sign_version,
    signature_tags,
)
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
    "generate_key_pair",
    "log_training_run",
    "promote",
    "public_key_of",
    "read_test_window",
    "render",
    "resign_version",
    "set_version_tags",
    "sign_version",
    "signature_tags",
    "trial_cells",
]
