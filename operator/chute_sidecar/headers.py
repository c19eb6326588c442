"""Request headers the sidecar itself reads (credentials, Host, Connection, X-Forwarded-For) must be
ASCII: their syntax allows nothing else. Anything else is a bad request, not a server error."""

from __future__ import annotations


class BadHeader(ValueError):
    """A header the sidecar reads is not ASCII text; the request is answered 400."""

    def __init__(self, name: str) -> None:
        super().__init__(f"header {name} must be ASCII text")
        self.name = name


def ascii_bytes(name: str, value: str) -> bytes:
    """``value`` as bytes; :class:`BadHeader` unless it is ASCII (one C-level check on the hot path)."""
    if not value.isascii():
        raise BadHeader(name)
    return value.encode("ascii")
