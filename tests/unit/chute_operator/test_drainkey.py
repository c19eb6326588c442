"""The drain key's Secret: made once, never written again; a create that loses a race reads the winner's."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from chute_operator.drainkey import KEY_BYTES, DrainKeyError, ensure_drain_key
from chute_operator.kube import AlreadyExists


def secret(key: bytes) -> dict[str, Any]:
    return {"data": {"key": base64.b64encode(key).decode()}}


class Api:
    """The two calls ensure_drain_key makes; ``made_elsewhere``: another replica creates it first."""

    def __init__(self, stored: dict[str, Any] | None = None, made_elsewhere: bytes | None = None) -> None:
        self.stored, self.made_elsewhere = stored, made_elsewhere
        self.creates = 0

    async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.stored

    async def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        self.creates += 1
        if self.made_elsewhere is not None:
            self.stored = secret(self.made_elsewhere)
            raise AlreadyExists("taken", 409, "AlreadyExists")
        self.stored = {"data": data}
        return self.stored


async def test_a_missing_key_is_made_with_random_bytes_and_a_present_one_is_only_read() -> None:
    api = Api()
    key = await ensure_drain_key(api, "ops", "k")  # type: ignore[arg-type]
    assert len(key) == KEY_BYTES
    assert api.creates == 1
    assert await ensure_drain_key(api, "ops", "k") == key  # type: ignore[arg-type]
    assert api.creates == 1
    assert await ensure_drain_key(Api(), "ops", "k") != key  # type: ignore[arg-type]


async def test_a_create_that_loses_the_race_reads_the_other_replicas_key() -> None:
    theirs = b"t" * KEY_BYTES
    assert await ensure_drain_key(Api(made_elsewhere=theirs), "ops", "k") == theirs  # type: ignore[arg-type]


@pytest.mark.parametrize("stored", [{}, {"data": {}}, secret(b"short"), {"data": {"key": "not base64!"}}])
async def test_a_secret_without_a_usable_key_stops_the_start_naming_it(stored: dict[str, Any]) -> None:
    with pytest.raises(DrainKeyError, match="ops/k"):
        await ensure_drain_key(Api(stored), "ops", "k")  # type: ignore[arg-type]
