"""The network guard's pure parts: the rules it builds, overlap detection, its owners file."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from typing import Any

import pytest

from chute_devcluster.netguard import (
    FORWARD_CHAIN,
    OUTPUT_CHAIN,
    ROUTE_PROTOCOL,
    GuardOwner,
    NetworkGuard,
    NetworkGuardError,
    default_route_interfaces,
    find_overlaps,
    parse_owners,
    plan_for,
    plan_guard,
)

# `ip -j -4 route show table all` and `ip -j -4 addr show` on a machine like the project's.
ROUTES: list[dict[str, Any]] = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "192.0.2.2"},
    {"type": "local", "dst": "127.0.0.0/8", "table": "local", "dev": "lo", "protocol": "kernel"},
    {"type": "local", "dst": "192.0.2.2", "table": "local", "dev": "eth0", "protocol": "kernel"},
    {"type": "broadcast", "dst": "192.0.2.255", "table": "local", "dev": "eth0", "protocol": "kernel"},
]
ADDRESSES: list[dict[str, Any]] = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},
]
RANGES = {"pod range": IPv4Network("10.244.0.0/16"), "Service range": IPv4Network("10.96.0.0/16")}
REJECT = "-j REJECT --reject-with icmp-net-unreachable"


def test_the_plan_rejects_the_service_range_by_destination_and_pods_leaving_by_the_default_interface() -> (
    None
):
    plan = plan_guard(["10.244.0.0/16"], ["10.96.0.0/16"], ["eth0"])

    assert plan.unreachable_routes == ("10.244.0.0/16",)
    assert plan.iptables_restore() == (
        "*filter\n"
        f":{OUTPUT_CHAIN} - [0:0]\n"
        f":{FORWARD_CHAIN} - [0:0]\n"
        f'-A {OUTPUT_CHAIN} -d 10.96.0.0/16 -m comment --comment "chute-operator: Service range 10.96.0.0/16'
        f' stays on this machine" {REJECT}\n'
        f'-A {FORWARD_CHAIN} -d 10.96.0.0/16 -m comment --comment "chute-operator: Service range 10.96.0.0/16'
        f' stays on this machine" {REJECT}\n'
        f'-A {FORWARD_CHAIN} -s 10.244.0.0/16 -o eth0 -m comment --comment "chute-operator: pods of'
        f' 10.244.0.0/16 do not leave by eth0" {REJECT}\n'
        "COMMIT\n"
    )


def test_no_output_rule_matches_the_output_interface() -> None:
    """After kube-proxy's DNAT, OUTPUT still sees the interface routed before the rewrite."""
    plan = plan_guard(["10.244.0.0/16"], ["10.96.0.0/16"], ["eth0", "wlan0"])
    assert all("-o" not in rule for rule in plan.output_rules)
    assert [rule[:4] for rule in plan.forward_rules if "-o" in rule] == [
        ("-s", "10.244.0.0/16", "-o", "eth0"),
        ("-s", "10.244.0.0/16", "-o", "wlan0"),
    ]


def test_without_a_default_route_there_is_no_egress_rule() -> None:
    plan = plan_guard(["10.244.0.0/16"], ["10.96.0.0/16"], [])
    assert [rule[:2] for rule in plan.forward_rules] == [("-d", "10.96.0.0/16")]


def test_the_plan_is_the_union_of_the_owners_ranges_without_duplicates() -> None:
    owners = [
        GuardOwner("a", 1, 10, "10.244.0.0/16", "10.96.0.0/16"),
        GuardOwner("b", 2, 20, "10.244.0.0/16", "10.96.0.0/16"),
        GuardOwner("c", 3, 30, "10.250.0.0/16", "10.251.0.0/16"),
    ]
    plan = plan_for(owners, ["eth0"])
    assert plan.unreachable_routes == ("10.244.0.0/16", "10.250.0.0/16")
    assert [rule[1] for rule in plan.output_rules] == ["10.96.0.0/16", "10.251.0.0/16"]
    assert len(plan.forward_rules) == 4
    assert plan_for([], ["eth0"]).empty


def test_default_route_interfaces_are_discovered() -> None:
    routes = [*ROUTES, {"dst": "default", "gateway": "198.51.100.1", "dev": "wlan0", "metric": 600}]
    assert default_route_interfaces(routes) == ["eth0", "wlan0"]
    assert default_route_interfaces(ROUTES[1:]) == []


