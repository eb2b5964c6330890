"""The registry side of `fraud retrain`: the challenger's version, its lineage, the gates' record.

`register_challenger` logs the run through training.governance.tracking and tags the version with where its
labels came from; any failure on the way deletes the half-made version. `record_decision` puts
every gate (the retrain's own included) on the version, as `fraud promote` does for its gates.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fraud.settings import Settings
from stream.scoring import CHALLENGER, CHAMPION, open_store, version_at_alias
from training.governance import Gate, set_version_tags

if TYPE_CHECKING:
    from training.retrain.run import RetrainOptions

RETRAIN_ARTIFACT = "retrain.json"
RECENT_WINDOW_ARTIFACT = "evaluation/recent_window.parquet"


def lineage_record(
    settings: Settings,
    assembly: dict[str, Any],
    older: pd.DataFrame,
    recent: pd.DataFrame,
    comparison: dict[str, Any],
    digest: str,
    as_of: datetime,
    options: RetrainOptions,
) -> dict[str, Any]:
    return {
        "as_of": as_of.isoformat(),
        "feedback_topic": settings.topics.feedback,
        "decisions_topic": settings.topics.decisions,
        "feedback_offsets": assembly["feedback_offsets"],
        "labelled_at_min": assembly["labelled_at_min"],
        "labelled_at_max": assembly["labelled_at_max"],
        "label_delay_s": assembly["label_delay_days"] * 86400,
        "presume_legit": options.presume_legit,
        "assembly": assembly,
        "training_feedback_rows": len(older),
        "training_feedback_fraud": int(older["label"].sum()),
        "training_event_time_to": older["event_time"].max().isoformat(),
        "recent_share": options.recent_share,
        "recent_tolerance": options.recent_tolerance,
        "recent_confidence": options.recent_confidence,
        "recent_window": comparison,
        "dataset_digest": digest,
    }


def register_challenger(
    settings: Settings,
    client: Any,
    outcome: Any,
    validated: Any,
    history_sha: str,
    options: RetrainOptions,
    lineage: dict[str, Any],
) -> Any:
    """log_training_run plus the retrain tags; on any failure, no version is left behind."""
    from training.governance import DataInfo, log_training_run

    info = DataInfo(
        source=display_path(options.history),
        sha256=history_sha,
        rows=len(validated.frame),
        validation=validated.report.to_dict(),
        customers_source=None,
        extra={"feedback": lineage["feedback_topic"]},
    )
    run_name = f"retrain-{lineage['as_of'][:19].replace(':', '')}-{uuid.uuid4().hex[:6]}"
    try:
        registered = log_training_run(settings, outcome, info, run_name=run_name)
        recent = lineage["recent_window"]
        assembly = lineage["assembly"]
        tags = {
            "retrain.as_of": lineage["as_of"],
            "retrain.feedback_topic": lineage["feedback_topic"],
            "retrain.feedback_offsets": json.dumps(
                {p: [r["first"], r["last"]] for p, r in lineage["feedback_offsets"].items()},
                separators=(",", ":"),
            )[:4900],
            "retrain.labelled_at": f"{lineage['labelled_at_min']}..{lineage['labelled_at_max']}",
            "retrain.label_delay_s": f"{lineage['label_delay_s']:g}",
            "retrain.labels": assembly["rows"],
            "retrain.frauds": assembly["frauds"],
            "retrain.by_source": json.dumps(assembly["by_source"], separators=(",", ":")),
            "retrain.conflicts": assembly["conflicts"],
            "retrain.training_feedback_rows": lineage["training_feedback_rows"],
            "retrain.recent_window": f"{recent['event_time_from']}..{recent['event_time_to']}",
            "retrain.recent_average_precision": recent["challenger"]["average_precision"],
            "retrain.recent_champion_average_precision": recent["champion"]["average_precision"],
            **recent_difference_tags(recent, lineage),
            "retrain.champion_before": recent["champion_version"],
            "retrain.dataset_digest": lineage["dataset_digest"],
        }
        set_version_tags(client, settings.model_name, registered.version, tags)
        return registered
    except BaseException:
        discard_run(client, settings, run_name)
        raise


def recent_difference_tags(recent: dict[str, Any], lineage: dict[str, Any]) -> dict[str, Any]:
    """The recent_window gate's figures: challenger - champion average precision, its one-sided
    bounds at the confidence, and the tolerance the upper bound was held to."""
    difference = recent.get("average_precision_difference")
    if difference is None:
        return {}
    return {
        "retrain.recent_ap_difference": difference["difference"],
        "retrain.recent_ap_difference_lower": difference["lower_bound"],
        "retrain.recent_ap_difference_upper": difference["upper_bound"],
        "retrain.recent_ap_confidence": difference["confidence"],
        "retrain.recent_ap_bootstrap": f"{difference['replicates']} paired replicates "
        f"stratified by label, seed {difference['seed']}",
        "retrain.recent_tolerance": lineage["recent_tolerance"],
    }


def display_path(path: Path) -> str:
    """As `fraud train` records it: relative to the project when inside it."""
    from fraud.settings import PROJECT_ROOT

    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def discard_run(client: Any, settings: Settings, run_name: str) -> None:
    """Delete the versions (and mark failed the run) a failed registration left behind."""
    from stream.scoring import TRAINING_EXPERIMENT

    try:
        experiment = client.get_experiment_by_name(TRAINING_EXPERIMENT)
        if experiment is None:
            return
        runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`mlflow.runName` = '{run_name}'"
        )
        for run in runs:
            for version in client.search_model_versions(f"run_id='{run.info.run_id}'"):
                client.delete_model_version(settings.model_name, version.version)
            client.set_terminated(run.info.run_id, status="FAILED")
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def log_recent_window(
    client: Any, run_id: str, recent: pd.DataFrame, lineage: dict[str, Any]
) -> None:
    """The recent window (logged features + labels) and the lineage, beside the run's files."""
    import tempfile

    from training.results import write_json

    with tempfile.TemporaryDirectory() as folder:
        window = Path(folder) / Path(RECENT_WINDOW_ARTIFACT).name
        recent.to_parquet(window, index=False)
        client.log_artifact(run_id, str(window), str(Path(RECENT_WINDOW_ARTIFACT).parent))
        client.log_artifact(run_id, str(write_json(Path(folder) / RETRAIN_ARTIFACT, lineage)))
    for role in ("challenger", "champion"):
        for key, value in lineage["recent_window"][role].items():
            if isinstance(value, int | float):
                client.log_metric(run_id, f"recent_{role}_{key}", float(value))
    difference = lineage["recent_window"].get("average_precision_difference") or {}
    for key in ("difference", "lower_bound", "upper_bound"):
        if key in difference:
            client.log_metric(run_id, f"recent_ap_{key}", float(difference[key]))


