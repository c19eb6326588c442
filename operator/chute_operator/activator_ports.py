"""The activator's port per Chute: given once to each Chute with minInstances 0, kept in its status.

The activator finds a request's Chute by the port the request arrived on, never by a header (a client
writes its headers). So each Chute that may be at zero gets a port of the activator's range
(``status.activatorPort``, written by the operator only: the status subresource), which its activator
EndpointSlice names; the activator reads the same status to know which Chute a port is. A port is
kept as long as the Chute may be at zero; the first choice is a hash of the Chute's name, so a lost
status usually finds the same one again.

Ports are given in this process's memory, from the whole store: seeded from every Chute's status the
first time one is asked for (the store is synced before the first reconcile), so two Chutes never
get one port. Two statuses naming one port (one written by hand) are settled as the activator settles
them: the older Chute keeps it, the other gets another.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

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

    def __init__(self, ports: tuple[int, int], chutes: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        """``chutes``: every Chute the operator knows (read once, when the first port is asked for)."""
        self.first, self.last = ports
        self._chutes = chutes
        self._owner: dict[int, tuple[Key, tuple[str, Key]]] = {}
        self._port: dict[Key, int] = {}
        self._seeded = False

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def _in_range(self, port: int | None) -> bool:
        return port is not None and self.first <= port <= self.last

    def _seed(self) -> None:
        self._seeded = True
        for chute in self._chutes():
            port = status_port(chute)
            if self._in_range(port):
                assert port is not None  # nosec B101  # narrows the type: _in_range(None) is False
                self._take(_key(chute), port, _age(chute, _key(chute)))

    def _take(self, key: Key, port: int, age: tuple[str, Key]) -> Key | None:
        """Give ``port`` to ``key`` unless an older Chute has it; the Chute it was taken from, if any."""
        held = self._owner.get(port)
        if held is not None and held[0] != key and held[1] < age:
            return None
        self.release(key)
        self._owner[port], self._port[key] = (key, age), port
        if held is not None and held[0] != key:
            self._port.pop(held[0], None)
            return held[0]
        return None

    def port_for(self, chute: Mapping[str, Any], displaced: Callable[[Key], None]) -> int | None:
        """The Chute's port: the one it has, the one its status names (unless an older Chute has it),
        or a free one (its name's hash first). None when every port is taken. ``displaced`` is told
        of a Chute whose port this one takes (an older Chute whose status names it)."""
        if not self._seeded:
            self._seed()
        key, age = _key(chute), _age(chute, _key(chute))
        mine = self._port.get(key)
        if mine is not None:
            return mine
        named = status_port(chute)
        if self._in_range(named):
            assert named is not None  # nosec B101  # narrows the type: _in_range(None) is False
            held = self._owner.get(named)
            if held is None or held[1] > age:
                gone = self._take(key, named, age)
                if gone is not None:
                    displaced(gone)
                return named
        start = zlib.crc32("/".join(key).encode()) % self.size
        for offset in range(self.size):
            port = self.first + (start + offset) % self.size
            if port not in self._owner:
                self._take(key, port, age)
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
        """The Chute no longer needs a port (deleted, or no longer at zero ever)."""
        port = self._port.pop(key, None)
        if port is not None and self._owner.get(port, (None,))[0] == key:
            del self._owner[port]

    def taken(self) -> int:
        return len(self._owner)
