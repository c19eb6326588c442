"""The static Envoy configuration of the gateway harness (chute_devcluster.envoy.bootstrap)."""

from __future__ import annotations

from typing import Any

from chute_devcluster.envoy import DESTINATION_HEADER, PoolRoute, ServiceRoute, bootstrap

SERVICE = ServiceRoute("/service/", "10.96.0.20", 80)


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return dict(listener["filter_chains"][0]["filters"][0]["typed_config"])


def test_listener_and_admin_are_on_loopback_only() -> None:
    config = bootstrap(15000, 15001, [SERVICE])
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15001}
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}


def test_a_service_route_strips_its_prefix_and_waits_long_enough_for_a_stream() -> None:
    route = _manager(bootstrap(1, 2, [SERVICE]))["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["match"] == {"prefix": "/service/"}
    assert route["route"]["prefix_rewrite"] == "/"
    assert route["route"]["timeout"] == "660s"
    cluster = bootstrap(1, 2, [SERVICE])["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "10.96.0.20", "port_value": 80}


def test_a_pool_route_goes_to_the_picked_pod_else_fails_open_to_the_service() -> None:
    config = bootstrap(1, 2, [SERVICE, PoolRoute("/pool/", 9002, SERVICE)])
    manager = _manager(config)
    # a client's own destination header is removed before any route is chosen
    assert manager["early_header_mutation_extensions"][0]["typed_config"]["mutations"] == [
        {"remove": DESTINATION_HEADER}
    ]
    ext_proc = next(f for f in manager["http_filters"] if f["name"] == "ext_proc.pool1")
    assert ext_proc["disabled"] is True
    assert ext_proc["typed_config"]["failure_mode_allow"] is True
    picked, fallback = manager["route_config"]["virtual_hosts"][0]["routes"][1:]
    assert picked["match"]["headers"] == [{"name": DESTINATION_HEADER, "present_match": True}]
    assert picked["route"]["cluster"] == "pool1"
    assert fallback["route"]["cluster"] == "service1"
    assert "ext_proc.pool1" in picked["typed_per_filter_config"]
    assert "ext_proc.pool1" in fallback["typed_per_filter_config"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert clusters["pool1"]["type"] == "ORIGINAL_DST"
    assert clusters["pool1"]["original_dst_lb_config"]["http_header_name"] == DESTINATION_HEADER
    picker = clusters["picker1"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert picker["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9002}


def test_fail_close_is_kept() -> None:
    manager = _manager(bootstrap(1, 2, [PoolRoute("/pool/", 9002, SERVICE, fail_open=False)]))
    assert manager["http_filters"][0]["typed_config"]["failure_mode_allow"] is False
