"""``chute-operator run``: the operator process."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Any, cast

import kopf

from chute_operator.gpu_profiles import AUTO, load_profiles, profile_named
from chute_operator.gpus import CatalogError, load_catalog
from chute_operator.metrics import OperatorMetrics
from chute_operator.settings import Settings


class PortTaken(Exception):
    """A port the operator must listen on is in use by another process."""

    def __init__(self, port: int, purpose: str, setting: str) -> None:
        super().__init__(f"port {port} ({purpose}) is already in use; set {setting} to a free port")


def _check_free(port: int, purpose: str, setting: str) -> None:
    """Fail now, not inside kopf (which would retry a failed start-up handler forever)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves bind
        try:
            sock.bind(("0.0.0.0", port))  # nosec B104  # only checks that the port is free on every address
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortTaken(port, purpose, setting) from error
            raise


def _serve_metrics(settings: Settings) -> OperatorMetrics:
    metrics = OperatorMetrics()
    try:
        metrics.serve(settings.process.metrics_port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PortTaken(
                settings.process.metrics_port, "metrics", "CHUTE_OPERATOR_METRICS_PORT"
            ) from error
        raise
    return metrics


def run_operator(
    namespaces: list[str] | None = None, all_namespaces: bool = False, gpu_catalog: str | None = None
) -> int:
    """Run until SIGTERM; watch ``namespaces`` (or CHUTE_OPERATOR_NAMESPACES), else all.

    ``gpu_catalog`` (or CHUTE_OPERATOR_GPU_CATALOG) extends the built-in GPU catalog; a file that
    cannot be read or parsed, or a GPU profile it does not define, stops the operator before it
    contacts the cluster (exit 2). A health
    or metrics port already in use stops it too (exit 1), naming the port and its setting. The
    settings and the catalog are read here once, and handed to the handlers in kopf's memo.
    """
    settings = Settings.from_env(
        namespaces=namespaces, all_namespaces=all_namespaces, gpu_catalog=gpu_catalog
    )
    try:
        catalog = load_catalog(settings.render.gpu_catalog)
        profiles = load_profiles(settings.render.gpu_catalog)
        if settings.render.gpu_profile != AUTO:
            profile_named(settings.render.gpu_profile, profiles)
    except (CatalogError, ValueError) as error:
        print(f"chute-operator run: {error}", file=sys.stderr)
        return 2
    try:
        _check_free(settings.process.health_port, "health", "CHUTE_OPERATOR_HEALTH_PORT")
        metrics = _serve_metrics(settings)
    except PortTaken as error:
        print(f"chute-operator run: {error}", file=sys.stderr)
        return 1
    watched, process = list(settings.watching.namespaces), settings.process
    kopf.configure(
        log_format=kopf.LogFormat.JSON if process.log_format == "json" else kopf.LogFormat.FULL,
        debug=process.log_level == "DEBUG",
        verbose=process.log_level in ("DEBUG", "INFO"),
        quiet=process.log_level in ("WARNING", "ERROR"),
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
        liveness_endpoint=f"http://0.0.0.0:{process.health_port}/healthz",
        # kopf would make one from the user name, which a uid without a passwd entry (the image's
        # 65532) does not have: getpass.getuser() raises KeyError and the operator exits at start.
        # (kopf's Identity is a NewType of str that kopf does not export.)
        identity=cast(Any, settings.leadership.identity),
        memo=kopf.Memo(metrics=metrics, settings=settings, catalog=catalog),
    )
    return 0
