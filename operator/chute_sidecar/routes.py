"""Cords: the model's routes (``"METHOD PATH"``), matched to a bounded metrics label or refused."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

OTHER = "other"
CORD_PATH_PATTERN = r"^/[A-Za-z0-9._~!$&'()+,;=:@%/-]*[*]?$"
"""The CRD's rule for a cord path (the operator's ``api.spec.CORD_PATH_PATTERN``; a contract test keeps
them equal, over the corpus tests/data/cord_paths.yaml): '/', the characters RFC 3986 allows in a path,
optionally one final '*' (a prefix cord)."""
MAX_CORD_PATH = 256
_CORD_PATH = re.compile(CORD_PATH_PATTERN)
ANY_METHOD = "*"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Cord:
    """One allowed route: ``path`` is exact, or a prefix when ``prefix`` (written with a trailing ``*``)."""

    method: str
    path: str
    prefix: bool
    label: str


def parse_cord(text: str) -> Cord:
    """Parse ``"POST /v1/chat/completions"``, ``"GET /v1/models/*"`` or ``"* /v1/*"``: a method, one
    space, a path by :data:`CORD_PATH_PATTERN`. Raises ValueError naming the cord."""
    method, sep, path = text.partition(" ")
    if not sep or not method:
        raise ValueError(f"cord must be 'METHOD PATH', got {text!r}")
    method = method.upper()
    if method != ANY_METHOD and method not in _METHODS:
        raise ValueError(f"cord method must be one of {sorted(_METHODS)} or '*', got {text!r}")
    if len(path) > MAX_CORD_PATH or _CORD_PATH.fullmatch(path) is None:
        raise ValueError(
            f"cord path must start with '/', have only the characters a URL path allows (no whitespace, "
            f"query or fragment), '*' only at the end, at most {MAX_CORD_PATH} characters; got {text!r}"
        )
    prefix = path.endswith("*")
    return Cord(method=method, path=path[:-1] if prefix else path, prefix=prefix, label=path)


def method_label(method: str) -> str:
    """The HTTP method as a metrics label, unknown methods folded into ``other``."""
    return method if method in _METHODS else OTHER


def _unsafe(path: str) -> bool:
    """Dot segments or encoded dots/slashes could escape a prefix once the model normalises the path."""
    if "%" in path:
        lowered = path.lower()
        if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered:
            return True
    if "/." in path:
        return any(segment in (".", "..") for segment in path.split("/"))
    return False


class RouteTable:
    """Maps ``(method, raw path)`` to a cord label; exact cords first, then the longest prefix."""

    __slots__ = ("_exact", "_prefixes", "empty")

    def __init__(self, cords: Iterable[Cord]) -> None:
        self._exact: dict[tuple[str, str], str] = {}
        prefixes: list[Cord] = []
        for cord in cords:
            if cord.prefix:
                prefixes.append(cord)
            else:
                self._exact.setdefault((cord.method, cord.path), cord.label)
        self._prefixes = tuple(sorted(prefixes, key=lambda c: len(c.path), reverse=True))
        self.empty = not self._exact and not self._prefixes

    @classmethod
    def from_strings(cls, cords: Iterable[str]) -> RouteTable:
        return cls(parse_cord(text) for text in cords)

    def match(self, method: str, path: str) -> str | None:
        """The label of the cord that allows this request, or None. ``path`` excludes the query."""
        exact = self._exact
        if exact:
            label = exact.get((method, path)) or exact.get((ANY_METHOD, path))
            if label is not None:
                return label
        for cord in self._prefixes:
            if path.startswith(cord.path) and cord.method in (method, ANY_METHOD):
                return None if _unsafe(path) else cord.label
        return None
