"""`fraud retrain`: fold the labels that came back into a challenger, behind the promotion gates.

    result = run_retrain(settings, RetrainOptions(history=Path("data/history/transactions.parquet")))

What the challenger learns from, and what it is judged on:

- The labelled set (training.retrain.labelled_set): per transaction the latest label on `feedback`, joined
  to the feature vector the scorer logged in `decisions`, kept once the transaction is older than
  the label delay (a younger one may still get a chargeback), measured back from the as-of: by
  default the newest decision's event time or label, so on the transactions' own clock. Feedback alone is a biased sample:
  alerts (which the champion chose) and chargebacks (the frauds it let through). So, by default
  (`presume_legit`), decisions older than the label delay that got no feedback join as
  legitimate, the bank's own rule (no chargeback in time means genuine). The live rows are then
  a whole population; without them every live row the challenger saw would be an alert or a
  fraud, and "looks like live traffic" would become a fraud signal.
- The labelled set is cut by event time: its most recent `recent_share` is the *recent labelled
  window*, never trained on; the older rows are appended to the training window with their
  features exactly as logged (what the scorer will compute again, quirks of the live feature
  store included).
- The history is replayed through the stream features as `fraud train` does, with the champion's
  own time split when the history file is the one the champion was trained on (same sha256), and
  the champion's own hyper-parameters and genuine sample (no new search; `--param` overrides),
  so that the challenger differs from the champion by the feedback only. In the refit design
  the thresholds come from the history's folds (the feedback rows are newer than any fold) and
  the challenger is refit on the history's training window plus the older feedback. Its validation window
  chooses the thresholds: a representative population, where an alert-rate cap means something
  (in a set of alerts it would not). Its test window is audited for fairness and scored by both
  models for `fraud promote`'s not_worse gate (within `history_tolerance`): a check that the
  challenger has not forgotten the history, not a forecast (it trained on later live rows).
- Gates. `recent_window`, applied here: on the recent labelled window both models score the same
  logged feature vectors (a forward-in-time test: every training row is older), and the
  challenger fails when it is credibly worse: when the upper confidence bound (one-sided,
  `recent_confidence`, 0.95) of its average precision minus the champion's is below
  -`recent_tolerance` (0). The bound comes from a paired bootstrap of the window's rows,
  stratified by label so that every replicate holds as many frauds as the window, with
  `recent_replicates` (1,000) replicates seeded by `seed` (training.evaluation.paired_difference).
  A point comparison would be a coin flip between close models: with ~50 frauds in the window,
  average precision moves by a few hundredths between runs of the same traffic. Then the gates
  of training.governance.promotion (data validation, fairness, not_worse). @champion moves only
  when all pass and `promote` is on; otherwise the new version stays at @challenger, tagged with
  its gates (`fraud promote` can still move it). The worker polls @champion and swaps by itself.

Lineage on the version (tags `retrain.*`, run artifact `retrain.json`): feedback offsets per
partition, labelled_at and event-time ranges, counts by source, conflicts, the recent-window
comparison (both average precisions, their difference with its bounds, the confidence and the
tolerance) and a digest of history + labelled set. Missing or thin input, or a service that
does not answer, stops the run before anything is registered (RetrainRefusedError,
ServiceUnavailable); a failure while registering deletes the half-made version.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fraud.secrets import mask_url
from fraud.settings import Settings
from stream.kafka_io import check_reachable
from stream.scoring import CHAMPION, open_store, version_at_alias
from training.data import TimeSplit, default_split
from training.governance import Gate, check_gates, promote
from training.retrain.lineage import (
    lineage_record,
    log_recent_window,
    record_decision,
    register_challenger,
)
from training.retrain.windows import (
    Minimums,
    RetrainRefusedError,
    check_labelled_set,
    combine_windows,
    compare_on_window,
    feedback_rows,
    labelled_set_digest,
    split_recent,
    train_challenger,
)

Step = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True)
class RetrainOptions:
    history: Path
    customers: Path | None = None  # default: beside the history
    feedback_label_delay: timedelta | None = None  # default: settings.label_delay_days
    history_label_delay_days: int | None = None  # default: settings.label_delay_days
    test_days: int = 10
    validation_days: int = 15
    warmup_days: int = 7
    recent_share: float = 0.3
    minimums: Minimums = field(default_factory=Minimums)
    presume_legit: bool = True
    promote: bool = True
    recent_tolerance: float = 0.0
    recent_confidence: float = 0.95
    recent_replicates: int = 1000
    history_tolerance: float = 0.02
    max_alert_rate: float = 0.02
    decline_confidence: float | None = 0.95
    seed: int = 1
    model_params: dict[str, Any] = field(default_factory=dict)
    fairness_min_events: float | None = None
    fairness_band: tuple[float, float] | None = None  # (min_ratio, max_ratio)
    threads: int = 1
    as_of: datetime | None = None  # default: the latest moment feedback and decisions show


@dataclass
class RetrainResult:
    as_of: str
    champion_before: str
    version: str
    gates: list[Gate]
    promoted: bool
    champion_after: str
    assembly: dict[str, Any]
    recent: dict[str, Any]
    history_comparison: dict[str, Any]
    split: dict[str, Any]
    split_source: str
    training_rows: dict[str, int]
    dataset_digest: str

    @property
    def gates_passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gates_passed": self.gates_passed}


def _champion_split(tags: dict[str, str], history_sha: str) -> TimeSplit | None:
    """The champion's time split, when it was trained on this very history file."""
    if tags.get("data.sha256") != history_sha:
        return None
    values = {
        key[len("split.") :]: value for key, value in tags.items() if key.startswith("split.")
    }
    try:
        return TimeSplit.from_dict(values)
    except (KeyError, ValueError):
        return None


