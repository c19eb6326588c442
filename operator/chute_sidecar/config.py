"""Command-line flags of the sidecar; every flag also reads ``CHUTE_SIDECAR_<FLAG>`` (the flag wins)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chute_shared import flags, logs
from chute_shared.flags import EnvFlags, Parse, at_least, boolean, non_negative, optional, port, positive
from chute_shared.limits import MAX_BODY_BYTES, REQUEST_TIMEOUT_SECONDS
from chute_shared.paths import MODEL_HEALTH_PATH
from chute_shared.ports import ADMIN_PORT, METRICS_PORT, SIDECAR_PORT
from chute_sidecar.routes import parse_cord

ENV_PREFIX = "CHUTE_SIDECAR_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALL_ADDRESSES = "0.0.0.0"  # nosec B104  # the pod's address; its NetworkPolicy limits who reaches it
"""The default ``--host``: in a pod, the sidecar serves on the pod's address."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the sidecar needs to run, validated."""

    upstream: str
    port: int = SIDECAR_PORT
    metrics_port: int = METRICS_PORT
    admin_port: int = ADMIN_PORT
    host: str = ALL_ADDRESSES
    concurrency: int = 1
    health_path: str = MODEL_HEALTH_PATH
    startup_timeout_seconds: float = 1800.0
    request_timeout_seconds: float = float(REQUEST_TIMEOUT_SECONDS)
    max_body_bytes: int = MAX_BODY_BYTES
    engine_metrics_path: str | None = None
    cords: tuple[str, ...] = ()
    restrict_to_cords: bool = False
    api_key_file: str | None = None
    drain_seconds: float = 5.0
    shutdown_timeout_seconds: float = 80.0
    health_interval_seconds: float = 5.0
    health_timeout_seconds: float = 5.0
    log_format: str = "json"
    log_level: str = "INFO"
    drain_token: str | None = field(default=None, repr=False)


def env_name(flag: str) -> str:
    """``--admin-port`` -> ``CHUTE_SIDECAR_ADMIN_PORT``."""
    return flags.env_name(ENV_PREFIX, flag)


def _path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/': {text!r}")
    return text


def _upstream(text: str) -> str:
    if not text.startswith("http://"):
        raise argparse.ArgumentTypeError(f"must be an http:// URL (the model on loopback): {text!r}")
    return text.rstrip("/")


# flag, type, default, help
_OPTIONS: tuple[tuple[str, Parse, object, str], ...] = (
    ("--upstream", _upstream, None, "model server base URL, e.g. http://127.0.0.1:8000 (required)"),
    ("--port", port, SIDECAR_PORT, "serving port (reverse proxy)"),
    ("--metrics-port", port, METRICS_PORT, "metrics port: /metrics, /_conn_stats"),
    ("--admin-port", port, ADMIN_PORT, "admin port: probes and /drainz; keep it out of the Service"),
    ("--host", str, ALL_ADDRESSES, "address the ports bind to"),
    ("--concurrency", at_least(1), 1, "proxied requests in flight at most; one more gets 429"),
    ("--health-path", _path, MODEL_HEALTH_PATH, "the model's health path, polled in the background"),
    ("--startup-timeout-seconds", positive, 1800.0, "how long the model may take to start"),
    (
        "--request-timeout-seconds",
        positive,
        float(REQUEST_TIMEOUT_SECONDS),
        "per proxied request, whole exchange; 504 on expiry",
    ),
    ("--max-body-bytes", at_least(1), MAX_BODY_BYTES, "largest request body; 413 beyond"),
    (
        "--engine-metrics-path",
        optional(_path),
        None,
        "the model's own Prometheus path (e.g. /metrics): its series are served on the metrics port too",
    ),
    ("--api-key-file", str, None, "file of accepted API keys, one a line; enables auth"),
    ("--drain-seconds", non_negative, 5.0, "after SIGTERM keep serving (unready) this long"),
    (
        "--shutdown-timeout-seconds",
        positive,
        80.0,
        "after the drain, wait this long at most for in-flight requests",
    ),
    ("--health-interval-seconds", positive, 5.0, "model health poll interval"),
    ("--health-timeout-seconds", positive, 5.0, "timeout of one model health poll"),
    ("--log-format", str, "json", "json or text"),
    ("--log-level", str, "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL; DEBUG logs every request"),
    ("--drain-token", str, None, "/drainz needs this in its X-Chute-Drain-Token header (prefer the env)"),
)


def build_parser(env: Mapping[str, str] | None = None) -> EnvFlags:
    """The sidecar's flags, falling back to ``env``."""
    parser = argparse.ArgumentParser(
        prog="chute-operator sidecar",
        description="Reverse proxy in front of a model server: concurrency limit, auth, probes, metrics.",
        epilog=f"Every flag also reads the environment variable {ENV_PREFIX}<FLAG>; the flag wins.",
    )
    options = EnvFlags(parser, ENV_PREFIX, env)
    for flag, kind, default, text in _OPTIONS:
        options.add(flag, kind, default, text)
    options.add(
        "--restrict-to-cords", boolean, False, "404 for routes not in the --cord list", action="store_true"
    )
    options.add(
        "--cord",
        str,
        (),
        "a route of the model, repeatable; PATH may end in '*' (prefix); METHOD may be '*' "
        "(in the environment: entries separated by ';' or newlines)",
        from_env=_split_cords,
        action="append",
        metavar="'METHOD PATH'",
    )
    return options


# a newline, or a ';' before the next entry's method and space (a cord path may hold ';' itself)
_CORD_SEPARATOR = re.compile(r"\n|;(?=\s*[A-Za-z*]+ )")


def _split_cords(text: str) -> list[str]:
    return [part.strip() for part in _CORD_SEPARATOR.split(text) if part.strip()]


def parse_config(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Config:
    """Parse flags (falling back to the environment); exits with usage on error like argparse."""
    options = build_parser(env)
    args, parser = options.parse(argv), options.parser
    if args.upstream is None:
        parser.error(f"--upstream (or {env_name('--upstream')}) is required")
    if args.log_format not in logs.FORMATS:
        parser.error("--log-format must be json or text")
    if args.log_level.upper() not in LOG_LEVELS:
        parser.error(f"--log-level must be one of {', '.join(LOG_LEVELS)} (any case), got {args.log_level!r}")
    ports = [number for number in (args.port, args.metrics_port, args.admin_port) if number]
    if len(set(ports)) != len(ports):
        parser.error("--port, --metrics-port and --admin-port must differ")
    cords = list(args.cord)
    for cord in cords:
        try:
            parse_cord(cord)
        except ValueError as error:
            parser.error(str(error))
    if args.restrict_to_cords and not cords:
        parser.error("--restrict-to-cords needs at least one --cord")
    return Config(
        upstream=args.upstream,
        port=args.port,
        metrics_port=args.metrics_port,
        admin_port=args.admin_port,
        host=args.host,
        concurrency=args.concurrency,
        health_path=args.health_path,
        startup_timeout_seconds=args.startup_timeout_seconds,
        request_timeout_seconds=args.request_timeout_seconds,
        max_body_bytes=args.max_body_bytes,
        engine_metrics_path=args.engine_metrics_path,
        cords=tuple(cords),
        restrict_to_cords=args.restrict_to_cords,
        api_key_file=args.api_key_file or None,
        drain_seconds=args.drain_seconds,
        shutdown_timeout_seconds=args.shutdown_timeout_seconds,
        health_interval_seconds=args.health_interval_seconds,
        health_timeout_seconds=args.health_timeout_seconds,
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        drain_token=args.drain_token or None,
    )
