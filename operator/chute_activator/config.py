"""Command-line flags of the activator; every flag also reads ``CHUTE_ACTIVATOR_<FLAG>`` (the flag wins)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chute_activator.body import BODY_TIMEOUT_SECONDS
from chute_activator.connections import HEAD_TIMEOUT_SECONDS, MAX_CONNECTIONS
from chute_shared.flags import EnvFlags, Parse, at_least, non_negative, optional, positive
from chute_shared.flags import port as port_number
from chute_shared.limits import MAX_BODY_BYTES, REQUEST_TIMEOUT_SECONDS
from chute_shared.ports import ACTIVATOR_CHUTE_PORTS, parse_port_range

ENV_PREFIX = "CHUTE_ACTIVATOR_"


@dataclass(frozen=True, slots=True)
class Config:
    chute_ports: tuple[int, int] = ACTIVATOR_CHUTE_PORTS
    metrics_port: int = 9090
    host: str = "0.0.0.0"  # nosec B104  # a pod's server listens on the pod's address (--host narrows it)
    debug_port: int | None = 9092
    debug_host: str = "127.0.0.1"
    queue_limit: int = 10
    unknown_limit: int = 100
    max_wait_seconds: float = 300.0
    wake_interval_seconds: float = 5.0
    default_retry_after: int = 10
    max_body_bytes: int = MAX_BODY_BYTES
    max_held_body_bytes: int = 128 * 1024 * 1024
    request_timeout_seconds: float = float(REQUEST_TIMEOUT_SECONDS)
    body_timeout_seconds: float = BODY_TIMEOUT_SECONDS
    head_timeout_seconds: float = HEAD_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS
    drain_seconds: float = 15.0
    shutdown_timeout_seconds: float = 30.0
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    log_level: str = "INFO"
    test_only_endpoints: str | None = None


def parse_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags (falling back to the environment); exits with usage on error like argparse."""
    parser = argparse.ArgumentParser(
        prog="chute-operator activator",
        description="Holds requests for Chutes scaled to zero, wakes them and forwards when ready.",
    )
    options, defaults = EnvFlags(parser, ENV_PREFIX, environ), Config()

    def flag(name: str, kind: Parse, help_text: str) -> None:
        options.add(f"--{name}", kind, getattr(defaults, name.replace("-", "_")), help_text)

    flag(
        "chute-ports",
        _port_range,
        "FIRST-LAST: the ports of the Chutes at zero, one each (the operator's --activator-ports): "
        "a request is for the Chute whose port it arrived on; every port is listened on",
    )
    flag("metrics-port", int, "port of /metrics, /healthz, /readyz")
    flag("host", str, "address to bind")
    flag("debug-port", optional(port_number), "port of /_chutes (what it knows of every Chute); off: none")
    flag("debug-host", str, "address the debug port binds: loopback, out of its Service's reach")
    flag("queue-limit", int, "requests held per Chute; more get 503 with Retry-After")
    flag(
        "unknown-limit",
        at_least(1),
        "before the first listing of the Chutes, distinct unknown names whose requests may wait; "
        "more get 503 with Retry-After (after it, an unknown Chute is 404 at once)",
    )
    flag("max-wait-seconds", float, "longest a request is held before 503 with Retry-After")
    flag("wake-interval-seconds", float, "how often a wake is asked again while requests wait")
    flag("default-retry-after", int, "Retry-After when the Chute's load time is not known yet")
    flag(
        "max-body-bytes",
        int,
        "largest request body held for a Chute without spec.maxRequestBodyBytes (the sidecar's default)",
    )
    flag(
        "max-held-body-bytes",
        at_least(1),
        "bytes of bodies held across all requests; beyond, 503 with Retry-After (bounds the memory)",
    )
    flag(
        "request-timeout-seconds",
        float,
        "longest a forwarded request may take, for a Chute without spec.requestTimeoutSeconds",
    )
    flag(
        "body-timeout-seconds",
        positive,
        "longest a client may take to send its whole body (its bytes count as held meanwhile); 408 beyond",
    )
    flag(
        "head-timeout-seconds",
        positive,
        "longest a new connection may take to send its first request head; then it is closed",
    )
    flag(
        "max-connections",
        at_least(1),
        "client connections at once (each holds an open file); one more is closed at once",
    )
    flag(
        "drain-seconds",
        non_negative,
        "after SIGTERM keep listening (unready), forwarding and holding this long: longer than the "
        "operator's check of the activator's endpoints (5 s) plus kube-proxy's sync",
    )
    flag(
        "shutdown-timeout-seconds",
        positive,
        "after the drain, wait this long at most for forwarded requests to finish",
    )
    flag("kubeconfig", str, "kubeconfig file (default: in-cluster, then ~/.kube/config)")
    flag("log-level", str, "log level")
    flag(
        "test-only-endpoints",
        str,
        "TEST ONLY: JSON file {namespace/chute: 127.0.0.1:port} forwarded to instead of a ready pod",
    )
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only this namespace (repeat)"
    )
    args = options.parse(argv)
    if args.queue_limit < 1 or args.max_wait_seconds <= 0:
        parser.error("--queue-limit must be >= 1 and --max-wait-seconds > 0")
    first, last = args.chute_ports
    for name, value in (("--metrics-port", args.metrics_port), ("--debug-port", args.debug_port)):
        if value is not None and first <= value <= last:
            parser.error(f"{name} {value} is inside --chute-ports {first}-{last}")
    return Config(
        chute_ports=args.chute_ports,
        metrics_port=args.metrics_port,
        host=args.host,
        debug_port=args.debug_port,
        debug_host=args.debug_host,
        queue_limit=args.queue_limit,
        unknown_limit=args.unknown_limit,
        max_wait_seconds=args.max_wait_seconds,
        wake_interval_seconds=args.wake_interval_seconds,
        default_retry_after=args.default_retry_after,
        max_body_bytes=args.max_body_bytes,
        max_held_body_bytes=args.max_held_body_bytes,
        request_timeout_seconds=args.request_timeout_seconds,
        body_timeout_seconds=args.body_timeout_seconds,
        head_timeout_seconds=args.head_timeout_seconds,
        max_connections=args.max_connections,
        drain_seconds=args.drain_seconds,
        shutdown_timeout_seconds=args.shutdown_timeout_seconds,
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespace),
        log_level=args.log_level.upper(),
        test_only_endpoints=args.test_only_endpoints,
    )


def _port_range(text: str) -> tuple[int, int]:
    try:
        return parse_port_range(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
