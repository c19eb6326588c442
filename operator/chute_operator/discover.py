"""Learn the API server's capabilities at start: the I/O half of capabilities.py.

Three reads: ``/version``, a dry-run create of an HPA that sets ``behavior.scaleUp.tolerance`` (does the
server keep it?), and the discovery of ``custom.metrics.k8s.io``. A read that fails leaves that rule to
the version's default (or, without a version, to a current server's), and says so in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from lightkube import AsyncClient

from chute_operator.capabilities import (
    ASSUMED,
    TOLERANCE_FIELD_MINOR,
    ServerCapabilities,
    capabilities_from,
    minor_of,
    tolerance_probe,
    warnings,
)
from chute_operator.kube import ApiFailure, KubeApi, NotFound, error_message
from chute_operator.settings import Settings
from chute_shared.cluster import MANAGED_BY

log = logging.getLogger(__name__)
CUSTOM_METRICS_GROUP = "/apis/custom.metrics.k8s.io"


async def learn(api: KubeApi, namespace: str) -> ServerCapabilities:
    """The server's capabilities; the tolerance probe is a dry run in ``namespace`` (nothing is written)."""
    try:
        version = await api.read_path("/version")
    except (OSError, ValueError, ApiFailure) as error:  # no answer, or refused
        log.warning(
            "the API server's version could not be read (%s); assuming a current one", error_message(error)
        )
        return ASSUMED
    minor = minor_of(version)
    dry_run: dict[str, Any] | None = None
    if minor is None or minor >= TOLERANCE_FIELD_MINOR:
        try:
            dry_run = await api.dry_run_create("HorizontalPodAutoscaler", namespace, tolerance_probe())
        except (OSError, ValueError, ApiFailure) as error:
            log.warning(
                "a dry run of an HPA with tolerance in %s failed (%s); deciding by the version",
                namespace,
                error_message(error),
            )
    try:
        group: dict[str, Any] | None = await api.read_path(CUSTOM_METRICS_GROUP)
    except NotFound:
        group = None
    except (OSError, ValueError, ApiFailure) as error:
        log.warning("custom.metrics.k8s.io discovery failed: %s", error_message(error))
        group = None
    return capabilities_from(version, dry_run, group)


async def learn_from(client: AsyncClient, settings: Settings) -> ServerCapabilities:
    """:func:`learn` with a client of its own, in the first watched namespace (or the operator's)."""
    api = KubeApi(client, settings.reconciling.field_manager, MANAGED_BY, settings.leadership.identity)
    namespace = next(iter(settings.watching.namespaces), settings.network.operator_namespace)
    try:
        server = await learn(api, namespace)
    finally:
        await api.close()
    log.info("API server: %s", server.describe())
    for warning in warnings(server):
        log.warning("API server: %s", warning)
    return server
