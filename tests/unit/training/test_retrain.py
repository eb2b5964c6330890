"""Retraining without services: labelled-set checks, the recent cut, combined windows, the
recent-window comparison and its gate (a paired bootstrap), the dataset digest and the CLI's
argument parsing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer

from fraud.cli.options import parse_band, parse_interval, parse_model_params
from stream.scoring import Thresholds
from training.data import FeatureSpec, TimeSplit
from training.model import TrainConfig, split_windows
from training.retrain import (
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
from training.retrain.run import _champion_split, _recent_gate

T0 = pd.Timestamp("2026-11-01T00:00:00Z")


def labelled(labels: list[int], sources: list[str] | None = None) -> pd.DataFrame:
    """A labelled set as training.retrain.labelled_set assembles it: one row per second from T0."""
    n = len(labels)
    return pd.DataFrame(
        {
            "transaction_id": pd.Series([f"tx-{i:04d}" for i in range(n)], dtype="string"),
            "event_time": pd.to_datetime([T0 + pd.Timedelta(seconds=i) for i in range(n)]),
            "model_version": pd.Series(["1"] * n, dtype="string"),
            "label": pd.Series(labels, dtype="int8"),
            "source": pd.Series(sources or ["analyst"] * n, dtype="string"),
            "amount": np.arange(n, dtype=float),
        }
    )


def report(rows: int, presumed: int = 0, feedback_read: int | None = None) -> dict:
    return {
        "feedback_read": rows - presumed if feedback_read is None else feedback_read,
        "rows": rows,
        "presumed_legit": presumed,
        "too_recent": 4,
        "without_decision": 2,
        "invalid": 1,
        "after_as_of": 0,
        "label_delay_days": 10 / 86400,
    }


def test_no_feedback_is_refused_with_what_to_do() -> None:
    with pytest.raises(RetrainRefusedError, match=r"no feedback yet on 'feedback'.*fraud label"):
        check_labelled_set(labelled([]), report(0, feedback_read=0), Minimums(), "'feedback'")


def test_too_few_labels_counts_feedback_only_and_says_what_was_held_back() -> None:
    # 150 rows, but 60 of them presumed legit: 90 labels from feedback < 100.
    frame = labelled([1] * 20 + [0] * 130)
    with pytest.raises(RetrainRefusedError) as raised:
        check_labelled_set(frame, report(150, presumed=60), Minimums(labels=100), "'fb'")
    message = str(raised.value)
    assert "too few labels: 90 usable" in message
    assert "4 too recent for the label delay (10 s)" in message
    assert "2 without a logged decision" in message and "--min-labels" in message


def test_too_few_frauds_is_refused_and_enough_passes() -> None:
    with pytest.raises(RetrainRefusedError, match="too few fraud labels: 9 of 200"):
        check_labelled_set(labelled([1] * 9 + [0] * 191), report(200), Minimums(), "'fb'")
    check_labelled_set(labelled([1] * 10 + [0] * 190), report(200), Minimums(), "'fb'")


def test_split_recent_keeps_the_latest_share_out_of_training() -> None:
    frame = labelled([1, 0, 0, 0, 0, 1, 0, 0, 0, 1] * 10).sample(frac=1.0, random_state=3)
    older, recent = split_recent(frame, recent_share=0.3)
    assert (len(older), len(recent)) == (70, 30)
    assert older["event_time"].max() < recent["event_time"].min()
    assert list(recent["transaction_id"]) == [f"tx-{i:04d}" for i in range(70, 100)]
    assert older["event_time"].is_monotonic_increasing


def test_split_recent_refuses_a_recent_window_without_fraud() -> None:
    frame = labelled([1] * 10 + [0] * 90)  # every fraud is old
    with pytest.raises(RetrainRefusedError, match=r"recent part .* 30 rows and 0 fraud"):
        split_recent(frame, recent_share=0.3)


def test_feedback_rows_join_the_training_window_with_their_logged_features() -> None:
    spec = FeatureSpec(names=("amount", "never_logged"), categorical=(), protected=())
    rows = feedback_rows(labelled([1, 0], ["chargeback", "presumed_legit"]), spec)
    assert list(rows["origin"]) == ["feedback:chargeback", "feedback:presumed_legit"]
    assert list(rows["is_fraud"]) == [1, 0]
    assert list(rows["amount"]) == [0.0, 1.0]
    assert rows["never_logged"].isna().all()

    history = {
        "train": pd.DataFrame({"transaction_id": ["h1"], "is_fraud": [0], "amount": [5.0]}),
        "validation": pd.DataFrame({"transaction_id": ["h2"], "is_fraud": [0], "amount": [6.0]}),
        "test": pd.DataFrame({"transaction_id": ["h3"], "is_fraud": [1], "amount": [7.0]}),
    }
    windows = combine_windows(history, rows)
    assert list(windows["train"]["transaction_id"]) == ["h1", "tx-0000", "tx-0001"]
    assert list(windows["train"]["origin"]) == [
        "history",
        "feedback:chargeback",
        "feedback:presumed_legit",
    ]
    assert len(windows["validation"]) == 1 and "origin" not in history["train"].columns


def test_compare_on_window_scores_the_same_rows_with_each_model() -> None:
    recent = labelled([0, 0, 1, 0, 1, 0])
    perfect = recent["label"].to_numpy(dtype=float) * 0.9 + 0.05
    comparison = compare_on_window(
        recent,
        {
            "challenger": (lambda frame: perfect, Thresholds(review=0.5, decline=0.8)),
            # ranks by amount: frauds at positions 2 and 4 score 2/5 and 4/5
            "champion": (lambda frame: frame["amount"].to_numpy() / 5, Thresholds(0.7, 0.9)),
        },
    )
    assert comparison["rows"] == 6 and comparison["fraud"] == 2
    assert comparison["challenger"]["average_precision"] == pytest.approx(1.0)
    assert comparison["challenger"]["alert_recall"] == 1.0
    assert comparison["challenger"]["alert_rate"] == pytest.approx(2 / 6)
    # champion: ranking 5 (legit), 4 (fraud), 3, 2 (fraud), ...: AP = (1/2 + 2/4) / 2
    assert comparison["champion"]["average_precision"] == pytest.approx(0.5)
    assert comparison["champion"]["alert_recall"] == 0.5  # only amount 4 reaches 0.8 >= 0.7
    assert "average_precision_difference" not in comparison  # only when a pair is named
    comparison["champion_version"] = "3"
    # Without the bootstrap's bound the gate cannot vouch for the challenger: it fails closed.
    assert not _recent_gate(comparison, 0.0).passed


# -- the recent_window gate: a paired bootstrap of average precision --------------------------


def recent_window(rows: int = 4000, frauds: int = 50, seed: int = 11) -> pd.DataFrame:
    """A recent labelled window of `rows` rows, `frauds` of them fraud (shuffled)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(rows, dtype=int)
    labels[rng.choice(rows, frauds, replace=False)] = 1
    return labelled(labels.tolist())


