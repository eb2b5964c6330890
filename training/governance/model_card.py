"""`fraud model-card`: the champion's model card, written from registry metadata only.

Everything in the card is read back from MLflow (version tags, run parameters and the JSON
artifacts the training run logged), so the card describes what is registered, not what a
script believed at the time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fraud.errors import ModelNotFoundError
from fraud.settings import Settings
from stream.scoring import (
    CHAMPION,
    EVALUATION_ARTIFACT,
    download_json,
    open_store,
    version_at_alias,
)
from training.governance import card_sections as sections
from training.model import SEARCH_SPACE

_pct, _num, _table = sections.pct, sections.num, sections.table


def _evaluation_table(columns: dict[str, dict[str, Any]]) -> list[str]:
    def row(label: str, getter: Any, fmt: Any) -> list[str]:
        return [label, *(fmt(getter(evaluation)) for evaluation in columns.values())]

    header = ["metric (test period)", *columns]
    rows = [
        row("average precision", lambda e: e["average_precision"], _num),
        row("ROC AUC", lambda e: e["roc_auc"], _num),
        row("card precision@100 per day", lambda e: e["card_precision_at_100"], _num),
        row("alert rate (review + decline)", lambda e: e["alert_rate"], lambda v: _pct(v, 2)),
        row("decline precision", lambda e: e["tiers"]["decline"]["precision"], _pct),
        row("decline recall", lambda e: e["tiers"]["decline"]["recall"], _pct),
        row("review precision", lambda e: e["tiers"]["review"]["precision"], _pct),
        row("review recall", lambda e: e["tiers"]["review"]["recall"], _pct),
        row("alert precision", lambda e: e["tiers"]["alert"]["precision"], _pct),
        row("alert recall (review + decline)", lambda e: e["tiers"]["alert"]["recall"], _pct),
        row("Brier score", lambda e: e["calibration"]["brier"], lambda v: _num(v, 5)),
        row(
            "expected calibration error",
            lambda e: e["calibration"]["expected_calibration_error"],
            lambda v: _num(v, 5),
        ),
    ]
    return _table(header, rows)


def _fairness_section(fairness: dict[str, Any] | None) -> list[str]:
    if not fairness:
        return ["No fairness audit was recorded (no customers table was available)."]
    gate = fairness["gate"]
    metric = gate["metric"]
    lines = [
        f"Selection = {fairness['selection']}. Gate: {metric} ratio between the judged groups "
        f"within {gate['min_ratio']}-{gate['max_ratio']}, failing when the ratio is outside the "
        "band and its interval (bootstrap over customers, family-wise 95% over all pairs of "
        "judged groups) excludes parity. A group is judged "
        f"when it is expected to hold at least {gate['min_expected_events']:.0f} events at the "
        "overall rate; smaller groups are shown but too noisy to judge. "
        f"Result: **{'passed' if fairness['passed'] else 'failed'}**"
        + (" with warnings." if fairness.get("warnings") else "."),
        "",
    ]
    for attribute, result in fairness["attributes"].items():
        verdict = (
            "FAIL"
            if not result["passed"]
            else ("pass, with warning" if result["warning"] else "pass")
        )
        lines += [f"**{attribute}**: {verdict}. {result['detail']}.", ""]
        rows = []
        for g in result["groups"]:
            interval = g.get("gate_metric_ci95")
            ci = f"[{_pct(interval[0], 2)}, {_pct(interval[1], 2)}]" if interval else "n/a"
            rows.append(
                [
                    str(g["group"]),
                    str(g["transactions"]),
                    str(g["customers"]),
                    str(g["fraud"]),
                    _pct(g["false_positive_rate"], 2),
                    _pct(g["true_positive_rate"]),
                    _pct(g["selection_rate"], 2),
                    ci,
                    "yes" if g["judged"] else "too small",
                ]
            )
        header = [
            "group",
            "transactions",
            "customers",
            "fraud",
            "FPR",
            "TPR",
            "selection rate",
            f"{metric} 95% CI (customers)",
            "judged",
        ]
        lines.extend(_table(header, rows))
        diff, ratio = result["difference"], result["ratio"]
        lines += [
            "",
            "Between all groups (fairlearn): FPR difference "
            f"{_num(diff.get('false_positive_rate'))}, ratio "
            f"{_num(ratio.get('false_positive_rate'), 3)}; TPR difference "
            f"{_num(diff.get('true_positive_rate'))}, ratio "
            f"{_num(ratio.get('true_positive_rate'), 3)}; selection-rate ratio "
            f"{_num(ratio.get('selection_rate'), 3)}.",
            "",
        ]
    return lines


def _decline_rule(choice: dict[str, Any]) -> str:
    target = _pct(choice["targets"]["decline_precision"], 0)
    confidence = choice["targets"].get("decline_confidence")
    if confidence is None:
        return f"lowest score keeping decline precision >= {target}"
    rule = (
        f"lowest score whose decline precision is >= {target} with {_pct(confidence, 0)} "
        "confidence (one-sided Clopper-Pearson lower bound; the observed precision when "
        "validation holds too few frauds for that)"
    )
    return rule + f", here from the {choice.get('decline_rule', 'observed precision')}"


def _lower_bound(choice: dict[str, Any]) -> str:
    bound = choice.get("decline_precision_lower_bound")
    return "" if bound is None else f" (lower bound {_pct(bound)})"


def _targets_statement(targets: dict[str, Any]) -> str:
    precision_ok = targets["decline_precision_met"]
    recall_ok = targets["recall_met"]
    if targets["decline_precision"] is None:
        parts = [
            "No transaction was declined in the test period, so the decline-precision target "
            f"({_pct(targets['decline_precision_target'], 0)}) could not be shown to be met."
        ]
    else:
        parts = [
            f"Declines were {_pct(targets['decline_precision'])} precise against a target of "
            f"{_pct(targets['decline_precision_target'], 0)} "
            f"({'met' if precision_ok else 'NOT met'})."
        ]
    parts.append(
        f"Review + decline caught {_pct(targets['recall'])} of the fraud against a target of "
        f"{_pct(targets['recall_target'], 0)} ({'met' if recall_ok else 'NOT met'}), "
        f"alerting on {_pct(targets['alert_rate'], 2)} of transactions."
    )
    if not recall_ok:
        parts.append(
            "Catching 90% of the fraud would need the analysts to review more transactions than "
            "the alert-rate cap allows, or better features: the bank has to trade one target "
            "against the other."
        )
    return " ".join(parts)


def _chosen_by(summary: dict[str, Any]) -> str:
    search = summary.get("search")
    if not search:
        return ""
    return (
        f" (chosen out of time: trial {search['chosen_trial']} of {len(search['trials'])}, "
        "see the hyper-parameter search below)"
    )


def _gaps(split: dict[str, Any]) -> str:
    if split.get("refit"):
        return (
            f"Gaps: each fold's validation days start {split['gap_train_validation_days']:.0f} "
            "days after its training days; the test starts "
            f"{split['gap_validation_test_days']:.0f} days after the last labelled day."
        )
    return (
        f"Gaps: {split['gap_train_validation_days']:.0f} days between train and validation, "
        f"{split['gap_validation_test_days']:.0f} days between validation and test."
    )


def _chosen_on(split: dict[str, Any]) -> str:
    if split.get("refit"):
        return "the folds' out-of-time scores (the validation window, pooled)"
    return "the validation period"


def render(settings: Settings, alias: str = CHAMPION, fallback: str | None = None) -> str:
    """The model card of the version at `alias` (or at `fallback` when `alias` is unset)."""
    client = open_store(settings)
    name = settings.model_name
    version = version_at_alias(client, name, alias)
    if version is None and fallback is not None:
        version = version_at_alias(client, name, fallback)
    if version is None:
        raise ModelNotFoundError(
            f"no model '{name}' at @{alias}; run `make train` to register a champion first"
        )
    tags = dict(version.tags)
    run_id = str(version.run_id)
    run = client.get_run(run_id)
    summary = download_json(client, run_id, EVALUATION_ARTIFACT)
    validation = download_json(client, run_id, "data_validation.json")
    params = run.data.params
    split = summary["split"]
    test = summary["evaluation"]["test"]
    choice = summary["thresholds"]
    aliases = sorted(getattr(version, "aliases", []) or [])

    out: list[str] = [f"# Model card: {name} v{version.version}", ""]
    if CHAMPION not in aliases:
        out += [
            f"> **Not in production.** This version is not @{CHAMPION}: its promotion was "
            f"{tags.get('promotion.status', 'not attempted')} (gates below, under Lineage). "
            "The scorer does not use it.",
            "",
        ]
    out += [
        f"Generated by `fraud model-card` on {datetime.now(UTC).date().isoformat()} from the MLflow "
        "registry (version tags, run parameters and artifacts). Do not edit by hand; rerun "
        "`make train` or `fraud model-card`.",
        "",
        "## Model details",
        "",
        f"- Name and version: `{name}` v{version.version}, aliases: "
        + (", ".join(f"@{a}" for a in aliases) or "none"),
        f"- Registered: {datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(timespec='seconds')}",
        "- Type: gradient-boosted trees (scikit-learn HistGradientBoostingClassifier) with "
        "categorical features declared; fixed number of iterations, no early stopping "
        "(its internal hold-out would be a random split).",
        "- Hyper-parameters: "
        + ", ".join(
            f"{k.split('.', 1)[1]}={v}" for k, v in sorted(params.items()) if k.startswith("model.")
        )
        + _chosen_by(summary),
        f"- Seed: {params.get('seed')}",
        f"- Inputs ({len(summary['feature_names'])} features, computed by `stream.features.definition`, "
        f"the scorer's own code): {', '.join(f'`{f}`' for f in summary['feature_names'])}",
        f"- Categorical inputs: {', '.join(f'`{f}`' for f in summary['categorical_features']) or 'none'}",
        "- Output: probability of fraud; decision by two thresholds (below).",
        "- Not used as inputs: age, gender or any other protected attribute (they are joined "
        "only to audit fairness).",
        "",
        "## Intended use",
        "",
        "- Score card transactions in real time and route them to approve / review (fraud "
        "analyst) / decline, for the bank's fraud team.",
        "- Reason codes (top 3 contributions) accompany every review and decline so that an "
        "analyst can see why; a person reviews flagged transactions and customers can contest "
        "a decline.",
        "- Not for credit decisions, customer profiling or any use outside card-fraud screening.",
        "",
        "## Training data",
        "",
        f"- Source: `{tags.get('data.source')}` (sha256 `{tags.get('data.sha256')}`), "
        f"{tags.get('data.rows')} rows after validation.",
        f"- Validation: {validation.get('rows_read')} rows read, {validation.get('rows_rejected')} "
        f"rejected, {validation.get('rows_out_of_order')} out of time order; "
        f"result **{'passed' if validation.get('passed') else 'failed'}**.",
    ]
    for problem in validation.get("problems", []):
        out.append(
            f"  - {problem['severity']}: {problem.get('column') or ''} {problem['check']} ({problem['rows']} rows)"
        )
    out += [
        f"- Time split (half-open windows, label delay {split['label_delay_days']:.0f} days; "
        "never a random split):",
        "",
    ]
    refit = bool(split.get("refit"))
    labels = {
        "train": "train (refit: every labelled day)" if refit else "train",
        "validation": "validation (the folds' out-of-time days)" if refit else "validation",
        "test": "test",
    }
    out += _table(
        ["window", "from", "to", "transactions", "fraud"],
        [
            [
                labels[w],
                split[f"{w}_from"][:10],
                split[f"{w}_to"][:10],
                str(summary["rows"][w]),
                str(summary["fraud"][w]),
            ]
            for w in ("train", "validation", "test")
        ],
    )
    out += ["", _gaps(split)]
    out += sections.folds_section(summary)
    out += ["", *sections.search_section(summary, SEARCH_SPACE)]
    out += ["## Evaluation (test period)", ""]
    out += _evaluation_table(sections.comparison_columns(summary))
    out += sections.previous_design_lines(summary)
    out += ["", "### Decision tiers", ""]
    out += _table(
        ["tier", "transactions", "share", "fraud", "precision", "recall"],
        [
            [
                tier,
                str(test["tiers"][tier]["transactions"]),
                _pct(test["tiers"][tier]["share"], 2),
                str(test["tiers"][tier]["fraud"]),
                _pct(test["tiers"][tier]["precision"]),
                _pct(test["tiers"][tier]["recall"]),
            ]
            for tier in ("approve", "review", "decline", "alert")
        ],
    )
    out += ["", "### Recall per fraud scenario", ""]
    out += _table(*sections.scenario_rows(summary))
    out += [
        "",
        "### Against the bank's targets",
        "",
        _targets_statement(summary["targets_on_test"]),
        "",
    ]
    out += sections.curve_section(summary)
    out += [
        "## Decision thresholds",
        "",
        f"- decline if score >= **{choice['thresholds']['decline']:.6g}**; review if score >= "
        f"**{choice['thresholds']['review']:.6g}**; otherwise approve.",
        f"- Chosen on {_chosen_on(split)}: decline = {_decline_rule(choice)}; "
        f"review = highest score keeping recall "
        f">= {_pct(choice['targets']['recall'], 0)} unless the alert-rate cap of "
        f"{_pct(choice['targets']['max_alert_rate'], 0)} binds first.",
        f"- On validation: decline precision {_pct(choice['decline_precision'])}"
        f"{_lower_bound(choice)}, decline recall {_pct(choice['decline_recall'])}, alert recall "
        f"{_pct(choice['alert_recall'])}, alert rate "
        f"{_pct(choice['alert_rate'], 2)}; alert cap binding: {choice['alert_cap_binds']}.",
    ]
    out += [f"- Note: {note}" for note in choice.get("notes", [])]
    out += sections.carry_over_lines(summary)
    out += ["- Stored on the model version (tags `policy.*`, artifact `decision_policy.json`).", ""]
    out += ["## Fairness (test period)", "", *_fairness_section(summary.get("fairness"))]
    importance = list(summary.get("importance", {}).items())[:10]
    out += [
        "## Explanations",
        "",
        "Global importance (mean |SHAP contribution| in log-odds on a test sample):",
        "",
    ]
    out += _table(["feature", "importance"], [[f"`{k}`", _num(v)] for k, v in importance])
    out += [
        "",
        "Per-transaction reason codes: the three features that raised the score most (exact "
        "TreeSHAP over the model's own trees, `stream.scoring.reasons.ReasonCoder`).",
        "",
        "## Caveats and recommendations",
        "",
        "- Trained and evaluated on simulated transactions; figures on real traffic will differ. "
        "Re-run the evaluation on the bank's own history (`fraud backtest`) before relying on it.",
        "- The test period is short (days); metrics on rare scenarios rest on few cases.",
        "- Fairness groups marked 'too small' are not vouched for; a passing gate with a warning "
        "means a gap larger than the band that this test period cannot tell from noise.",
        "- True-positive rates by group follow the test period's fraud mix: a scenario the model "
        "barely catches (see recall per scenario) that happens to hit one group's cards lowers "
        "that group's TPR. Read TPR gaps together with the per-scenario recall.",
        "- Fraud patterns drift: monitor score and feature distributions against "
        "`reference_distribution.json` and retrain on fresh labels regularly.",
        "- Thresholds trade precision against analyst workload; revisit them with the fraud team "
        "when the alert budget or fraud mix changes.",
        "",
        "## Lineage",
        "",
        f"- MLflow run `{version.run_id}` (experiment `{run.info.experiment_id}`), model URI "
        f"`models:/{name}/{version.version}`",
        f"- Code: commit `{tags.get('code.commit')}` (uncommitted changes: {tags.get('code.dirty')})",
        f"- Environment: Python {run.data.tags.get('env.python')}, scikit-learn "
        f"{run.data.tags.get('env.scikit-learn')}, mlflow {run.data.tags.get('env.mlflow')}",
        f"- Promotion: {tags.get('promotion.status', 'not recorded')} at {tags.get('promotion.at', '-')} "
        f"by {tags.get('promotion.by', '-')}; previous champion: "
        f"{tags.get('promotion.previous_champion') or 'none'}"
        + (f"; reason: {tags['promotion.reason']}" if tags.get("promotion.reason") else ""),
    ]
    gates = json.loads(tags.get("promotion.gates", "[]") or "[]")
    out += [
        f"  - gate {g['name']}: {'pass' if g['passed'] else 'FAIL'} ({g['detail']})" for g in gates
    ]
    return "\n".join(out) + "\n"
