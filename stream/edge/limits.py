"""The shape limits every input must respect, and the one walk that checks them.

A decoded record is walked once, iteratively (no recursion, so no depth can exhaust the
stack): its nesting depth, its number of fields (keys and list items, at any depth) and its
longest string are measured against `EdgeLimits`, and every string and integer is checked for a
card number. The walk stops at the first limit broken, so a hostile record costs no more than
the limits allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.edge.pan import ascii_contains_pan, contains_pan, is_pan_integer

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class EdgeLimits:
    """Configurable through the settings (FRAUD_EDGE_*)."""

    max_bytes: int = 64 * 1024
    max_depth: int = 8
    max_fields: int = 256
    max_string: int = 4096


@dataclass
class Shape:
    """What the walk found: the first limit broken (reason, detail), the top-level fields that
    hold a card number (to be tokenised), and whether one hides anywhere else."""

    broken: tuple[str, str] | None = None
    pan_fields: list[str] = field(default_factory=list)
    pan_elsewhere: bool = False


def walk(
    record: dict[str, Any],
    limits: EdgeLimits,
    look_for_pans: bool = True,
    size: int | None = None,
) -> Shape:
    """The record's shape; with `look_for_pans` False (the raw bytes showed none, see
    `raw_may_hold_pan`) only the limits are checked. `size`: the record's length in bytes, when
    known: a record no longer than `max_string` holds no longer string, so when it is also
    flat and has no more than `max_fields` fields, no limit can break and, with no card number
    to look for, it is not walked."""
    if (
        not look_for_pans
        and size is not None
        and size <= limits.max_string
        and len(record) <= limits.max_fields
        and limits.max_depth >= 1
        and _JSON_SCALARS.issuperset(map(type, record.values()))
    ):
        return Shape()
    shape = Shape()
    fields = 0
    stack: list[tuple[Any, int]] = [(record, 1)]  # (container, its depth)
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_depth:
            shape.broken = ("too_deep", f"nested deeper than {limits.max_depth} levels")
            return shape
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            fields += 1
            if fields > limits.max_fields:
                shape.broken = ("too_many_fields", f"more than {limits.max_fields} fields")
                return shape
            name = key if depth == 1 and isinstance(key, str) else None
            if isinstance(key, str) and len(key) > limits.max_string:
                shape.broken = ("too_long", f"a field name longer than {limits.max_string}")
                return shape
            if isinstance(item, str):
                if len(item) > limits.max_string:
                    shape.broken = (
                        "too_long",
                        f"field {_where(name)} is longer than {limits.max_string} characters",
                    )
                    return shape
                if look_for_pans and len(item) >= 13:
                    _card_number_in_string(shape, name, item)
            elif isinstance(item, int) and not isinstance(item, bool):
                if look_for_pans and (item >= 10**12 or item <= -(10**12)):
                    _card_number_in_integer(shape, name, item)
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))
            if look_for_pans and isinstance(key, str) and len(key) >= 13 and contains_pan(key):
                shape.pan_elsewhere = True
    return shape


def raw_may_hold_pan(raw: bytes) -> bool:
    """False only when no decoded string or number of the record can hold a card number: the
    bytes are plain ASCII without escapes (so every decoded string stands as it is in them) and
    no card number shows in them. One scan of the record instead of one per field."""
    if not raw.isascii() or b"\\" in raw:
        return True
    return ascii_contains_pan(raw)


def _where(name: str | None) -> str:
    return repr(name) if name is not None else "(nested)"


def _card_number_in_string(shape: Shape, name: str | None, value: str) -> None:
    if contains_pan(value):
        if name is not None:
            shape.pan_fields.append(name)
        else:
            shape.pan_elsewhere = True


def _card_number_in_integer(shape: Shape, name: str | None, value: int) -> None:
    if is_pan_integer(value):
        if name is not None:
            shape.pan_fields.append(name)
        else:
            shape.pan_elsewhere = True
