"""The activator's port per Chute: given once to each Chute with minInstances 0, kept in its status.

The activator finds a request's Chute by the port the request arrived on, never by a header (a client
writes its headers). So each Chute that may be at zero gets a port of the activator's range
(``status.activatorPort``, written by the operator only: the status subresource), which its activator
EndpointSlice names; the activator reads the same status to know which Chute a port is. A port is
kept as long as the Chute may be at zero; the first choice is a hash of the Chute's name, so a lost
status usually finds the same one again.

Ports are given in this process's memory, from the whole store: seeded from every Chute's status the
first time one is asked for (the store is synced before the first reconcile), so two Chutes never
get one port. A port given up (a Chute deleted, or no longer ``minInstances: 0``) is given again only
once no Chute's status and no activator EndpointSlice names it: until then its old Chute's clients
may still send there. Two statuses naming one port (one written by hand) are never both served: the
activator refuses the port while they do, and the operator rewrites the status of the Chute that did
not have it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from chute_operator.wiring import ACTIVATOR_SLICE_SUFFIX
from chute_shared.cluster import ACTIVATOR_PORT_STATUS

Key = tuple[str, str]


def status_port(chute: Mapping[str, Any]) -> int | None:
    """The port the Chute's status names, if it is one."""
    value = (chute.get("status") or {}).get(ACTIVATOR_PORT_STATUS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return None
    return value


def _age(chute: Mapping[str, Any], key: Key) -> tuple[str, Key]:
    """What decides which of two Chutes claiming one port keeps it: the older, then by name."""
    return (str((chute.get("metadata") or {}).get("creationTimestamp") or "~"), key)


def _key(chute: Mapping[str, Any]) -> Key:
    meta = chute.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


class ActivatorPorts:
    """Which Chute has which port of ``ports`` (first, last)."""

    def __init__(
        self,
        ports: tuple[int, int],
        chutes: Callable[[], Iterable[Mapping[str, Any]]],
        slices: Callable[[], Iterable[Mapping[str, Any]]] = list,
    ) -> None:
        """``chutes``: every Chute the operator knows; ``slices``: every activator EndpointSlice it
        knows. A port still named by another Chute's status or slice is never given (read when a port
        is given): a Chute that gave its port up, or is being deleted, may still have traffic on it."""
        self.first, self.last = ports
        self._chutes, self._slices = chutes, slices
        self._owner: dict[int, Key] = {}
        self._port: dict[Key, int] = {}
        self._seeded = False

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def _in_range(self, port: int | None) -> bool:
        return port is not None and self.first <= port <= self.last

    def _seed(self) -> None:
        """Every port the statuses name, to its Chute; a port two statuses name (one edited by hand)
        to the older Chute, as the first the operator saw (the activator serves neither meanwhile)."""
        self._seeded = True
        claims: list[tuple[tuple[str, Key], int]] = []
        for chute in self._chutes():
            port = status_port(chute)
            if port is not None and self._in_range(port):
                claims.append((_age(chute, _key(chute)), port))
        for (_, key), port in sorted(claims):
            if port not in self._owner and key not in self._port:
                self._owner[port], self._port[key] = key, port

    def _named_elsewhere(self, key: Key) -> set[int]:
        """Ports another Chute's status or activator slice names (it may still get traffic there)."""
        named = {port for chute in self._chutes() if _key(chute) != key and (port := status_port(chute))}
        for piece in self._slices():
            meta = piece.get("metadata") or {}
            owner = (
                meta.get("namespace", ""),
                str(meta.get("name", "")).removesuffix(ACTIVATOR_SLICE_SUFFIX),
            )
            if owner != key:
                named.update(
                    p.get("port") for p in piece.get("ports") or [] if isinstance(p.get("port"), int)
                )
        return named

    def port_for(self, chute: Mapping[str, Any]) -> int | None:
        """The Chute's port: the one it has, the one its status names (when no other Chute has it), or a
        free one (its name's hash first) that no other Chute's status or slice names. None when every
        port is taken."""
        if not self._seeded:
            self._seed()
        key = _key(chute)
        mine = self._port.get(key)
        if mine is not None:
            return mine
        named = status_port(chute)
        if (
            named is not None
            and self._in_range(named)
            and named not in self._owner
            and named not in self._named_elsewhere(key)  # the costly check last
        ):
            self._owner[named], self._port[key] = key, named
            return named
        blocked = self._named_elsewhere(key)
        start = zlib.crc32("/".join(key).encode()) % self.size
        for offset in range(self.size):
            port = self.first + (start + offset) % self.size
            if port not in self._owner and port not in blocked:
                self._owner[port], self._port[key] = key, port
                return port
        return None

    def reset(self) -> None:
        """Forget every port given: the next one asked for reads them all from the store again (after
        a change of leader, whose ports this process never saw given)."""
        self._owner.clear()
        self._port.clear()
        self._seeded = False

    def held(self, key: Key) -> int | None:
        """The port the Chute has now, without giving one."""
        if not self._seeded:
            self._seed()
        return self._port.get(key)

    def release(self, key: Key) -> None:
        """The Chute no longer needs a port (gone, or no longer at zero ever). The port is given again
        only once no status and no activator slice names it."""
        port = self._port.pop(key, None)
        if port is not None and self._owner.get(port) == key:
            del self._owner[port]

    def taken(self) -> int:
        return len(self._owner)