def test_the_machines_own_networks_do_not_overlap_the_default_ranges() -> None:
    assert find_overlaps(RANGES, ROUTES, ADDRESSES) == []


def test_an_address_in_a_range_is_refused_naming_both() -> None:
    addresses = [
        *ADDRESSES,
        {"ifname": "eth1", "addr_info": [{"family": "inet", "local": "10.0.3.7", "prefixlen": 8}]},
    ]
    assert find_overlaps(RANGES, ROUTES, addresses) == [
        "the Service range 10.96.0.0/16 overlaps the machine's address 10.0.3.7/8 on eth1",
        "the pod range 10.244.0.0/16 overlaps the machine's address 10.0.3.7/8 on eth1",
    ]


def test_a_route_into_a_range_is_refused_naming_both() -> None:
    routes = [*ROUTES, {"dst": "10.96.128.0/20", "gateway": "192.0.2.9", "dev": "eth0", "protocol": "static"}]
    assert find_overlaps(RANGES, routes, ADDRESSES) == [
        "the Service range 10.96.0.0/16 overlaps the machine's route '10.96.128.0/20 via 192.0.2.9 dev eth0"
        " proto static'"
    ]


def test_the_guards_own_routes_and_declared_node_subnets_are_not_overlaps() -> None:
    routes = [
        *ROUTES,
        {"type": "unreachable", "dst": "10.244.0.0/16", "protocol": ROUTE_PROTOCOL},
        {"dst": "10.244.200.0/24", "dev": "cbr0", "protocol": "kernel", "prefsrc": "10.244.200.1"},
    ]
    addresses = [
        *ADDRESSES,
        {"ifname": "cbr0", "addr_info": [{"family": "inet", "local": "10.244.200.1", "prefixlen": 24}]},
    ]
    assert len(find_overlaps(RANGES, routes, addresses)) == 2
    assert find_overlaps(RANGES, routes, addresses, exempt=[IPv4Network("10.244.200.0/24")]) == []


def test_ranges_that_overlap_each_other_are_refused() -> None:
    ranges = {"pod range": IPv4Network("10.0.0.0/8"), "Service range": IPv4Network("10.96.0.0/16")}
    assert find_overlaps(ranges, ROUTES, ADDRESSES) == [
        "the Service range 10.96.0.0/16 overlaps the pod range 10.0.0.0/8"
    ]


def test_owners_file_round_trip_and_garbage() -> None:
    owner = GuardOwner("a1", 42, 1234, "10.244.0.0/16", "10.96.0.0/16", ("10.244.200.0/24",))
    text = json.dumps({"owners": [owner.__dict__ | {"node_subnets": list(owner.node_subnets)}]})
    assert parse_owners(text) == [owner]
    for garbage in ("", "[]", "{", '{"owners": [{"id": "x"}]}', '{"owners": 3}'):
        assert parse_owners(garbage) == []


def test_an_owner_is_alive_only_while_its_process_has_the_recorded_start_time() -> None:
    owner = GuardOwner("a", 42, 1234, "10.244.0.0/16", "10.96.0.0/16")
    assert owner.alive(lambda pid: 1234)
    assert not owner.alive(lambda pid: 9999)  # the pid was reused
    assert not owner.alive(lambda pid: None)  # gone or a zombie


@pytest.mark.parametrize(
    ("pod", "service", "subnets", "message"),
    [
        ("10.244.0.0/33", "10.96.0.0/16", (), "pod range '10.244.0.0/33' is not an IPv4 network"),
        ("10.244.0.1/16", "10.96.0.0/16", (), "pod range '10.244.0.1/16' is not an IPv4 network"),
        ("10.244.0.0/16", "fd00::/64", (), "Service range 'fd00::/64' is not an IPv4 network"),
        ("10.244.0.0/16", "10.96.0.0/16", ("10.245.0.0/24",), "not inside the pod range 10.244.0.0/16"),
    ],
)
def test_bad_ranges_are_refused_before_anything_changes(
    pod: str, service: str, subnets: tuple[str, ...], message: str
) -> None:
    with pytest.raises(NetworkGuardError, match=message.replace("(", r"\(")):
        NetworkGuard(pod, service, node_subnets=subnets)
