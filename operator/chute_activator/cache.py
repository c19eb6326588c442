"""One kind's cached objects by ``(namespace, name)``, optionally indexed by the Chute each belongs
to: a Chute's objects cost a lookup of its own, not a scan of every cached object. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from chute_activator.state import Key

Obj = dict[str, Any]


class Cache(Mapping[Key, Obj]):
    """Read as a mapping; changed only by :meth:`put` and :meth:`pop`, which keep the index."""

    def __init__(self, owner: Callable[[Obj], str] | None = None) -> None:
        self._objects: dict[Key, Obj] = {}
        self._owner = owner
        """The name of the Chute an object belongs to (empty: none); None: no index."""
        self._by_chute: dict[Key, dict[str, Obj]] = {}

    def __getitem__(self, key: Key) -> Obj:
        return self._objects[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def put(self, key: Key, obj: Obj) -> Obj | None:
        """Store ``obj`` at ``key``; the object it replaced, if any."""
        old = self._objects.get(key)
        self._unindex(key, old)
        self._objects[key] = obj
        if self._owner is not None and (chute := self._owner(obj)):
            self._by_chute.setdefault((key[0], chute), {})[key[1]] = obj
        return old

    def pop(self, key: Key) -> Obj | None:
        """Forget the object at ``key``; the object, if there was one."""
        old = self._objects.pop(key, None)
        self._unindex(key, old)
        return old

    def of_chute(self, chute: Key) -> list[Obj]:
        """The objects labelled as the Chute's, by name."""
        own = self._by_chute.get(chute) or {}
        return [own[name] for name in sorted(own)]

    def _unindex(self, key: Key, obj: Obj | None) -> None:
        if obj is None or self._owner is None or not (chute := self._owner(obj)):
            return
        own = self._by_chute.get((key[0], chute))
        if own is not None:
            own.pop(key[1], None)
            if not own:
                del self._by_chute[key[0], chute]