def record_decision(
    client: Any,
    settings: Settings,
    version: str,
    gates: list[Gate],
    promoted: bool,
    previous: str | None,
    options: RetrainOptions,
) -> None:
    """The gates, ours included, on the version; the status when promote() was not called."""
    tags: dict[str, Any] = {
        "promotion.gates": json.dumps([asdict(g) for g in gates], separators=(",", ":"))[:4900]
    }
    if not promoted:
        tags.update(
            {
                "promotion.status": "refused"
                if options.promote
                else "not attempted (--no-promote)",
                "promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
                "promotion.by": getpass.getuser(),
                "promotion.reason": "",
                "promotion.previous_champion": previous or "",
            }
        )
    set_version_tags(client, settings.model_name, version, tags)


def retraining_card_section(settings: Settings, alias: str = CHAMPION) -> str:
    """Markdown about the retraining behind the version at `alias` ('' if it was not retrained)."""
    client = open_store(settings)
    found = version_at_alias(client, settings.model_name, alias) or version_at_alias(
        client, settings.model_name, CHALLENGER
    )
    tags = dict(found.tags) if found is not None else {}
    if "retrain.as_of" not in tags:
        return ""
    return "\n".join(
        [
            "",
            "## Retraining from feedback",
            "",
            f"- Retrained at {tags['retrain.as_of']} from `{tags['retrain.feedback_topic']}` "
            f"(offsets by partition, first..last: `{tags['retrain.feedback_offsets']}`), "
            f"labels given {tags['retrain.labelled_at']}, label delay "
            f"{tags['retrain.label_delay_s']} s.",
            f"- Labelled set: {tags['retrain.labels']} transactions, {tags['retrain.frauds']} "
            f"fraud, by source `{tags['retrain.by_source']}`, {tags['retrain.conflicts']} "
            f"conflicting; {tags['retrain.training_feedback_rows']} of them trained on.",
            f"- Recent labelled window {tags['retrain.recent_window']}: average precision "
            f"{float(tags['retrain.recent_average_precision']):.4f} vs "
            f"{float(tags['retrain.recent_champion_average_precision']):.4f} for the champion "
            f"before it (v{tags['retrain.champion_before']}).{_difference_sentence(tags)}",
            f"- Dataset digest (history + labelled set): `{tags['retrain.dataset_digest']}`",
            "",
        ]
    )


def _difference_sentence(tags: dict[str, str]) -> str:
    """The recent_window gate's bound, for versions retrained since it was recorded."""
    if "retrain.recent_ap_difference_upper" not in tags:
        return ""
    confidence = 100 * float(tags["retrain.recent_ap_confidence"])
    return (
        f" Difference {float(tags['retrain.recent_ap_difference']):+.4f}, {confidence:g}% "
        f"one-sided bounds {float(tags['retrain.recent_ap_difference_lower']):+.4f} (lower) and "
        f"{float(tags['retrain.recent_ap_difference_upper']):+.4f} (upper; "
        f"{tags['retrain.recent_ap_bootstrap']}); the gate refuses a challenger whose upper "
        f"bound is below minus the tolerance ({tags['retrain.recent_tolerance']})."
    )
