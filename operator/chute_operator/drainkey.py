"""The drain key: the operator's secret that keys every Chute's drain token (workload.drain_token).

A Secret in the operator's namespace, read at start and made once, with :data:`KEY_BYTES` random
bytes, when it is missing. Never updated: a new key changes every Chute's pod template, a rollout of
all of them. A create that finds the name taken means another replica made it first: its key is read.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets

from lightkube import AsyncClient

from chute_operator.kube import AlreadyExists, KubeApi

log = logging.getLogger(__name__)
KEY_FIELD = "key"
"""The Secret's data field that holds the key."""
KEY_BYTES = 32
MIN_KEY_BYTES = 16
"""A shorter key (one made by hand) is refused."""
COMPONENT = "chute-operator-drain-key"
"""The field manager and component of its reads and its one create (no apply, no Event)."""


class DrainKeyError(Exception):
    """The drain key's Secret exists but holds no usable key."""


def key_of(secret: dict[str, object], where: str) -> bytes:
    """The key in a Secret as the API returns it; DrainKeyError naming ``where`` if it has none."""
    data = secret.get("data")
    text = data.get(KEY_FIELD) if isinstance(data, dict) else None
    try:
        key = base64.b64decode(str(text), validate=True) if text else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise DrainKeyError(
            f"Secret {where} has no data.{KEY_FIELD} of at least {MIN_KEY_BYTES} bytes; delete it to have "
            "a new one made (every Chute's pods then roll once)"
        )
    return key


async def ensure_drain_key(api: KubeApi, namespace: str, name: str) -> bytes:
    """The key of Secret ``namespace/name``, made first if it is missing."""
    where = f"{namespace}/{name}"
    found = await api.secret(namespace, name)
    if found is None:
        fresh = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
        try:
            found = await api.create_secret(namespace, name, {KEY_FIELD: fresh})
            log.info("drain key made", extra={"secret": where})
        except AlreadyExists:  # another replica made it first
            found = await api.secret(namespace, name)
            if found is None:
                raise DrainKeyError(f"Secret {where} was made and deleted again while read") from None
    return key_of(found, where)


async def load_drain_key(client: AsyncClient, namespace: str, name: str) -> bytes:
    """The operator's drain key at start (made if missing), through a KubeApi of its own."""
    api = KubeApi(client, COMPONENT, COMPONENT, COMPONENT)
    try:
        return await ensure_drain_key(api, namespace, name)
    finally:
        await api.close()


async def read_drain_key(api: KubeApi, namespace: str, name: str) -> bytes | None:
    """The drain key as it is, read only (``explain --plan``); None when its Secret is missing."""
    found = await api.secret(namespace, name)
    return None if found is None else key_of(found, f"{namespace}/{name}")
