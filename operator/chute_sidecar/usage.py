"""Token counts from OpenAI-style ``usage`` objects, read from the tail of a JSON or SSE response.

Only the last :data:`TAIL_BYTES` of the body are kept and parsed once, after the last chunk has been
forwarded, so forwarding is never delayed. The last complete ``"usage": {...}`` object in the tail wins:
for a JSON completion that is its usage, for a stream the final usage event (streams that repeat
cumulative usage in every event are therefore counted once).
"""

from __future__ import annotations

import re

TAIL_BYTES = 8192
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_PROMPT = re.compile(rb'"(?:prompt|input)_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"(?:completion|output)_tokens"\s*:\s*(\d+)')
_MAX_OBJECT = 4096


def wants_usage(content_type: str | None, content_encoding: str | None) -> bool:
    """Only uncompressed JSON and SSE responses are looked at."""
    if not content_type or content_encoding:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "text/event-stream" or kind == "application/json" or kind.endswith("+json")


def _object_end(data: bytes, start: int) -> int | None:
    """Index just past the ``}`` closing the object whose body starts at ``start``."""
    depth = 1
    stop = min(len(data), start + _MAX_OBJECT)
    position = start
    while position < stop:
        opening = data.find(b"{", position, stop)
        closing = data.find(b"}", position, stop)
        if closing < 0:
            return None
        if 0 <= opening < closing:
            depth += 1
            position = opening + 1
            continue
        depth -= 1
        position = closing + 1
        if depth == 0:
            return position
    return None


def parse_usage(tail: bytes) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` of the last complete usage object in ``tail``."""
    if b'"usage"' not in tail:
        return None
    found = None
    for match in _USAGE.finditer(tail):
        end = _object_end(tail, match.end())
        if end is not None:
            found = (match.end(), end)
    if found is None:
        return None
    body = tail[found[0] : found[1]]
    prompt = _PROMPT.search(body)
    completion = _COMPLETION.search(body)
    if prompt is None and completion is None:
        return None
    return (int(prompt.group(1)) if prompt else 0, int(completion.group(1)) if completion else 0)


class Tail:
    """The last :data:`TAIL_BYTES` of a body, fed chunk by chunk."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def feed(self, chunk: bytes) -> None:
        if len(chunk) >= TAIL_BYTES:
            self.data = chunk[-TAIL_BYTES:]
        elif len(self.data) + len(chunk) <= TAIL_BYTES:
            self.data += chunk
        else:
            self.data = self.data[len(self.data) + len(chunk) - TAIL_BYTES :] + chunk
