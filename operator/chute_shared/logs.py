"""The data-plane programs' one log format: a JSON object a line (or plain text), on stderr.

``{"ts", "level", "logger", "msg", ...extra fields, "exc"}``, written by ``json.dumps``: quotes,
newlines and control characters in a message or a field are escaped, so a record is always one
line of valid JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
FORMATS = ("json", "text")


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call added (``extra={...}``)."""
    return {key: value for key, value in record.__dict__.items() if key not in STANDARD}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields}``, one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``, for humans."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = extras(record)
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return text


def configure(
    level: str, fmt: str = "json", stream: TextIO | None = None, silence: Iterable[str] = ()
) -> None:
    """Every logger to ``stream`` (stderr) in ``fmt`` (json|text) from ``level`` up; the loggers
    named in ``silence`` write nothing."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in silence:
        logging.getLogger(name).disabled = True
