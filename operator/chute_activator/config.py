"""Command-line flags of the activator; every flag also reads ``CHUTE_ACTIVATOR_<FLAG>`` (the flag wins)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass

ENV_PREFIX = "CHUTE_ACTIVATOR_"


@dataclass(frozen=True, slots=True)
class Config:
    port: int = 8080
    metrics_port: int = 9090
    host: str = "0.0.0.0"
    queue_limit: int = 10
    max_wait_seconds: float = 300.0
    wake_interval_seconds: float = 5.0
    default_retry_after: int = 10
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout_seconds: float = 600.0
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    log_level: str = "INFO"
    test_only_endpoints: str | None = None


def parse_config(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="chute-operator activator",
        description="Holds requests for Chutes scaled to zero, wakes them and forwards when ready.",
    )
    defaults = Config()

    def flag(name: str, kind: type, help_text: str) -> None:
        attribute = name.replace("-", "_")
        env = os.environ.get(ENV_PREFIX + attribute.upper())
        default = kind(env) if env is not None else getattr(defaults, attribute)
        parser.add_argument(
            f"--{name}", type=kind, default=default, help=f"{help_text} (default: %(default)s)"
        )

    flag("port", int, "serving port (the Chutes' Services point here while at zero)")
    flag("metrics-port", int, "port of /metrics, /healthz, /readyz")
    flag("host", str, "address to bind")
    flag("queue-limit", int, "requests held per Chute; more get 503 with Retry-After")
    flag("max-wait-seconds", float, "longest a request is held before 503 with Retry-After")
    flag("wake-interval-seconds", float, "how often a wake is asked again while requests wait")
    flag("default-retry-after", int, "Retry-After when the Chute's load time is not known yet")
    flag("max-body-bytes", int, "largest request body held")
    flag("request-timeout-seconds", float, "longest a forwarded request may take")
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
    args = parser.parse_args(list(argv))
    if args.queue_limit < 1 or args.max_wait_seconds <= 0:
        parser.error("--queue-limit must be >= 1 and --max-wait-seconds > 0")
    return Config(
        port=args.port,
        metrics_port=args.metrics_port,
        host=args.host,
        queue_limit=args.queue_limit,
        max_wait_seconds=args.max_wait_seconds,
        wake_interval_seconds=args.wake_interval_seconds,
        default_retry_after=args.default_retry_after,
        max_body_bytes=args.max_body_bytes,
        request_timeout_seconds=args.request_timeout_seconds,
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespace),
        log_level=args.log_level.upper(),
        test_only_endpoints=args.test_only_endpoints,
    )
