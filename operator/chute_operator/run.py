"""``chute-operator run``: the operator process."""

from __future__ import annotations

import logging
import os
import sys

import kopf

from chute_operator.gpus import CatalogError, load_catalog
from chute_operator.settings import Settings


def run_operator(
    namespaces: list[str] | None = None, all_namespaces: bool = False, gpu_catalog: str | None = None
) -> int:
    """Run until SIGTERM; watch ``namespaces`` (or CHUTE_OPERATOR_NAMESPACES), else all.

    ``gpu_catalog`` (or CHUTE_OPERATOR_GPU_CATALOG) extends the built-in GPU catalog; a file that
    cannot be read or parsed stops the operator before it contacts the cluster (exit 2).
    """
    if gpu_catalog:
        os.environ["CHUTE_OPERATOR_GPU_CATALOG"] = gpu_catalog  # the controller reads the same setting
    settings = Settings.from_env()
    try:
        load_catalog(settings.gpu_catalog)
    except CatalogError as error:
        print(f"chute-operator run: {error}", file=sys.stderr)
        return 2
    watched = [] if all_namespaces else list(namespaces or settings.namespaces)
    os.environ["CHUTE_OPERATOR_NAMESPACES"] = ",".join(watched)  # the controller lists the same scope
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        debug=settings.log_level == "DEBUG",
        verbose=settings.log_level in ("DEBUG", "INFO"),
        quiet=settings.log_level in ("WARNING", "ERROR"),
    )
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import chute_operator.handlers  # noqa: F401  (registers the handlers)

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    kopf.run(
        standalone=True,
        clusterwide=not watched,
        namespaces=watched,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )
    return 0
