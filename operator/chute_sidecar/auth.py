"""API keys from a file (one a line), re-read when the file changes; checked in constant time."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Mapping

from chute_sidecar.headers import ascii_bytes

log = logging.getLogger("chute_sidecar.auth")

RECHECK_SECONDS = 1.0


def _fingerprint(path: str) -> tuple[int, int, int, int]:
    # os.stat follows symlinks: a Kubernetes Secret update swaps the ``..data`` link, so the inode changes.
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def read_keys(path: str) -> tuple[bytes, ...]:
    """Non-empty, stripped lines; lines starting with ``#`` are comments."""
    with open(path, "rb") as handle:
        lines = handle.read().splitlines()
    return tuple(key for key in (line.strip() for line in lines) if key and not key.startswith(b"#"))


def presented_key(headers: Mapping[str, str]) -> bytes | None:
    """The key from ``Authorization: Bearer <key>`` or else ``X-API-Key: <key>``.
    Raises :class:`BadHeader` for a key that is not ASCII (a bearer token never is)."""
    value = headers.get("Authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return ascii_bytes("Authorization", token.strip())
    value = headers.get("X-API-Key")
    if value is not None and value.strip():
        return ascii_bytes("X-API-Key", value.strip())
    return None


class ApiKeys:
    """The accepted keys; the file is looked at (one ``stat``) at most once per :data:`RECHECK_SECONDS`.

    A file that cannot be read at start refuses every request; one that disappears later keeps the
    keys last read (a Secret swap is not atomic for every reader), an empty file refuses every request.
    """

    __slots__ = ("_fingerprint", "_keys", "_next_check", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._keys: tuple[bytes, ...] = ()
        self._fingerprint: tuple[int, int, int, int] | None = None
        self._next_check = 0.0
        self.refresh(force=True)

    @property
    def count(self) -> int:
        return len(self._keys)

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed (or ``force``)."""
        try:
            fingerprint = _fingerprint(self.path)
            if not force and fingerprint == self._fingerprint:
                return
            keys = read_keys(self.path)
        except OSError as error:
            if self._fingerprint is not None or force:
                log.error(
                    "api key file unreadable, keeping %d key(s)",
                    len(self._keys),
                    extra={"error": str(error), "path": self.path},
                )
            self._fingerprint = None
            return
        self._fingerprint = fingerprint
        if keys != self._keys:
            self._keys = keys
            log.info("api keys loaded", extra={"path": self.path, "keys": len(keys)})
        if not keys:
            log.error("api key file has no keys: every request is refused", extra={"path": self.path})
        elif not all(key.isascii() for key in keys):
            log.warning("api keys that are not ASCII never match (requests with them get 400)")

    def allows(self, headers: Mapping[str, str]) -> bool:
        """Whether the request presents one of the keys; :class:`BadHeader` for a non-ASCII key."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK_SECONDS
            self.refresh()
        key = presented_key(headers)
        if key is None:
            return False
        ok = False
        for candidate in self._keys:
            ok |= hmac.compare_digest(key, candidate)
        return ok
