"""Command-line flags that fall back to environment variables: the flag wins, then the variable, then
the default. ``--admin-port`` reads ``<PREFIX>ADMIN_PORT``. A value that cannot be parsed exits with
usage (status 2) naming the flag, or the variable and its flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

Parse = Callable[[str], Any]
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})
OFF = frozenset({"", "off", "none", "no", "false"})
_UNSET: Any = type("Unset", (), {"__repr__": lambda self: "unset"})()


def env_name(prefix: str, flag: str) -> str:
    """``("CHUTE_SIDECAR_", "--admin-port")`` -> ``CHUTE_SIDECAR_ADMIN_PORT``."""
    return prefix + flag.lstrip("-").replace("-", "_").upper()


def boolean(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off/`` (empty), any case."""
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer ``>= minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}: {text}")
        return value

    parse.__name__ = f"at_least_{minimum}"
    return parse


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def optional(parse: Parse) -> Parse:
    """``parse``, or None for ``off`` (``none``, ``no``, ``false``, empty): a switch turned off."""

    def parse_optional(text: str) -> Any:
        return None if text.strip().lower() in OFF else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")
    return parse_optional


@dataclass(frozen=True)
class _Fallback:
    flag: str
    variable: str
    parse: Parse
    default: Any
    unset: Any


class EnvFlags:
    """An argparse parser whose flags also read ``<prefix><FLAG>`` from ``environ`` (the flag wins)."""

    def __init__(
        self, parser: argparse.ArgumentParser, prefix: str, environ: Mapping[str, str] | None = None
    ) -> None:
        self.parser, self.prefix = parser, prefix
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._fallbacks: dict[str, _Fallback] = {}

    def env_name(self, flag: str) -> str:
        return env_name(self.prefix, flag)

    def add(
        self,
        flag: str,
        parse: Parse = str,
        default: Any = None,
        help: str = "",
        *,
        from_env: Parse | None = None,
        **argument: Any,
    ) -> None:
        """``flag`` read with ``parse``; its variable read with ``from_env`` (default ``parse``) when
        the flag is absent; ``default`` (a parsed value) when neither is given. ``argument``: more of
        argparse's ``add_argument`` (``action="store_true"``, ``metavar``...)."""
        variable = self.env_name(flag)
        dest = flag.lstrip("-").replace("-", "_")
        action = argument.get("action")
        if action not in ("store_true", "store_false"):
            argument["type"] = parse
        unset = None if action == "append" else _UNSET  # (append adds to the default)
        shown = "" if default in (None, ()) else f", default {default}"
        self.parser.add_argument(
            flag, dest=dest, default=unset, help=f"{help} (env {variable}{shown})", **argument
        )
        self._fallbacks[dest] = _Fallback(flag, variable, from_env or parse, default, unset)

    def error(self, message: str) -> NoReturn:
        """Exit with usage (status 2)."""
        self.parser.error(message)

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        """Parse ``argv``; each flag absent from it takes its variable's value, else its default."""
        args = self.parser.parse_args(list(argv))
        for dest, fallback in self._fallbacks.items():
            if getattr(args, dest) is not fallback.unset:
                continue
            text = self.environ.get(fallback.variable)
            if text is None:
                setattr(args, dest, fallback.default)
                continue
            try:
                setattr(args, dest, fallback.parse(text))
            except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
                self.error(f"{fallback.variable} ({fallback.flag}): cannot read {text!r}: {error}")
        return args