def _champion_model(tags: dict[str, str]) -> dict[str, Any]:
    """The champion's fitted hyper-parameters and genuine share, as its version records them
    (a version from before they were recorded: the estimator's defaults and every row)."""
    import json

    try:
        params = json.loads(tags.get("model.params") or "{}")
        share = float(tags.get("model.genuine_share") or 1.0)
    except ValueError:
        params, share = {}, 1.0
    return {"params": params, "genuine_share": share}


def _check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when an MLflow server does not accept connections: the client's own
    retries take minutes before they give up."""
    import socket
    from urllib.parse import urlparse

    from fraud.errors import ServiceUnavailableError

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout_s):
            return
    except OSError as exc:
        raise ServiceUnavailableError(
            f"MLflow tracking server {mask_url(uri)} is not reachable ({exc}); start it or fix "
            "MLFLOW_TRACKING_URI. Nothing was registered and @champion is unchanged"
        ) from None


def _check_services(settings: Settings) -> Any:
    """The registry client and the champion's version; refuse early when either is missing."""
    _check_tracking_server(settings.tracking_uri)
    client = open_store(settings)
    champion = version_at_alias(client, settings.model_name, CHAMPION)
    if champion is None:
        raise RetrainRefusedError(
            f"no '{settings.model_name}' at @{CHAMPION} in {mask_url(settings.tracking_uri)} to challenge; "
            "train and promote one first with `fraud train`"
        )
    check_reachable(settings.kafka, timeout_s=5.0)
    return client, champion


def run_retrain(
    settings: Settings, options: RetrainOptions, step: Step = lambda label: nullcontext()
) -> RetrainResult:
    """Assemble, train, compare, register, gate and (when allowed) promote; see the module
    docstring. Raises RetrainRefusedError (nothing registered) on thin or missing input."""
    from threadpoolctl import threadpool_limits

    # OpenMP's thread team in scikit-learn's fit and predict: on a shared two-core host a
    # one-thread fit of the test bank took 1 s, the default team 13 s (hand-offs under load).
    with threadpool_limits(options.threads):
        return _run(settings, options, step)


