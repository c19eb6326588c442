"""Kubernetes label syntax: a key is a qualified name (an optional DNS subdomain prefix and ``/``, then a
name of at most 63 characters); a value is at most 63 characters of the same alphabet (or empty)."""

from __future__ import annotations

import re

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
NAME_MAX = 63
PREFIX_MAX = 253


def key_problem(key: str) -> str | None:
    """Why ``key`` is no label key, or None when it is one."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= PREFIX_MAX and _SUBDOMAIN.match(prefix)):
        return f"label key {key!r}: its prefix is no DNS subdomain (lower-case, at most {PREFIX_MAX})"
    if not (len(name) <= NAME_MAX and _NAME.match(name)):
        return (
            f"label key {key!r}: its name must be at most {NAME_MAX} characters of letters, digits, "
            "'-', '_', '.', starting and ending with a letter or digit"
        )
    return None


def value_problem(value: str) -> str | None:
    """Why ``value`` is no label value, or None when it is one (empty is one)."""
    if value == "" or (len(value) <= NAME_MAX and _NAME.match(value)):
        return None
    return (
        f"label value {value!r}: at most {NAME_MAX} characters of letters, digits, '-', '_', '.', "
        "starting and ending with a letter or digit"
    )
