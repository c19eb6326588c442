"""JSON to and from the API server: orjson when installed (the ``fast`` extra), else the standard library.

Decoding watch events and answers with the standard library's json was 19% of the operator's samples
while 1000 Chutes came up (a py-spy profile, docs/benchmarks/operator.md); orjson does the same work
in a fraction of the time. Both give the same dicts for what the API server sends.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the image and the test environment install it
    orjson = None  # type: ignore[assignment]

FAST = orjson is not None
"""Whether orjson is in use."""


def loads(data: bytes | str) -> Any:
    """The value a JSON document encodes."""
    return orjson.loads(data) if orjson is not None else json.loads(data)


def dumps(value: Any) -> bytes:
    """A value as compact JSON, UTF-8 (dict keys that are not strings written as strings, as json does)."""
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    return json.dumps(value, separators=(",", ":")).encode()