def champion_scores(window: pd.DataFrame, seed: int = 12) -> np.ndarray:
    """A good but imperfect model: fraud scores higher on average, with overlap."""
    rng = np.random.default_rng(seed)
    return rng.normal(window["label"].to_numpy() * 3.0, 1.0)


def gate_on(
    window: pd.DataFrame,
    challenger: np.ndarray,
    champion: np.ndarray,
    tolerance: float = 0.0,
    confidence: float = 0.95,
    seed: int = 1,
) -> tuple[dict, object]:
    thresholds = Thresholds(review=0.5, decline=0.9)
    comparison = compare_on_window(
        window,
        {
            "challenger": (lambda frame: challenger, thresholds),
            "champion": (lambda frame: champion, thresholds),
        },
        paired=("challenger", "champion"),
        confidence=confidence,
        replicates=300,  # enough for these windows' clear-cut cases, and quick
        seed=seed,
    )
    comparison["champion_version"] = "3"
    return comparison, _recent_gate(comparison, tolerance)


def test_paired_bootstrap_resamples_frauds_among_frauds_and_the_same_rows_for_both() -> None:
    """Stratified: every replicate keeps the window's fraud count (a replicate of a model that
    ranks every fraud first is exactly 1.0). Paired: two copies of one model differ by nothing in
    any replicate, though each replicate's average precision moves."""
    from training.evaluation import bootstrap_average_precision

    rng = np.random.default_rng(5)
    y = (rng.random(600) < 0.05).astype(int)
    perfect = y + rng.random(600) * 0.5
    noisy = np.round(rng.normal(y * 2.0, 1.0), 1)  # rounded: many ties
    replicates = bootstrap_average_precision(y, [perfect, noisy, noisy], replicates=50, seed=9)
    assert replicates.shape == (3, 50)
    assert np.allclose(replicates[0], 1.0)
    assert np.array_equal(replicates[1], replicates[2])
    assert replicates[1].std() > 0.01


