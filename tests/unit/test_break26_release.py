"""Breaking pass 26: scripts/release's checks of what it is given."""

from __future__ import annotations

import re

import pytest

from chute_devcluster.release import REGISTRY_PATTERN, VERSION_PATTERN


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 26: REGISTRY_PATTERN and VERSION_PATTERN end in '$', which also matches before "
    "a final newline: 'ghcr.io/team\\n' is taken as a registry (tags and the staged values.yaml then "
    "hold 'ghcr.io/team\\n/chute-operator'); no shell is involved, so no injection, only a late failure",
)
@pytest.mark.parametrize(
    ("pattern", "text"), [(REGISTRY_PATTERN, "ghcr.io/team\n"), (VERSION_PATTERN, "0.2.0\n")]
)
def test_a_trailing_newline_is_refused(pattern: re.Pattern[str], text: str) -> None:
    assert pattern.match(text) is None
