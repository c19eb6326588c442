"""The API's JSON through orjson: what json would write, or json's own error."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chute_operator import codec


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"spec": {"image": "x", "replicas": 2, "ratio": 0.5, "on": True, "none": None, "list": [1, "é"]}},
        {1: "a key that is not a string"},
        _nested(300),  # deeper than orjson writes (a preserve-unknown-fields affinity)
        {"env": "\udcff"},  # a lone surrogate (an environment value decoded with surrogateescape)
    ],
    ids=["a manifest", "a key that is not a string", "deep nesting", "a lone surrogate"],
)
def test_dumps_writes_what_json_writes(value: Any) -> None:
    """The same document (orjson writes UTF-8 where json escapes it)."""
    assert codec.FAST
    assert json.loads(codec.dumps(value)) == json.loads(_json(value))
    assert codec.loads(_json(value)) == json.loads(_json(value))


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [{"at": datetime.now(UTC)}, {"point": Point(1)}])
def test_dumps_refuses_what_json_refuses(value: Any) -> None:
    with pytest.raises(TypeError):
        codec.dumps(value)
