"""Versioned JSON Schema contracts for every topic and history file, with compiled validators.

    from schemas import validator
    validate = validator("transaction")
    event = validate(payload)        # returns the payload, or raises ValidationError

Validators are compiled once with fastjsonschema (pure Python code generated from the
schema), so validating a small event costs microseconds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema

from fraud.errors import ValidationError

SCHEMA_DIR = Path(__file__).resolve().parent
BASE_URI = "https://fraud-scorer.local/schemas/"
KINDS = ("transaction", "history_row", "decision", "alert", "feedback", "dead_letter")
CURRENT_VERSION = "v1"

Validator = Callable[[Any], Any]


@functools.cache
def load_schema(kind: str, version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The schema document for `kind` at `version` (e.g. "transaction", "v1")."""
    path = SCHEMA_DIR / version / f"{kind}.json"
    if not path.is_file():
        known = ", ".join(KINDS)
        raise ValidationError(f"no schema {version}/{kind}; known kinds: {known}")
    with path.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def _resolve(uri: str) -> dict[str, Any]:
    """Serve `$ref`s to our own base URI from the files beside this module (no network)."""
    if not uri.startswith(BASE_URI):
        raise ValidationError(f"schema reference outside this project: {uri}")
    version, _, name = uri[len(BASE_URI) :].partition("/")
    return load_schema(name.removesuffix(".json"), version)


@functools.cache
def validator(kind: str, version: str = CURRENT_VERSION) -> Validator:
    """A compiled validator: returns the record, or raises ValidationError naming field and rule."""
    compiled = fastjsonschema.compile(load_schema(kind, version), handlers={"https": _resolve})

    def validate(record: Any) -> Any:
        try:
            return compiled(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            field = _field_name(exc)
            raise ValidationError(
                f"{kind} {version}: field '{field}' fails rule '{exc.rule}': {exc.message}",
                field=field,
                rule=exc.rule,
            ) from None

    return validate


def _field_name(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """`data.amount` -> `amount`; for a missing required property, name that property."""
    path = [str(part) for part in (exc.path or [])][1:]
    if exc.rule == "required" and isinstance(exc.rule_definition, list):
        record = exc.value if isinstance(exc.value, dict) else {}
        missing = [name for name in exc.rule_definition if name not in record]
        if missing:
            path.append(missing[0])
    return ".".join(path) or "<record>"


def history_columns(version: str = CURRENT_VERSION) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) columns of a history file, in contract order: the transaction's
    fields, then the label's. Required are those a file must have (`x-file-required`)."""
    row = load_schema("history_row", version)
    names = (*load_schema("transaction", version)["properties"], *row["properties"])
    required = tuple(row["x-file-required"])
    return tuple(n for n in names if n in required), tuple(n for n in names if n not in required)


def validate(kind: str, record: Any, version: str = CURRENT_VERSION) -> Any:
    """Validate one record against `kind`; convenience for cold paths."""
    return validator(kind, version)(record)
