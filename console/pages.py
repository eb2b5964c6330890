"""What the pages show, computed from the store's rows (pure: no requests, no SQL).

query, problems = queue_query(request.query_params)
alert_view(alert, decision, history, terminal, infos)   # the alert page's sections
waiting(now_us - decided_us)                            # "12 min"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from console.explain import plain_reasons, transaction_facts
from console.store import QueueQuery
from stream.features import TERMINAL_WINDOWS, FeatureInfo, definition, merchant_category_group_code

MCC = re.compile(r"^[0-9]{4}$")
# Shown under "Transaction": how it was made, beside the alert's own fields.
TRANSACTION_FEATURES = ("channel_code", "hour_of_day", "distance_customer_to_terminal_km")
TERMINAL_WINDOW, _ = TERMINAL_WINDOWS[-1]
TERMINAL_DAYS = int(TERMINAL_WINDOW.removesuffix("d"))
GROUP_NAMES = {
    code: name.replace("_", " ") for code, name, _ in definition.MERCHANT_CATEGORY_GROUPS
}


def _amount(text: str | None, name: str, problems: list[str]) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{name} must be a number, got {text!r}")
        return None
    if value != value or value < 0:
        problems.append(f"{name} must be a number >= 0, got {text!r}")
        return None
    return value


def queue_query(
    params: Mapping[str, str], tiers: Sequence[str] = ()
) -> tuple[QueueQuery, list[str]]:
    """The queue's form -> a QueueQuery and what was wrong with it (ignored fields)."""
    problems: list[str] = []
    sort = params.get("sort", "score")
    status = params.get("status", "open")
    if sort not in ("score", "age"):
        problems.append(f"sort must be score or age, got {sort!r}")
        sort = "score"
    if status not in ("open", "labelled", "all"):
        problems.append(f"status must be open, labelled or all, got {status!r}")
        status = "open"
    chosen = tuple(t for t in tiers if t in ("review", "decline")) or ("review", "decline")
    mcc = (params.get("mcc") or "").strip()
    if mcc and not MCC.match(mcc):
        problems.append(f"merchant category must be 4 digits, got {mcc!r}")
        mcc = ""
    query = QueueQuery(
        sort=sort,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        tiers=chosen,
        min_amount=_amount(params.get("min_amount"), "minimum amount", problems),
        max_amount=_amount(params.get("max_amount"), "maximum amount", problems),
        merchant_category=mcc or None,
    )
    return query, problems


def waiting(elapsed_us: int) -> str:
    """How long an alert has waited: "40 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    seconds = max(0, elapsed_us // 1_000_000)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def clock(moment_us: int) -> str:
    """A wall-clock instant as "14:05 UTC"."""
    return datetime.fromtimestamp(moment_us / 1e6, UTC).strftime("%H:%M UTC")


def merchant_label(mcc: str) -> str:
    """'5944' -> '5944 jewelry'."""
    if not MCC.match(mcc or ""):
        return mcc or "unknown"
    return f"{mcc} {GROUP_NAMES.get(merchant_category_group_code(mcc), 'other')}"


def terminal_view(
    counts: Mapping[str, int], features: Mapping[str, Any], infos: Mapping[str, FeatureInfo]
) -> dict[str, Any]:
    """The terminal's recent fraud: confirmed frauds among its alerts (this console's labels)
    over its transactions in the same window (the scorer's count), and the model's own view
    (the after-delay fraud rate it scored with)."""
    transactions = features.get(f"terminal_count_{TERMINAL_WINDOW}")
    rate = None
    if isinstance(transactions, int | float) and transactions > 0:
        rate = counts["fraud"] / transactions
    model_view = transaction_facts(
        features, infos, [f"terminal_fraud_rate_{TERMINAL_WINDOW}_after_delay"]
    )
    return {
        "days": TERMINAL_DAYS,
        "counts": counts,
        "transactions": transactions,
        "confirmed_rate": rate,
        "model_view": model_view[0][1] if model_view else None,
    }


def alert_view(
    alert: Mapping[str, Any],
    decision: Mapping[str, Any] | None,
    infos: Mapping[str, FeatureInfo],
) -> dict[str, Any]:
    """The alert page's explanation: reasons in words and how the transaction was made. The
    decision (when it has arrived) supplies the full feature vector behind the baselines."""
    features: Mapping[str, Any] = (decision or {}).get("features", {})
    codes = (decision or {}).get("reason_codes") or alert["reason_codes"]
    return {
        "reasons": plain_reasons(codes, features, infos),
        "facts": [text for _, text in transaction_facts(features, infos, TRANSACTION_FEATURES)],
        "merchant": merchant_label(alert["merchant_category"]),
    }
