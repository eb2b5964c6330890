"""Reason codes in plain words, with the values behind them (pure).

    reasons = plain_reasons(alert["reason_codes"], decision["features"], feature_info())
    reasons[0].text -> "7 transactions on this card in the last hour; this card averages 0.4
                        an hour"

Every sentence comes from the feature's description (stream.features.metadata: its phrase, unit
and baseline), never from wording written here for one feature; a feature without a description
(a model newer than this console) is shown by name and value rather than hidden.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream.features import FeatureInfo


@dataclass(frozen=True)
class Reason:
    feature: str
    text: str
    contribution: float  # log-odds the feature added to the score


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _count(value: float) -> str:
    if value.is_integer() or abs(value) >= 10:
        return _number(value, 0)
    return _number(value, 1 if abs(value) >= 0.1 else 2)


def _duration(seconds: float) -> str:
    for size, one, many in (
        (86400, "day", "days"),
        (3600, "hour", "hours"),
        (60, "minute", "minutes"),
    ):
        if seconds >= size:
            amount = seconds / size
            shown = _count(round(amount, 1))
            return f"{shown} {one if shown == '1' else many}"
    shown = _count(round(seconds, 1))
    return f"{shown} {'second' if shown == '1' else 'seconds'}"


def format_value(value: float, info: FeatureInfo) -> str:
    """A value in its feature's unit: 1,234.50 / 7 / 6.2 times / 0.7% / 12 km / 3 minutes /
    03:00 UTC / a code's words."""
    unit = info.unit
    if unit == "label":
        return info.labels.get(int(value), f"code {value:g}")
    if unit == "money":
        return _number(value, 2)
    if unit == "count":
        return _count(value)
    if unit == "ratio":
        return f"{_count(round(value, 1))} times"
    if unit == "share":
        return f"{value:.1%}" if value >= 0.001 or value == 0 else f"{value:.2%}"
    if unit == "km":
        return f"{_number(value, 0 if value >= 10 else 1)} km"
    if unit == "kmh":
        return f"{_number(value, 0)} km/h"
    if unit == "duration":
        return _duration(value)
    if unit == "hour":
        return f"{int(value):02d}:00 UTC"
    return f"{value:g}"


def _present(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def describe(
    name: str,
    value: Any,
    features: Mapping[str, Any],
    infos: Mapping[str, FeatureInfo],
) -> str:
    """One feature's value in words, with its baseline when the features carry it."""
    info = infos.get(name)
    number = _present(value)
    if info is None:
        return f"{name} = {'missing' if number is None else f'{number:g}'}"
    if number is None:
        return info.when_missing or info.phrase.format(value="unknown")
    text = info.phrase.format(value=format_value(number, info))
    baseline = info.baseline
    if baseline is not None:
        reference = _present(features.get(baseline.feature))
        if reference is not None:
            usual = format_value(reference * baseline.scale, info)
            text += "; " + baseline.phrase.format(value=usual)
    return text


def plain_reasons(
    reason_codes: Sequence[Mapping[str, Any]],
    features: Mapping[str, Any],
    infos: Mapping[str, FeatureInfo],
) -> list[Reason]:
    """The reason codes of a decision or alert in words, in the order given (strongest first).

    A reason's own `value` is the one the model saw; `features` (the decision's vector, may be
    empty) supplies the baselines."""
    reasons = []
    for code in reason_codes:
        name = str(code.get("feature", "?"))
        value = code.get("value", features.get(name))
        contribution = _present(code.get("contribution")) or 0.0
        reasons.append(Reason(name, describe(name, value, features, infos), contribution))
    return reasons


def transaction_facts(
    features: Mapping[str, Any], infos: Mapping[str, FeatureInfo], names: Sequence[str]
) -> list[tuple[str, str]]:
    """(name, words) for the chosen features that the vector carries, in `names` order."""
    return [
        (name, describe(name, features[name], features, infos))
        for name in names
        if name in features
    ]
