"""kstatus (sigs.k8s.io/cli-utils v0.37.2, the real library) against real Chutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitops.doc_table import state_table
from tests.gitops.fixtures import fixture_names, load
from tests.gitops.kstatus import compute


@pytest.mark.parametrize("fixture", fixture_names())
def test_kstatus_of_each_fixture_is_what_the_docs_say(kstatus_binary: Path, fixture: str) -> None:
    assert compute(kstatus_binary, load(fixture)).status == state_table()[fixture].kstatus


FAILED = [name for name in fixture_names() if state_table()[name].kstatus == "Failed"]


@pytest.mark.parametrize("fixture", FAILED)
def test_a_failed_chute_carries_the_stalled_message(kstatus_binary: Path, fixture: str) -> None:
    obj = load(fixture)
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["message"]
    assert compute(kstatus_binary, obj).message == stalled["message"]


def test_failed_fixtures_exist() -> None:
    assert {"crashloop", "imagepull", "oomkilled", "invalid-spec", "unschedulable", "no-spare-gpu"} <= set(
        FAILED
    )
