"""A real Envoy in front of the local cluster's Chutes, from a static configuration, on loopback.

Two doors, each under a path prefix that Envoy strips before it forwards:

- :class:`ServiceRoute`, what an HTTPRoute or an Ingress does: the Chute's Service (its ClusterIP,
  which the host reaches through kube-proxy; at zero that is the activator).
- :class:`PoolRoute`, what an inference gateway does with an InferencePool: Envoy's ``ext_proc``
  filter asks the pool's endpoint picker (gRPC on loopback), which sets
  ``x-gateway-destination-endpoint`` to a pod's ``IP:port``; an ``ORIGINAL_DST`` cluster sends the
  request there. A client's own value of that header is removed first. ``fail_open``
  (``failureMode: FailOpen``): when the picker fails, the request goes on to the Chute's Service.

The listener and the admin port are on 127.0.0.1; the only upstreams are the Services' ClusterIPs,
the pods' IPs the picker names, and the picker on loopback.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chute_devcluster.processes import Component, free_port

DESTINATION_HEADER = "x-gateway-destination-endpoint"
"""Where the endpoint picker names the chosen pod (the endpoint picker protocol)."""
LOOPBACK = "127.0.0.1"
_TYPES = "type.googleapis.com/envoy.extensions"
_ROUTE = "type.googleapis.com/envoy.config.route.v3"


@dataclass(frozen=True)
class ServiceRoute:
    """``PREFIX...`` to a Service's ClusterIP and port."""

    prefix: str
    address: str
    port: int
    timeout_seconds: int = 660


@dataclass(frozen=True)
class PoolRoute:
    """``PREFIX...`` to the pod the pool's endpoint picker (gRPC on ``LOOPBACK:picker_port``) chooses."""

    prefix: str
    picker_port: int
    fallback: ServiceRoute
    """The Chute's Service: where the request goes when the picker fails and ``fail_open`` is set."""
    fail_open: bool = True
    timeout_seconds: int = 660


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _static_cluster(name: str, host: str, port: int, http2: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPES}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _pool_cluster(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "5s",
        "original_dst_lb_config": {"use_http_header": True, "http_header_name": DESTINATION_HEADER},
    }


def _ext_proc(index: int, route: PoolRoute) -> dict[str, Any]:
    """The pool's ext_proc filter, off unless a route turns it on. The body streams to the picker
    without waiting for its answer to the headers (lwepp answers them once it has the whole body);
    ``STREAMED``, not ``FULL_DUPLEX_STREAMED``: with that mode Envoy 1.40 answers 500 when the picker
    fails, even with ``failure_mode_allow``. The answer does not pass through the picker."""
    return {
        "name": f"ext_proc.pool{index}",
        "disabled": True,
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": f"picker{index}"}, "timeout": "10s"},
            "failure_mode_allow": route.fail_open,
            "message_timeout": "10s",
            "send_body_without_waiting_for_header_response": True,
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "STREAMED",
                "request_trailer_mode": "SEND",
                "response_header_mode": "SKIP",
                "response_body_mode": "NONE",
                "response_trailer_mode": "SKIP",
            },
        },
    }


def _forward(cluster: str, timeout: int) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "prefix_rewrite": "/",
        "timeout": f"{timeout}s",
        "idle_timeout": f"{timeout}s",
    }


