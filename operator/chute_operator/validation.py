"""Parse Chutes and explain why one is invalid, naming the field (never a traceback)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from chute_operator.api import Chute


class InvalidChute(ValueError):
    """A Chute that cannot be served; ``str()`` names each field and reason, one per line."""


def field_path(location: tuple[int | str, ...]) -> str:
    """``('spec', 'cords', 0, 'path')`` -> ``spec.cords[0].path``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe(error: ValidationError) -> str:
    """One line per problem: ``field: reason``."""
    lines = []
    for problem in error.errors(include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{field_path(problem['loc']) or '(document)'}: {message}")
    return "\n".join(lines)


def parse_chute(document: Any) -> Chute:
    """A validated Chute, or InvalidChute explaining every problem."""
    if not isinstance(document, dict):
        raise InvalidChute("(document): a Chute must be a YAML mapping")
    if document.get("kind", "Chute") != "Chute":
        raise InvalidChute(f"kind: expected Chute, got {document.get('kind')!r}")
    try:
        return Chute.model_validate(document)
    except ValidationError as error:
        raise InvalidChute(describe(error)) from None