def test_identical_models_pass_with_a_zero_difference() -> None:
    window = recent_window()
    scores = champion_scores(window)
    comparison, gate = gate_on(window, scores, scores.copy())
    difference = comparison["average_precision_difference"]
    assert difference["of"] == "challenger - champion"
    assert difference["difference"] == 0.0
    assert difference["lower_bound"] == difference["upper_bound"] == 0.0
    assert gate.passed


def test_a_challenger_with_inverted_scores_fails() -> None:
    window = recent_window()
    scores = champion_scores(window)
    comparison, gate = gate_on(window, -scores, scores)
    difference = comparison["average_precision_difference"]
    assert difference["upper_bound"] < -0.5
    assert difference["lower_bound"] <= difference["difference"] <= difference["upper_bound"]
    assert not gate.passed and gate.detail.endswith("credibly worse")


def test_a_close_challenger_a_little_behind_on_the_point_estimate_passes() -> None:
    """Same model, a little noise on the scores: the point difference is a small deficit (a
    point comparison at tolerance 0 refused it), but not a credible one with 50 frauds."""
    window = recent_window()
    scores = champion_scores(window)
    close = scores + np.random.default_rng(4).normal(0, 0.15, len(scores))
    comparison, gate = gate_on(window, close, scores)
    difference = comparison["average_precision_difference"]
    challenger = comparison["challenger"]["average_precision"]
    champion = comparison["champion"]["average_precision"]
    assert difference["difference"] == pytest.approx(challenger - champion)
    assert -0.01 < difference["difference"] < 0  # of the size seen between runs (-0.006)
    assert difference["lower_bound"] < difference["difference"] < 0 < difference["upper_bound"]
    assert gate.passed and gate.detail.endswith("not credibly worse")


def test_the_tolerance_forgives_a_small_credible_deficit() -> None:
    """200 frauds make a deficit of 0.03 credible; a tolerance of 0.02 lets it through."""
    window = recent_window(rows=8000, frauds=200)
    scores = champion_scores(window)
    worse = scores + np.random.default_rng(4).normal(0, 0.3, len(scores))
    comparison, gate = gate_on(window, worse, scores)
    upper = comparison["average_precision_difference"]["upper_bound"]
    assert -0.02 < upper < 0 and not gate.passed
    assert _recent_gate(comparison, 0.02).passed
    assert _recent_gate(comparison, round(-upper, 4) + 0.0001).passed
    assert not _recent_gate(comparison, round(-upper, 4) - 0.0001).passed


def test_the_bound_is_reproducible_with_the_same_seed() -> None:
    window = recent_window()
    scores = champion_scores(window)
    close = scores + np.random.default_rng(4).normal(0, 0.15, len(scores))
    first, _ = gate_on(window, close, scores, seed=7)
    again, _ = gate_on(window, close, scores, seed=7)
    other, _ = gate_on(window, close, scores, seed=8)
    assert first["average_precision_difference"] == again["average_precision_difference"]
    assert (
        first["average_precision_difference"]["upper_bound"]
        != other["average_precision_difference"]["upper_bound"]
    )
    assert (
        first["average_precision_difference"]["difference"]
        == other["average_precision_difference"]["difference"]
    )
    # A higher confidence asks for more evidence: its upper bound lies further up.
    wider, _ = gate_on(window, close, scores, seed=7, confidence=0.99)
    assert (
        wider["average_precision_difference"]["upper_bound"]
        > first["average_precision_difference"]["upper_bound"]
    )


def test_the_gate_says_what_it_measured_in_plain_words() -> None:
    window = recent_window()
    scores = champion_scores(window)
    comparison, gate = gate_on(window, -scores, scores, tolerance=0.02)
    difference = comparison["average_precision_difference"]
    challenger = comparison["challenger"]["average_precision"]
    champion = comparison["champion"]["average_precision"]
    assert gate.name == "recent_window"
    assert "recent labelled window (4000 rows, 50 fraud, " in gate.detail
    assert f"challenger {challenger:.4f} vs champion v3 {champion:.4f}" in gate.detail
    assert f"difference {difference['difference']:+.4f}" in gate.detail
    assert f"95% upper confidence bound {difference['upper_bound']:+.4f}" in gate.detail
    assert "paired bootstrap of the rows, 300 replicates stratified by label" in gate.detail
    assert "below minus the tolerance 0.02: credibly worse" in gate.detail