def _routes(routes: list[ServiceRoute | PoolRoute]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The virtual host's routes and the ext_proc filters they turn on."""
    entries: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    for index, route in enumerate(routes):
        if isinstance(route, ServiceRoute):
            match = {"prefix": route.prefix}
            entries.append({"match": match, "route": _forward(f"service{index}", route.timeout_seconds)})
            continue
        filters.append(_ext_proc(index, route))
        enable = {f"ext_proc.pool{index}": {"@type": f"{_ROUTE}.FilterConfig", "config": {}}}
        picked = {"prefix": route.prefix, "headers": [{"name": DESTINATION_HEADER, "present_match": True}]}
        to_pod = _forward(f"pool{index}", route.timeout_seconds)
        entries.append({"match": picked, "route": to_pod, "typed_per_filter_config": enable})
        fallback = _forward(f"service{index}", route.timeout_seconds)
        entries.append(
            {"match": {"prefix": route.prefix}, "route": fallback, "typed_per_filter_config": enable}
        )
    return entries, filters


def _clusters(routes: list[ServiceRoute | PoolRoute]) -> list[dict[str, Any]]:
    clusters: list[dict[str, Any]] = []
    for index, route in enumerate(routes):
        service = route if isinstance(route, ServiceRoute) else route.fallback
        clusters.append(_static_cluster(f"service{index}", service.address, service.port))
        if isinstance(route, PoolRoute):
            clusters.append(_pool_cluster(f"pool{index}"))
            clusters.append(_static_cluster(f"picker{index}", LOOPBACK, route.picker_port, http2=True))
    return clusters


def bootstrap(port: int, admin_port: int, routes: list[ServiceRoute | PoolRoute]) -> dict[str, Any]:
    """Envoy's static configuration: one HTTP listener on loopback with ``routes``, in order."""
    entries, ext_procs = _routes(routes)
    strip = {  # before the route is chosen: a client cannot name a destination itself
        "name": "strip_destination",
        "typed_config": {
            "@type": f"{_TYPES}.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": [{"remove": DESTINATION_HEADER}],
        },
    }
    router = {"name": "router", "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"}}
    manager = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "access_log": [
            {
                "name": "stdout",
                "typed_config": {"@type": f"{_TYPES}.access_loggers.stream.v3.StdoutAccessLog"},
            }
        ],
        "route_config": {
            "name": "routes",
            "virtual_hosts": [{"name": "chutes", "domains": ["*"], "routes": entries}],
        },
        "early_header_mutation_extensions": [strip],
        "http_filters": [*ext_procs, router],
    }
    listener = {
        "name": "gateway",
        "address": _address(LOOPBACK, port),
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": manager}]}],
    }
    return {
        "admin": {"address": _address(LOOPBACK, admin_port)},
        "static_resources": {"listeners": [listener], "clusters": _clusters(routes)},
    }


@dataclass
class Envoy:
    """An Envoy process with :func:`bootstrap`'s configuration; its log in ``log_dir/envoy.log``."""

    binary: Path
    log_dir: Path
    routes: list[ServiceRoute | PoolRoute]
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    component: Component | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start Envoy and wait until its admin port says it is ready (``/ready`` is ``LIVE``)."""
        config = self.log_dir / "envoy.json"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(bootstrap(self.port, self.admin_port, self.routes), indent=1))
        command = [str(self.binary), "--config-path", str(config), "--disable-hot-restart"]
        command += ["--concurrency", "1", "--log-level", "info"]
        self.component = Component("envoy", command, self.log_dir / "envoy.log")
        self.component.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.component.running():
                raise RuntimeError(f"Envoy exited:\n{self.component.tail(40)}")
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Envoy not ready after {timeout:.0f}s:\n{self.component.tail(40)}")

    def _admin(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection(LOOPBACK, self.admin_port, timeout=5)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            return answer.status, answer.read().decode()
        finally:
            connection.close()

    def _ready(self) -> bool:
        try:
            return self._admin("/ready")[0] == 200
        except OSError:
            return False

    def stats(self, prefix: str) -> dict[str, int]:
        """Envoy's counters and gauges whose names start with ``prefix``."""
        pairs = (line.split(": ", 1) for line in self._admin(f"/stats?filter=^{prefix}")[1].splitlines())
        return {name: int(value) for name, value in pairs if value.isdigit()}

    def stop(self) -> None:
        if self.component is not None:
            self.component.terminate()
            self.component.wait(10)

    def __enter__(self) -> Envoy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
