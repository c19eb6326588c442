"""JSON to and from the API server: orjson when installed (the ``fast`` extra), else the standard library.

Decoding watch events and answers with the standard library's json was 19% of the operator's samples
while 1000 Chutes came up (a py-spy profile, docs/benchmarks/operator.md); orjson does the same work
in a fraction of the time. Both give the same dicts for what the API server sends. They differ on
what it never sends, nor the operator (whose values come from objects the API server stored): orjson
reads an integer beyond 64 bits as a float, writes NaN as null and writes Enums and UUIDs, which
json refuses.
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
_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    if orjson is not None
    else 0
)


def loads(data: bytes | str) -> Any:
    """The value a JSON document encodes. What orjson refuses (a lone surrogate, which json reads)
    is left to json: its value, or json's error."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except ValueError:
            pass
    return json.loads(data)


def dumps(value: Any) -> bytes:
    """A value as compact JSON, UTF-8: the document json writes. What orjson refuses (nesting deeper
    than its limit, a lone surrogate; datetimes and dataclasses, which json refuses too) is left to
    json: its document, or its error."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=_OPTIONS)
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":")).encode()
