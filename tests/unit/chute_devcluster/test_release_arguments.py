"""scripts/release's checks of what it is given (found by the breaking pass of issue 26)."""

from __future__ import annotations

import re

import pytest

from chute_devcluster.release import REGISTRY_PATTERN, VERSION_PATTERN


@pytest.mark.parametrize(
    ("pattern", "text"), [(REGISTRY_PATTERN, "ghcr.io/team\n"), (VERSION_PATTERN, "0.2.0\n")]
)
def test_a_trailing_newline_is_refused(pattern: re.Pattern[str], text: str) -> None:
    assert pattern.match(text) is None
