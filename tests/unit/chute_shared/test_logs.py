"""One JSON log format: every record one line of valid JSON, whatever its message and fields hold."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from chute_shared import logs

NASTY = 'say "hi"\nthen {"a": 1}\r\n\ttab \x00 nul \x07 bell \x1b[31m red \u2028 sep \\ back'


@pytest.fixture
def restored() -> Iterator[None]:
    """configure() replaces the root logger's handlers: put pytest's back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("noisy").disabled = False


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().split("\n")[:-1]  # (str.splitlines would split at \u2028 too)


def test_a_message_with_quotes_newlines_and_control_characters_stays_one_line_of_json(
    restored: None,
) -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    log = logging.getLogger("chute_test")
    log.info("%s and %r", NASTY, NASTY, extra={"field": NASTY, "port": 8080, "thing": object()})
    try:
        raise ValueError(NASTY)
    except ValueError:
        log.exception("failed: %s", NASTY)
    log.debug("not written")
    first, second = (json.loads(line) for line in _lines(stream))
    assert first["msg"] == f"{NASTY} and {NASTY!r}"
    assert (first["level"], first["logger"], first["field"], first["port"]) == (
        "info",
        "chute_test",
        NASTY,
        8080,
    )
    assert first["thing"].startswith("<object object")
    assert "ts" in first
    assert second["level"] == "error"
    assert second["exc"].startswith("Traceback")
    assert NASTY in second["exc"]


def test_the_text_format_and_the_silenced_loggers(restored: None) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", "text", stream=stream, silence=("noisy",))
    logging.getLogger("chute_test").debug("started", extra={"port": 1})
    logging.getLogger("noisy").warning("not written")
    (line,) = _lines(stream)
    assert line.endswith(" DEBUG chute_test: started port=1")
