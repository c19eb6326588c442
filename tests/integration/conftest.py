from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.metrics_api_harness import LoopbackSidecar
from tests.operator_fixtures import chute_crd, session_operator_paused

__all__ = ["chute_crd", "session_operator_paused"]


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[LoopbackSidecar]:
    """A real sidecar process on loopback in front of a stub model, stopped after the test."""
    process = LoopbackSidecar(tmp_path)
    yield process
    process.stop()
