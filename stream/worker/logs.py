"""Structured JSON logs for the worker; any card number in a message is masked on the way out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.edge import mask_text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = mask_text(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` document: every record as one JSON line on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"level": level, "handlers": ["stderr"]},
        # mode (Faust's service library) reports every late timer at INFO: one line a second
        # on a busy host. Its warnings (a timer overlapping itself) still come through.
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": "WARNING"},
            "mode": {"level": "WARNING"},
        },
    }