def _run(settings: Settings, options: RetrainOptions, step: Step) -> RetrainResult:
    from stream.scoring import load_model_version
    from training import workflow
    from training.governance import file_sha256
    from training.model import PolicyTargets, TrainConfig, split_windows
    from training.retrain.labelled_set import load_labelled_set

    as_of = options.as_of.astimezone(UTC) if options.as_of is not None else None
    history_delay = timedelta(
        days=settings.label_delay_days
        if options.history_label_delay_days is None
        else options.history_label_delay_days
    )
    feedback_delay = options.feedback_label_delay or timedelta(days=settings.label_delay_days)
    with step("registry and broker"):
        client, champion = _check_services(settings)
    if not options.history.is_file():
        raise RetrainRefusedError(
            f"history file {options.history} does not exist; run `fraud simulate` or pass --data"
        )
    from training.data import feature_spec

    spec = feature_spec()
    with step(f"labelled set from {settings.topics.feedback} + {settings.topics.decisions}"):
        labelled, report = load_labelled_set(
            settings,
            as_of=as_of,
            label_delay=feedback_delay,
            feature_names=spec.names,
            presume_unlabelled_legit=options.presume_legit,
        )
    assembly = report.as_dict()
    as_of = datetime.fromisoformat(report.as_of.replace("Z", "+00:00"))
    check_labelled_set(labelled, assembly, options.minimums, f"'{settings.topics.feedback}'")
    older, recent = split_recent(labelled, options.recent_share, options.minimums.recent_frauds)

    with step("history: validate and replay through the stream features"):
        validated = workflow.load_and_validate(options.history, max_rejected_share=0.001)
        history, spec = workflow.build_features(validated, history_delay, spec)
        history_sha = file_sha256(options.history)
    split = _champion_split(dict(champion.tags), history_sha)
    split_source = f"champion v{champion.version}"
    if split is None:
        split_source = "default split of the history"
        split = default_split(
            history["timestamp"],
            history_delay,
            options.test_days,
            options.validation_days,
            options.warmup_days,
        )
    customers = options.customers or workflow.customers_path_for(options.history)
    groups, _ = workflow.load_groups(customers, history, split.test_from)
    test_groups = None
    if groups is not None:
        test_groups = groups.loc[split.mask(history["timestamp"], "test")]

    windows = combine_windows(split_windows(history, split), feedback_rows(older, spec))
    gate = _fairness_gate(options)
    inherited = _champion_model(dict(champion.tags))
    params = {**inherited["params"], **options.model_params}
    config = TrainConfig(
        seed=options.seed,
        targets=PolicyTargets(
            max_alert_rate=options.max_alert_rate, decline_confidence=options.decline_confidence
        ),
        fairness_gate=gate,
        with_baseline=False,
        overrides={"hist_gradient_boosting": params} if params else {},
        genuine_share=inherited["genuine_share"],
    )
    with step(f"train the challenger on {len(windows['train']):,} rows"):
        outcome = train_challenger(windows, split, spec, config, test_groups)

    with step(f"score the recent labelled window ({len(recent):,} rows) with both models"):
        current = load_model_version(settings, version=str(champion.version))
        names = list(outcome.spec.names)
        challenger_model = outcome.default.model
        comparison = compare_on_window(
            recent,
            {
                "challenger": (
                    lambda frame: challenger_model.predict_proba(frame[names])[:, 1],
                    outcome.default.threshold_choice.thresholds,
                ),
                "champion": (current.predict_scores, current.thresholds),
            },
            paired=("challenger", "champion"),
            confidence=options.recent_confidence,
            replicates=options.recent_replicates,
            seed=options.seed,
        )
    comparison["champion_version"] = str(champion.version)
    recent_gate = _recent_gate(comparison, options.recent_tolerance)
    digest = labelled_set_digest(history_sha, labelled)
    lineage = lineage_record(settings, assembly, older, recent, comparison, digest, as_of, options)

    with step("register the challenger with its lineage"):
        version = register_challenger(
            settings, client, outcome, validated, history_sha, options, lineage
        )
        log_recent_window(client, version.run_id, recent, lineage)

    with step("promotion gates"):
        gates, history_comparison, previous = check_gates(
            settings, version.version, options.history_tolerance
        )
        gates = [recent_gate, *gates]
        promoted = False
        if options.promote and all(g.passed for g in gates):
            decision = promote(settings, version.version, tolerance=options.history_tolerance)
            promoted = decision.promoted
            gates = [recent_gate, *decision.gates]
        record_decision(client, settings, version.version, gates, promoted, previous, options)
    after = version_at_alias(client, settings.model_name, CHAMPION)
    return RetrainResult(
        as_of=as_of.isoformat(),
        champion_before=str(champion.version),
        version=version.version,
        gates=gates,
        promoted=promoted,
        champion_after=str(after.version) if after is not None else "",
        assembly=assembly,
        recent=comparison,
        history_comparison=history_comparison,
        split=split.as_dict(),
        split_source=split_source,
        training_rows={
            "history": int((windows["train"]["origin"] == "history").sum()),
            "feedback": len(older),
            "validation": len(windows["validation"]),
            "test": len(windows["test"]),
        },
        dataset_digest=digest,
    )


def _fairness_gate(options: RetrainOptions) -> Any:
    from training.evaluation import configured_gate

    return configured_gate(options.fairness_band, options.fairness_min_events)


def _recent_gate(comparison: dict[str, Any], tolerance: float) -> Gate:
    """The challenger fails when it is credibly worse than the champion on the recent labelled
    window: the upper confidence bound of (its average precision - the champion's) below
    -tolerance. A point comparison would be a coin flip between close models: with ~50 frauds
    average precision moves by a few hundredths between runs of the same traffic."""
    challenger = comparison["challenger"]["average_precision"]
    champion = comparison["champion"]["average_precision"]
    window = (
        f"recent labelled window ({comparison['rows']} rows, {comparison['fraud']} fraud, "
        f"{comparison['event_time_from']} to {comparison['event_time_to']})"
    )
    difference = comparison.get("average_precision_difference")
    if challenger is None or champion is None or difference is None:
        detail = f"average precision cannot be compared on the {window}: it needs fraud and legit"
        return Gate("recent_window", False, detail)
    bound = difference["upper_bound"]
    passed = bound >= -tolerance
    detail = (
        f"average precision on the {window}: challenger {challenger:.4f} vs champion "
        f"v{comparison['champion_version']} {champion:.4f}, difference "
        f"{difference['difference']:+.4f} with {100 * difference['confidence']:g}% upper "
        f"confidence bound {bound:+.4f} (paired bootstrap of the rows, "
        f"{difference['replicates']} replicates stratified by label), "
        + ("not below" if passed else "below")
        + f" minus the tolerance {tolerance:g}: "
        + ("not credibly worse" if passed else "credibly worse")
    )
    return Gate("recent_window", passed, detail)