def test_the_version_and_its_model_card_carry_the_difference_and_its_bounds() -> None:
    from training.retrain.lineage import _difference_sentence, recent_difference_tags

    window = recent_window()
    scores = champion_scores(window)
    comparison, _ = gate_on(window, -scores, scores)
    tags = recent_difference_tags(comparison, {"recent_tolerance": 0.01})
    difference = comparison["average_precision_difference"]
    assert tags["retrain.recent_ap_difference"] == difference["difference"]
    assert tags["retrain.recent_ap_difference_lower"] == difference["lower_bound"]
    assert tags["retrain.recent_ap_difference_upper"] == difference["upper_bound"]
    assert tags["retrain.recent_ap_confidence"] == 0.95
    assert tags["retrain.recent_tolerance"] == 0.01
    sentence = _difference_sentence({key: str(value) for key, value in tags.items()})
    assert f"Difference {difference['difference']:+.4f}, 95% one-sided bounds" in sentence
    assert f"{difference['upper_bound']:+.4f} (upper; 300 paired replicates" in sentence
    assert "below minus the tolerance (0.01)" in sentence
    assert _difference_sentence({}) == ""  # a version retrained before the bound was recorded
    assert recent_difference_tags({"rows": 3}, {}) == {}


def test_the_bootstrap_needs_both_classes_and_a_sensible_confidence() -> None:
    from training.evaluation import paired_difference

    with pytest.raises(ValueError, match="both present"):
        paired_difference([0, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match=r"\[0.5, 1\)"):
        paired_difference([0, 1], [0.1, 0.2], [0.2, 0.1], confidence=1.0)


def test_dataset_digest_follows_every_label_and_the_history() -> None:
    frame = labelled([0, 1, 0])
    same = labelled([0, 1, 0])
    flipped = labelled([0, 1, 1])
    assert labelled_set_digest("abc", frame) == labelled_set_digest("abc", same)
    assert labelled_set_digest("abc", frame) != labelled_set_digest("abc", flipped)
    assert labelled_set_digest("abc", frame) != labelled_set_digest("abd", frame)


def test_the_champions_split_is_reused_only_for_the_same_history_file() -> None:
    split = TimeSplit(
        pd.Timestamp("2026-01-04", tz="UTC"),
        pd.Timestamp("2026-01-08", tz="UTC"),
        pd.Timestamp("2026-01-15", tz="UTC"),
        pd.Timestamp("2026-01-22", tz="UTC"),
        pd.Timestamp("2026-01-29", tz="UTC"),
        pd.Timestamp("2026-02-05", tz="UTC"),
        timedelta(days=7),
    )
    tags = {"data.sha256": "abc", **{f"split.{k}": str(v) for k, v in split.as_dict().items()}}
    assert _champion_split(tags, "abc") == split
    assert _champion_split(tags, "other") is None
    assert _champion_split({"data.sha256": "abc"}, "abc") is None


def _synthetic_windows(rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], TimeSplit]:
    """History where fraud has a high `amount`; timestamps inside each window of the split."""
    split = TimeSplit(
        pd.Timestamp("2026-01-01", tz="UTC"),
        pd.Timestamp("2026-01-05", tz="UTC"),
        pd.Timestamp("2026-01-06", tz="UTC"),
        pd.Timestamp("2026-01-08", tz="UTC"),
        pd.Timestamp("2026-01-09", tz="UTC"),
        pd.Timestamp("2026-01-11", tz="UTC"),
        timedelta(days=1),
    )
    n = 3000
    fraud = rng.random(n) < 0.05
    history = pd.DataFrame(
        {
            "transaction_id": [f"h{i}" for i in range(n)],
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.sort(rng.integers(0, 10 * 86400, n)), unit="s"),
            "card_id": [f"card-{i % 200}" for i in range(n)],
            "customer_id": [f"cust-{i % 150}" for i in range(n)],
            "is_fraud": fraud.astype(int),
            "amount": np.where(fraud, rng.normal(300, 50, n), rng.normal(60, 30, n)),
            "foreign": np.zeros(n),
        }
    )
    return split_windows(history, split), split


def test_train_on_windows_learns_what_only_the_feedback_shows() -> None:
    rng = np.random.default_rng(7)
    windows, split = _synthetic_windows(rng)
    spec = FeatureSpec(names=("amount", "foreign"), categorical=(), protected=())
    # A new pattern, only in feedback: small foreign amounts are fraud.
    m = 400
    new_fraud = rng.random(m) < 0.3
    feedback = labelled(new_fraud.astype(int).tolist(), ["analyst"] * m)
    feedback["amount"] = rng.normal(60, 30, m)
    feedback["foreign"] = new_fraud.astype(float)
    combined = combine_windows(windows, feedback_rows(feedback, spec))
    config = TrainConfig(
        seed=1,
        with_baseline=False,
        overrides={
            "hist_gradient_boosting": {"max_iter": 30, "learning_rate": 0.3, "min_samples_leaf": 20}
        },
    )

    outcome = train_challenger(combined, split, spec, config, test_groups=None)

    assert len(outcome.windows["train"]) == len(windows["train"]) + m
    assert outcome.baseline is None and outcome.fairness is None
    assert outcome.default.evaluation["test"]["average_precision"] > 0.9
    probe = pd.DataFrame({"amount": [60.0, 60.0], "foreign": [0.0, 1.0]})
    plain, foreign = outcome.default.model.predict_proba(probe)[:, 1]
    assert foreign > 0.5 > plain
    assert set(outcome.importance.index) == {"amount", "foreign"}


