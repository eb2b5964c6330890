"""What each feature measures, in words an analyst reads: one `FeatureInfo` per name of
FEATURE_NAMES, with the unit of its value and, where one exists, the card's or terminal's usual
level to compare it with.

    info = feature_info()["card_count_1h"]
    info.phrase     -> "{value} transactions on this card in the last hour"
    info.unit       -> "count"
    info.baseline   -> Baseline("card_count_30d", 1/720, "this card averages {value} an hour ...")

The windowed card and terminal features are described from the same window and statistic tables
their names are built from (CARD_WINDOWS, CARD_STATS, TERMINAL_WINDOWS), so a window added there
is described here without a new entry; `feature_info` refuses to build when a name of
FEATURE_NAMES has no description. Turning a value into text (number formats, units) is the
reader's job: the analyst console does it in console/explain.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from stream.features.definition import (
    CARD_STATS,
    CARD_WINDOWS,
    CHANNEL_CODES,
    FEATURE_NAMES,
    MERCHANT_CATEGORY_GROUPS,
    TERMINAL_WINDOWS,
    UNKNOWN_CODE,
)
from stream.features.store import DEFAULT_LABEL_DELAY

# money: an amount; count: how many; ratio: times a reference; share: a fraction in [0, 1];
# km, kmh: distance and speed; duration: seconds; hour: hour of the day (UTC);
# label: a code whose meaning is in `labels` (flags and categories).
Unit = Literal["money", "count", "ratio", "share", "km", "kmh", "duration", "hour", "label"]


@dataclass(frozen=True)
class Baseline:
    """The usual level to compare a value with: `feature` times `scale`, said as `phrase`."""

    feature: str
    scale: float
    phrase: str  # with a {value} slot


@dataclass(frozen=True)
class FeatureInfo:
    name: str
    subject: Literal["transaction", "card", "terminal"]
    phrase: str  # with a {value} slot
    unit: Unit
    baseline: Baseline | None = None
    when_missing: str | None = None  # what a missing value (None) means
    labels: Mapping[int, str] = field(default_factory=dict)  # unit "label": code -> words


_WINDOW_NAME = re.compile(r"^(\d+)([hd])$")
_UNIT_WORDS = {"h": ("hour", "hours"), "d": ("day", "days")}


def _window_words(window: str) -> tuple[str, str]:
    """'1h' -> ('the last hour', 'an hour'); '7d' -> ('the last 7 days', 'per 7 days')."""
    match = _WINDOW_NAME.match(window)
    if match is None:
        raise ValueError(f"window name {window!r} is not <number><h|d>")
    count, (one, many) = int(match.group(1)), _UNIT_WORDS[match.group(2)]
    if count == 1:
        return f"the last {one}", f"an {one}" if one == "hour" else f"a {one}"
    return f"the last {count} {many}", f"per {count} {many}"


def _card_windowed() -> list[FeatureInfo]:
    longest, longest_width = CARD_WINDOWS[-1]
    since, _ = _window_words(longest)
    stat_words = {
        "count": ("{value} transactions on this card", "count"),
        "amount_sum": ("{value} spent on this card", "money"),
        "amount_mean": ("average amount {value} on this card", "money"),
        "amount_max": ("largest amount {value} on this card", "money"),
    }
    infos = []
    for window, width in CARD_WINDOWS:
        recent, per = _window_words(window)
        for stat in CARD_STATS:
            text, unit = stat_words[stat]
            baseline = None
            if window != longest:
                reference = f"card_{stat}_{longest}"
                if stat in ("count", "amount_sum"):  # totals: scaled to this window's width
                    baseline = Baseline(
                        reference, width / longest_width, f"this card averages {{value}} {per}"
                    )
                else:
                    baseline = Baseline(reference, 1.0, f"{{value}} over {since}")
            missing = f"no transactions on this card in {recent}" if stat != "count" else None
            infos.append(
                FeatureInfo(
                    f"card_{stat}_{window}",
                    "card",
                    f"{text} in {recent}",
                    unit,  # type: ignore[arg-type]
                    baseline,
                    missing,
                )
            )
    return infos


def _terminal_windowed(label_delay_days: int) -> list[FeatureInfo]:
    longest, longest_width = TERMINAL_WINDOWS[-1]
    since, _ = _window_words(longest)
    ago = "today" if label_delay_days == 0 else f"{label_delay_days} days ago"
    infos = []
    for window, width in TERMINAL_WINDOWS:
        recent, per = _window_words(window)
        span = recent.removeprefix("the last ")
        delayed = f"the {span} that ended {ago}"
        scaled = None
        rate_baseline = None
        if window != longest:
            scaled = Baseline(
                f"terminal_count_{longest}",
                width / longest_width,
                f"this terminal averages {{value}} {per}",
            )
            rate_baseline = Baseline(
                f"terminal_fraud_rate_{longest}_after_delay",
                1.0,
                f"{{value}} in the {since.removeprefix('the last ')} that ended {ago}",
            )
        infos.append(
            FeatureInfo(
                f"terminal_count_{window}",
                "terminal",
                f"{{value}} transactions at this terminal in {recent}",
                "count",
                scaled,
            )
        )
        infos.append(
            FeatureInfo(
                f"terminal_count_{window}_after_delay",
                "terminal",
                f"{{value}} transactions at this terminal in {delayed}",
                "count",
            )
        )
        infos.append(
            FeatureInfo(
                f"terminal_fraud_rate_{window}_after_delay",
                "terminal",
                f"{{value}} of this terminal's transactions in {delayed} confirmed fraud",
                "share",
                rate_baseline,
                f"no transactions at this terminal in {delayed}",
            )
        )
    return infos


def _flag(yes: str, no: str) -> dict[int, str]:
    return {1: yes, 0: no}


def _event_and_card() -> list[FeatureInfo]:
    longest, _ = CARD_WINDOWS[-1]
    since, _ = _window_words(longest)
    first = f"no earlier transaction on this card in {since}"
    channels = {code: name for name, code in CHANNEL_CODES.items()}
    channel_words = {"pos": "in store (pos)", "ecom": "online (ecom)", "atm": "cash machine (atm)"}
    groups = {code: name.replace("_", " ") for code, name, _ in MERCHANT_CATEGORY_GROUPS}
    unknown = {UNKNOWN_CODE: "unknown"}
    return [
        FeatureInfo(
            "amount",
            "transaction",
            "amount {value}",
            "money",
            Baseline(
                f"card_amount_mean_{longest}", 1.0, f"this card averages {{value}} in {since}"
            ),
        ),
        FeatureInfo("hour_of_day", "transaction", "made at {value}", "hour"),
        FeatureInfo(
            "is_night",
            "transaction",
            "made {value}",
            "label",
            labels=_flag("at night (00:00-05:59 UTC)", "in the daytime"),
        ),
        FeatureInfo(
            "is_weekend",
            "transaction",
            "made {value}",
            "label",
            labels=_flag("on a weekend", "on a weekday"),
        ),
        FeatureInfo(
            "channel_code",
            "transaction",
            "channel: {value}",
            "label",
            labels={**unknown, **{c: channel_words.get(n, n) for c, n in channels.items()}},
        ),
        FeatureInfo(
            "merchant_category_group_code",
            "transaction",
            "merchant group: {value}",
            "label",
            labels={**unknown, **groups},
        ),
        FeatureInfo(
            "distance_customer_to_terminal_km",
            "transaction",
            "terminal {value} from the customer's home",
            "km",
            when_missing="distance from the customer's home unknown",
        ),
        FeatureInfo(
            f"amount_to_card_mean_{longest}",
            "card",
            f"amount {{value}} this card's average in {since}",
            "ratio",
            when_missing=first,
        ),
        FeatureInfo(
            "seconds_since_prev_tx",
            "card",
            "{value} since this card's previous transaction",
            "duration",
            when_missing=first,
        ),
        FeatureInfo(
            "distance_from_prev_tx_km",
            "card",
            "{value} from where this card was used before",
            "km",
            when_missing=first,
        ),
        FeatureInfo(
            "speed_from_prev_tx_kmh",
            "card",
            "travelling at {value} since this card's previous transaction",
            "kmh",
            when_missing=first,
        ),
        FeatureInfo(
            "card_distinct_terminals_24h",
            "card",
            "{value} different terminals used by this card in the last 24 hours",
            "count",
        ),
        FeatureInfo(
            "card_distinct_countries_24h",
            "card",
            "{value} different countries for this card in the last 24 hours",
            "count",
        ),
        *(
            FeatureInfo(
                f"card_new_{thing}_{longest}",
                "card",
                "{value}",
                "label",
                when_missing=f"no {thing} recorded" if thing != "terminal" else None,
                labels=_flag(
                    f"a {thing} this card had not used in {since}",
                    f"a {thing} this card used in {since}",
                ),
            )
            for thing in ("terminal", "country", "device")
        ),
    ]


def _card_habits() -> list[FeatureInfo]:
    """CARD_HABIT_FEATURES: the event against its card's own lookback (kernels.card_habit_kernel:
    the lookback is the card's longest window; "typical day" is measured on that lookback before
    its last 4 days)."""
    longest, _ = CARD_WINDOWS[-1]
    since, _ = _window_words(longest)
    first = f"no earlier transaction on this card in {since}"
    young = "this card's history is too short to know its typical day"
    return [
        FeatureInfo(
            f"card_amount_percentile_{longest}",
            "card",
            f"amount larger than {{value}} of this card's transactions in {since}",
            "share",
            when_missing=first,
        ),
        FeatureInfo(
            f"amount_to_card_category_mean_{longest}",
            "card",
            f"amount {{value}} this card's average in this merchant group in {since}",
            "ratio",
            when_missing=f"first purchase of this card in this merchant group in {since}",
        ),
        FeatureInfo(
            f"card_category_share_{longest}",
            "card",
            f"{{value}} of this card's transactions in {since} were in this merchant group",
            "share",
            when_missing=first,
        ),
        FeatureInfo(
            f"card_hour_share_{longest}",
            "card",
            f"{{value}} of this card's transactions in {since} were within an hour of this time "
            "of day",
            "share",
            when_missing=first,
        ),
        FeatureInfo(
            f"card_channel_share_{longest}",
            "card",
            f"{{value}} of this card's transactions in {since} were on this channel",
            "share",
            when_missing=first,
        ),
        FeatureInfo(
            "card_typical_daily_count",
            "card",
            "this card makes {value} transactions on a typical day",
            "count",
            when_missing=young,
        ),
        FeatureInfo(
            "card_count_24h_to_typical_day",
            "card",
            "{value} this card's typical day in transactions over the last 24 hours",
            "ratio",
            when_missing=young,
        ),
        FeatureInfo(
            "card_count_4d_to_typical",
            "card",
            "{value} this card's typical pace in transactions over the last 4 days",
            "ratio",
            when_missing=young,
        ),
        FeatureInfo(
            "card_amount_4d_to_typical",
            "card",
            "{value} this card's typical spending over the last 4 days",
            "ratio",
            when_missing=young,
        ),
        FeatureInfo(
            f"card_terminal_uses_{longest}",
            "card",
            f"this card used this terminal {{value}} times in {since}",
            "count",
        ),
        FeatureInfo(
            "seconds_since_card_used_terminal",
            "card",
            "{value} since this card last used this terminal",
            "duration",
            when_missing=f"this card had not used this terminal in {since}",
        ),
        FeatureInfo(
            "seconds_since_card_first_used_device",
            "card",
            f"this device first seen on this card {{value}} ago (within {since})",
            "duration",
            when_missing=f"no device, or a device this card had not used in {since}",
        ),
        FeatureInfo(
            "card_new_terminals_4d",
            "card",
            "{value} terminals new to this card in the last 4 days",
            "count",
        ),
        FeatureInfo(
            "card_new_devices_4d",
            "card",
            "{value} devices new to this card in the last 4 days",
            "count",
        ),
    ]


@functools.cache
def feature_info(label_delay_days: int = DEFAULT_LABEL_DELAY.days) -> Mapping[str, FeatureInfo]:
    """Every feature of FEATURE_NAMES described, in that order; `label_delay_days` is the delay
    D of the terminal features' after-delay windows (the model's training delay)."""
    infos = {
        info.name: info
        for info in (
            *_event_and_card(),
            *_card_windowed(),
            *_card_habits(),
            *_terminal_windowed(label_delay_days),
        )
    }
    missing = [name for name in FEATURE_NAMES if name not in infos]
    extra = [name for name in infos if name not in FEATURE_NAMES]
    if missing or extra:
        raise ValueError(f"feature descriptions out of step: missing {missing}, unknown {extra}")
    return {name: infos[name] for name in FEATURE_NAMES}
