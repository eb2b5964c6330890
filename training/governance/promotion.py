"""Promotion: `@champion` moves only when the gates pass, or when forced with a reason.

Gates, judged for the candidate version:
  data_validation  the training history passed validation (tag set at training time)
  fairness         the fairness audit on the test period passed its gate (tag)
  not_worse        on the candidate's own test window (logged with its run), its average
                   precision is at least the current champion's minus `tolerance`; both models
                   score the very same rows, so the comparison is like for like.
Every decision, refused, promoted or forced, is recorded on the candidate version's tags.

Before any gate, the candidate must pass its integrity check (signature, deciding tags, every
artifact file: `stream.scoring.integrity`); an unsigned or tampered version is refused with
ModelIntegrityError, and --force does not override that. A current champion that fails its own
check fails `not_worse` (only --force then replaces it).
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sklearn.metrics import average_precision_score

from fraud.errors import ConfigError, InputError, ModelIntegrityError, ModelNotFoundError
from fraud.settings import Settings
from stream.scoring import (
    CHALLENGER,
    CHAMPION,
    load_model_version,
    open_store,
    version_at_alias,
)
from training.governance.registry import set_version_tags


@dataclass
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass
class PromotionDecision:
    name: str
    version: str
    gates: list[Gate]
    promoted: bool
    forced: bool = False
    reason: str | None = None
    previous_champion: str | None = None
    champion_after: str | None = None
    comparison: dict[str, Any] = field(default_factory=dict)

    @property
    def gates_passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["gates_passed"] = self.gates_passed
        return result


def _compare_with_champion(
    client: Any, settings: Settings, candidate: Any, champion: Any, tolerance: float
) -> tuple[Gate, dict[str, Any]]:
    from training.governance.tracking import read_test_window

    window = read_test_window(client, candidate.run_id)
    labels = window["is_fraud"].to_numpy()
    result: dict[str, Any] = {"rows": len(window), "fraud": int(labels.sum())}
    for role, version in (("candidate", candidate), ("champion", champion)):
        features = json.loads(version.tags["model.feature_names"])
        missing = [f for f in features if f not in window.columns]
        if missing:
            detail = (
                f"cannot score the candidate's test window with v{version.version}: "
                f"features {missing[:5]} are not in it"
            )
            return Gate("not_worse", False, detail), result
        try:
            model = load_model_version(settings, version=str(version.version)).model
        except ModelIntegrityError as exc:
            detail = f"v{version.version} fails its integrity check: {exc}"
            return Gate("not_worse", False, detail), result
        scores = model.predict_proba(window[features])[:, 1]
        result[f"{role}_version"] = str(version.version)
        result[f"{role}_average_precision"] = float(average_precision_score(labels, scores))
    candidate_ap = result["candidate_average_precision"]
    champion_ap = result["champion_average_precision"]
    passed = candidate_ap >= champion_ap - tolerance
    detail = (
        f"average precision on v{candidate.version}'s test window: candidate {candidate_ap:.4f} "
        f"vs champion v{champion.version} {champion_ap:.4f} (tolerance {tolerance})"
    )
    return Gate("not_worse", passed, detail), result


def check_gates(
    settings: Settings, version: str, tolerance: float = 0.0
) -> tuple[list[Gate], dict[str, Any], str | None]:
    """The gates for `version`, the champion comparison, and the current champion version."""
    client = open_store(settings)
    name = settings.model_name
    candidate = client.get_model_version(name, version)
    tags = dict(candidate.tags)
    gates = [
        Gate(
            "data_validation",
            tags.get("gate.data_validation") == "passed",
            f"training data validation: {tags.get('gate.data_validation', 'not recorded')}",
        ),
        Gate(
            "fairness",
            tags.get("gate.fairness") == "passed",
            f"fairness audit on the test period: {tags.get('gate.fairness', 'not recorded')}"
            + (f" ({tags['gate.fairness_detail']})" if tags.get("gate.fairness_detail") else ""),
        ),
    ]
    champion = version_at_alias(client, name, CHAMPION)
    comparison: dict[str, Any] = {}
    if champion is None:
        gates.append(Gate("not_worse", True, "no current champion"))
    elif str(champion.version) == str(version):
        gates.append(Gate("not_worse", True, f"v{version} is already the champion"))
    else:
        gate, comparison = _compare_with_champion(client, settings, candidate, champion, tolerance)
        gates.append(gate)
    return gates, comparison, None if champion is None else str(champion.version)


def _check_version(client: Any, name: str, version: str) -> None:
    """InputError naming the versions that exist when `version` is not one of them."""
    from mlflow.exceptions import MlflowException

    if version.isdigit():
        try:
            client.get_model_version(name, version)
            return
        except MlflowException:
            pass
    try:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    except MlflowException:
        known = []
    listed = ", ".join(map(str, known)) if known else "none yet (`make train` registers one)"
    raise InputError(f"'{name}' has no version {version!r}; registered versions: {listed}")


def verify_version(settings: Settings, version: str) -> None:
    """ModelIntegrityError (naming the version) unless `version` verifies: its signature, its
    deciding tags and every artifact file (the model file is then read with the allow-list)."""
    try:
        load_model_version(settings, version=version)
    except ModelIntegrityError as exc:
        raise ModelIntegrityError(
            f"refusing to promote {settings.model_name} v{version}: {exc}"
        ) from exc


def promote(
    settings: Settings,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    tolerance: float = 0.0,
) -> PromotionDecision:
    """Move `@champion` to `version` (default: `@challenger`) if the gates pass or if forced."""
    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason TEXT saying why the gates are overridden")
    client = open_store(settings)
    name = settings.model_name
    if version is None:
        challenger = version_at_alias(client, name, CHALLENGER)
        if challenger is None:
            raise ModelNotFoundError(
                f"no version of '{name}' at @{CHALLENGER}; run `make train` first or pass --version"
            )
        version = str(challenger.version)
    _check_version(client, name, version)
    verify_version(settings, version)  # unsigned or tampered: refused, whatever --force says
    gates, comparison, previous = check_gates(settings, version, tolerance)
    decision = PromotionDecision(
        name=name,
        version=version,
        gates=gates,
        promoted=False,
        forced=False,
        reason=reason,
        previous_champion=previous,
        champion_after=previous,
        comparison=comparison,
    )
    if decision.gates_passed or force:
        client.set_registered_model_alias(name, CHAMPION, version)
        decision.promoted = True
        decision.forced = not decision.gates_passed
        decision.champion_after = version
    status = "forced" if decision.forced else ("promoted" if decision.promoted else "refused")
    set_version_tags(
        client,
        name,
        version,
        {
            "promotion.status": status,
            "promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
            "promotion.by": getpass.getuser(),
            "promotion.reason": reason or "",
            "promotion.previous_champion": previous or "",
            "promotion.gates": json.dumps([asdict(gate) for gate in gates], separators=(",", ":"))[
                :4900
            ],
        },
    )
    return decision