def test_train_on_windows_refuses_a_window_without_fraud() -> None:
    windows, split = _synthetic_windows(np.random.default_rng(7))
    windows["test"] = windows["test"].assign(is_fraud=0)
    spec = FeatureSpec(names=("amount", "foreign"), categorical=(), protected=())
    with pytest.raises(RetrainRefusedError, match=r"the test window has .* 0 fraud"):
        train_challenger(
            combine_windows(windows, feedback_rows(labelled([]), spec)),
            split,
            spec,
            TrainConfig(),
            None,
        )


def test_cli_arguments_are_parsed_or_refused_clearly() -> None:
    assert parse_interval("7d") == timedelta(days=7)
    assert parse_interval("90s") == timedelta(seconds=90)
    assert parse_interval("1.5h") == timedelta(minutes=90)
    for bad in ("7", "0d", "weekly", "-1d"):
        with pytest.raises(typer.BadParameter, match="unit s/m/h/d/w"):
            parse_interval(bad)
    assert parse_model_params(["max_iter=50", "learning_rate=0.1", "loss=log_loss"]) == {
        "max_iter": 50,
        "learning_rate": 0.1,
        "loss": "log_loss",
    }
    with pytest.raises(typer.BadParameter, match="NAME=VALUE"):
        parse_model_params(["max_iter"])
    assert parse_band("0.5,2") == (0.5, 2.0)
    for bad in ("2,3", "0.8", "a,b", "0,1"):
        with pytest.raises(typer.BadParameter, match="LOW,HIGH"):
            parse_band(bad)


def test_fairness_gate_options_change_only_what_they_name() -> None:
    from pathlib import Path

    from training.evaluation import FairnessGate
    from training.retrain.run import RetrainOptions, _fairness_gate

    history = Path("history.parquet")
    assert _fairness_gate(RetrainOptions(history=history)) == FairnessGate()
    widened = _fairness_gate(
        RetrainOptions(history=history, fairness_min_events=5, fairness_band=(0.1, 10.0))
    )
    assert (widened.min_expected_events, widened.min_ratio, widened.max_ratio) == (5, 0.1, 10.0)
    assert widened.metric == FairnessGate().metric


def test_train_checks_its_fairness_band_before_touching_data(tmp_path: Path) -> None:
    """`fraud train --fairness-band` is refused (exit 2) before any history is read or made."""
    from typer.testing import CliRunner

    from fraud.cli.main import _register_commands, app

    _register_commands()
    missing = tmp_path / "none.parquet"
    result = CliRunner().invoke(
        app, ["train", "--data", str(missing), "--fairness-band", "1.2,1.5", "--no-simulate"]
    )
    assert result.exit_code == 2, result.output
    assert "LOW,HIGH" in result.output
    assert not missing.exists()


def test_decline_confidence_option() -> None:
    from fraud.cli.train import decline_confidence

    assert decline_confidence(0) is None  # the observed precision
    assert decline_confidence(0.9) == 0.9
    for bad in (0.3, 1.0, 1.5):
        with pytest.raises(typer.BadParameter, match=r"\[0.5, 1\)"):
            decline_confidence(bad)


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_a_bad_decline_confidence_is_refused_before_any_work(command: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fraud.cli.main import _register_commands, app

    _register_commands()
    missing = tmp_path / "none.parquet"
    args = [command, "--data", str(missing)]
    result = CliRunner().invoke(app, [*args, "--decline-confidence", "1.5"])
    assert result.exit_code == 2, result.output
    assert "--decline-confidence" in result.output


def test_a_bad_recent_confidence_is_refused_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fraud.cli.main import _register_commands, app

    _register_commands()
    missing = tmp_path / "none.parquet"
    for bad in ("0.3", "1", "1.5"):
        result = CliRunner().invoke(
            app, ["retrain", "--data", str(missing), "--recent-confidence", bad]
        )
        assert result.exit_code == 2, result.output
        assert "--recent-confidence" in result.output
