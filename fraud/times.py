"""Instants as the project writes and reads them: UTC, ISO 8601 / RFC 3339 text ending in `Z`.

One rule everywhere for text without a zone: it means UTC, never the machine's local time.

    parse_utc("2026-03-02T10:00:00Z")    -> aware datetime in UTC
    iso_utc(moment)                      -> "2026-03-02T10:00:00.000000Z"
    epoch_seconds("2026-03-02T10:00:00") -> seconds since 1970 (zone-less = UTC)
"""

from __future__ import annotations

from datetime import UTC, datetime

from fraud.errors import ValidationError


def parse_utc(text: str) -> datetime:
    """ISO 8601 text ('Z', an offset, or none = UTC) -> an aware datetime in UTC.

    Raises ValueError for text that is not a valid instant (month 13, day 30 of February)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_utc(moment: datetime, timespec: str = "microseconds", field: str = "timestamp") -> str:
    """An aware datetime -> '2026-01-01T12:00:00.123456Z'; a naive one is refused (ValidationError
    naming `field`), since guessing its zone is how times silently shift."""
    if moment.tzinfo is None:
        raise ValidationError(f"{field} must be timezone-aware", field, "timezone")
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_now_iso(timespec: str = "microseconds") -> str:
    return iso_utc(utc_now(), timespec)


def epoch_seconds(text: str) -> float:
    """ISO 8601 text -> epoch seconds, with the same zone rule as `parse_utc`."""
    return parse_utc(text).timestamp()
