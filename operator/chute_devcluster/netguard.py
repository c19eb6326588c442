"""Keep the local cluster's pod and Service ranges on this machine.

Pod and Service addresses are private ranges that no host owns: without a local route or rule, a
packet to one (a kwok pod's IP, an unused ClusterIP, kube-proxy not started yet) leaves through the
default route. Before any component starts, and before anything turns on IP forwarding,
:class:`NetworkGuard` puts in place:

- an ``unreachable`` route for the pod range (protocol :data:`ROUTE_PROTOCOL`); a more specific
  route, such as a real node's pod subnet to its bridge, still wins;
- in the filter table, chain :data:`OUTPUT_CHAIN` (jumped to first from ``OUTPUT``): REJECT what
  is addressed to the Service range. It matches the destination, never ``-o``: after kube-proxy's
  DNAT the output interface seen is still the one routed before the rewrite, so a ClusterIP that
  exists keeps answering while an unused one fails at once;
- chain :data:`FORWARD_CHAIN` (first in ``FORWARD``): REJECT what is addressed to the Service range
  and what comes from the pod range and would leave through a default route's interface.

A connection to an address nobody owns fails at once (``ENETUNREACH``/``EHOSTUNREACH``), never
sent on the external interface. Several local clusters may run at once with the same ranges: the
owners are listed in :data:`STATE_DIR`/``netguard.json`` (pid and process start time), changed under
``flock``; the rules are the union over the live owners, so they stay while any owner remains.
Every change rewrites the machine's state from that list (our chains atomically, routes by our
protocol), so removal is exact and leftovers of a killed owner go at the next change
(:func:`remove_stale`).

Code that dials pods must skip pods on simulated (kwok) nodes: their addresses belong to nobody, so
a dial fails at once here (and would time out elsewhere). Those nodes carry the label
``chutes.ai/simulated=true`` (:data:`chute_devcluster.nodes.SIMULATED_LABEL`), besides
kwok's annotation ``kwok.x-k8s.io/node`` and the label ``type=kwok``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = Path("/run/chute-operator")
STATE_FILE = "netguard.json"
LOCK_FILE = "netguard.lock"
ROUTE_PROTOCOL = "147"
"""The routing protocol number on the guard's routes: how they are told apart from the machine's own."""
OUTPUT_CHAIN = "CHUTE-DEV-GUARD-OUTPUT"
FORWARD_CHAIN = "CHUTE-DEV-GUARD-FORWARD"
JUMP_COMMENT = "chute-operator dev cluster: keep pod and Service ranges on this machine"
REJECT = ("-j", "REJECT", "--reject-with", "icmp-net-unreachable")
TOOLS = {"ip": "iproute2", "iptables": "iptables", "iptables-restore": "iptables"}

Network = ipaddress.IPv4Network


class NetworkGuardError(RuntimeError):
    """The ranges overlap the machine's networks, or the rules could not be put in place."""


def parse_range(value: str, what: str) -> Network:
    """An IPv4 CIDR (``10.244.0.0/16``); a clear error for anything else."""
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise NetworkGuardError(f"{what} {value!r} is not an IPv4 network in CIDR form: {error}") from None


# -- the rules (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardPlan:
    """What the machine must carry: unreachable routes and the rules of both chains."""

    unreachable_routes: tuple[str, ...] = ()
    output_rules: tuple[tuple[str, ...], ...] = ()
    forward_rules: tuple[tuple[str, ...], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.unreachable_routes or self.output_rules or self.forward_rules)

    def iptables_restore(self) -> str:
        """Input for ``iptables-restore --noflush``: replaces both chains' rules in one transaction."""
        lines = ["*filter", f":{OUTPUT_CHAIN} - [0:0]", f":{FORWARD_CHAIN} - [0:0]"]
        for chain, rules in ((OUTPUT_CHAIN, self.output_rules), (FORWARD_CHAIN, self.forward_rules)):
            lines += [" ".join(["-A", chain, *(_quote(arg) for arg in rule)]) for rule in rules]
        return "\n".join([*lines, "COMMIT", ""])


def _quote(argument: str) -> str:
    return f'"{argument}"' if " " in argument else argument


def _comment(text: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", f"chute-operator: {text}")


def plan_guard(
    pod_ranges: Iterable[str], service_ranges: Iterable[str], egress_interfaces: Iterable[str]
) -> GuardPlan:
    """The routes and rules that keep these ranges local; in address order, without duplicates."""
    pods = sorted(set(pod_ranges), key=ipaddress.IPv4Network)
    services = sorted(set(service_ranges), key=ipaddress.IPv4Network)
    interfaces = sorted(set(egress_interfaces))
    service_rules = tuple(
        ("-d", cidr, *_comment(f"Service range {cidr} stays on this machine"), *REJECT) for cidr in services
    )
    egress_rules = tuple(
        ("-s", cidr, "-o", interface, *_comment(f"pods of {cidr} do not leave by {interface}"), *REJECT)
        for cidr in pods
        for interface in interfaces
    )
    return GuardPlan(tuple(pods), service_rules, service_rules + egress_rules)


def _jump(chain: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", JUMP_COMMENT, "-j", chain)


JUMPS = (("OUTPUT", OUTPUT_CHAIN), ("FORWARD", FORWARD_CHAIN))


# -- the machine's networks (pure parsers of `ip -j` output) -----------------------------------


def _route_network(route: dict[str, Any]) -> Network | None:
    destination = route.get("dst")
    if not destination or destination == "default":
        return None
    with contextlib.suppress(ValueError):
        return ipaddress.IPv4Network(destination, strict=False)
    return None


def default_route_interfaces(routes: Sequence[dict[str, Any]]) -> list[str]:
    """The interfaces of the default routes (``ip -j -4 route show table all``)."""
    return sorted({str(r["dev"]) for r in routes if r.get("dst") == "default" and r.get("dev")})


def describe_route(route: dict[str, Any]) -> str:
    parts = [str(route.get("type", "")) if route.get("type") not in (None, "unicast") else ""]
    parts.append(str(route.get("dst")))
    for key, word in (("gateway", "via"), ("dev", "dev"), ("protocol", "proto"), ("table", "table")):
        if route.get(key):
            parts += [word, str(route[key])]
    return " ".join(part for part in parts if part)


def find_overlaps(
    ranges: dict[str, Network],
    routes: Sequence[dict[str, Any]],
    addresses: Sequence[dict[str, Any]],
    exempt: Sequence[Network] = (),
) -> list[str]:
    """One message per range that overlaps another range, an address or a route of the machine.

    ``ranges`` maps a name (``pod range``) to its network; ``routes`` and ``addresses`` are parsed
    ``ip -j -4 route show table all`` and ``ip -j -4 addr show``. Default routes, the guard's own
    routes and anything inside an ``exempt`` network (a real node's pod subnet) do not count.
    """
    problems: list[str] = []
    named = sorted(ranges.items())
    for index, (name, network) in enumerate(named):
        for other_name, other in named[index + 1 :]:
            if network.overlaps(other):
                problems.append(f"the {name} {network} overlaps the {other_name} {other}")

    def exempted(network: Network) -> bool:
        return any(network.subnet_of(allowed) for allowed in exempt if allowed.version == network.version)

    for route in routes:
        destination = _route_network(route)
        if destination is None or str(route.get("protocol")) == ROUTE_PROTOCOL or exempted(destination):
            continue
        for name, cidr in named:
            if destination.overlaps(cidr):
                problems.append(f"the {name} {cidr} overlaps the machine's route '{describe_route(route)}'")
    for link in addresses:
        for info in link.get("addr_info") or []:
            if info.get("family") != "inet":
                continue
            interface = ipaddress.IPv4Interface(f"{info['local']}/{info.get('prefixlen', 32)}")
            if exempted(interface.network):
                continue
            for name, cidr in named:
                if interface.network.overlaps(cidr):
                    problems.append(
                        f"the {name} {cidr} overlaps the machine's address {interface}"
                        f" on {link.get('ifname')}"
                    )
    return problems


# -- owners -------------------------------------------------------------------------------------


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass(frozen=True)
class GuardOwner:
    """One local cluster that needs the guard: a process (pid + start time) and its ranges."""

    id: str
    pid: int
    pid_start: int | None
    pod_cidr: str
    service_cidr: str
    node_subnets: tuple[str, ...] = ()

    def alive(self, start_ticks: Callable[[int], int | None] = process_start_ticks) -> bool:
        started = start_ticks(self.pid)
        return started is not None and (self.pid_start is None or started == self.pid_start)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> GuardOwner:
        return cls(
            id=str(entry["id"]),
            pid=int(entry["pid"]),
            pid_start=None if entry.get("pid_start") is None else int(entry["pid_start"]),
            pod_cidr=str(entry["pod_cidr"]),
            service_cidr=str(entry["service_cidr"]),
            node_subnets=tuple(str(s) for s in entry.get("node_subnets") or ()),
        )


def parse_owners(text: str) -> list[GuardOwner]:
    """The owners in a state file's text; an unreadable file has none."""
    try:
        entries = json.loads(text).get("owners") or []
        return [GuardOwner.from_json(entry) for entry in entries]
    except (ValueError, AttributeError, KeyError, TypeError):
        return []


def plan_for(owners: Sequence[GuardOwner], egress_interfaces: Iterable[str]) -> GuardPlan:
    return plan_guard((o.pod_cidr for o in owners), (o.service_cidr for o in owners), egress_interfaces)


# -- the machine (side effects) -----------------------------------------------------------------


def _run(*command: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise NetworkGuardError(_missing_tool_message(command[0])) from None
    if check and result.returncode != 0:
        message = f"`{' '.join(command)}` exited {result.returncode}: {result.stderr.strip()}"
        if os.geteuid() != 0:
            message += (
                "\nthe local cluster keeps its pod and Service ranges on this machine with a route and"
                " iptables rules, which needs root (CAP_NET_ADMIN): run it as root"
            )
        raise NetworkGuardError(message)
    return result


def _missing_tool_message(tool: str) -> str:
    return f"`{tool}` not found: install the Debian package {TOOLS.get(tool, tool)} (scripts/setup does)"


def _ip_json(*args: str) -> list[dict[str, Any]]:
    output = _run("ip", "-j", "-4", *args).stdout.strip()
    parsed = json.loads(output) if output else []
    return [entry for entry in parsed if isinstance(entry, dict)]


def machine_routes() -> list[dict[str, Any]]:
    return _ip_json("route", "show", "table", "all")


def machine_addresses() -> list[dict[str, Any]]:
    return _ip_json("addr", "show")


def _chain_exists(chain: str) -> bool:
    return _run("iptables", "-w", "-S", chain, check=False).returncode == 0


def _apply(plan: GuardPlan, routes: Sequence[dict[str, Any]]) -> None:
    """Make the machine carry exactly ``plan``: routes first when adding, rules first when removing."""
    current = {
        str(ipaddress.IPv4Network(r["dst"], strict=False))
        for r in routes
        if str(r.get("protocol")) == ROUTE_PROTOCOL and r.get("type") == "unreachable" and r.get("dst")
    }
    for cidr in sorted(set(plan.unreachable_routes) - current):
        _run("ip", "route", "add", "unreachable", cidr, "proto", ROUTE_PROTOCOL)
    if plan.output_rules or plan.forward_rules:
        _run("iptables-restore", "-w", "--noflush", input=plan.iptables_restore())
        for parent, chain in JUMPS:
            if _run("iptables", "-w", "-C", parent, *_jump(chain), check=False).returncode != 0:
                _run("iptables", "-w", "-I", parent, "1", *_jump(chain))
    else:
        for parent, chain in JUMPS:
            while _run("iptables", "-w", "-C", parent, *_jump(chain), check=False).returncode == 0:
                _run("iptables", "-w", "-D", parent, *_jump(chain))
            if _chain_exists(chain):
                _run("iptables", "-w", "-F", chain)
                _run("iptables", "-w", "-X", chain)
    for cidr in sorted(current - set(plan.unreachable_routes)):
        _run("ip", "route", "del", "unreachable", cidr, "proto", ROUTE_PROTOCOL)


@contextlib.contextmanager
def _owners(state_dir: Path) -> Iterator[list[GuardOwner]]:
    """The live owners, under the lock; the list as left by the caller is written back and applied."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = (state_dir / LOCK_FILE).open("a")
    except OSError as error:
        raise NetworkGuardError(
            f"cannot write the network guard's state in {state_dir}: {error}"
            + ("\n(it needs root, as its routes and iptables rules do)" if os.geteuid() != 0 else "")
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state_file = state_dir / STATE_FILE
        try:
            text = state_file.read_text()
        except FileNotFoundError:
            text = "{}"
        owners = [owner for owner in parse_owners(text) if owner.alive()]
        yield owners
        routes = machine_routes()
        _apply(plan_for(owners, default_route_interfaces(routes)), routes)
        if owners:
            temporary = state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps({"owners": [asdict(o) for o in owners]}, indent=2) + "\n")
            temporary.replace(state_file)
        else:
            state_file.unlink(missing_ok=True)


def check_tools() -> None:
    """Raise :class:`NetworkGuardError` naming the Debian package of a missing tool."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise NetworkGuardError(_missing_tool_message(tool))


def remove_stale(state_dir: Path = STATE_DIR) -> None:
    """Drop owners that are gone; with none left, remove everything the guard ever added."""
    if shutil.which("iptables") is None or (not (state_dir / STATE_FILE).exists() and not _leftovers()):
        return
    with _owners(state_dir):
        pass


def _leftovers() -> bool:
    with contextlib.suppress(NetworkGuardError):
        if any(str(r.get("protocol")) == ROUTE_PROTOCOL for r in machine_routes()):
            return True
        return any(_chain_exists(chain) for _, chain in JUMPS)
    return False


def guard_installed() -> bool:
    """Whether the guard's chains, jumps and at least one of its routes are on the machine."""
    return (
        _leftovers()
        and all(_chain_exists(chain) for _, chain in JUMPS)
        and all(_run("iptables", "-w", "-C", p, *_jump(c), check=False).returncode == 0 for p, c in JUMPS)
    )


@dataclass
class NetworkGuard:
    """The guard for one local cluster's ranges: :meth:`install` before it starts, :meth:`remove` after.

    Both are idempotent; ``node_subnets`` are real nodes' pod subnets (inside the pod range),
    whose routes and bridge addresses are the cluster's own and not overlaps.
    """

    pod_cidr: str
    service_cidr: str
    node_subnets: tuple[str, ...] = ()
    state_dir: Path = STATE_DIR
    owner_id: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        self._pod = parse_range(self.pod_cidr, "pod range")
        self._service = parse_range(self.service_cidr, "Service range")
        for subnet in self.node_subnets:
            self._check_node_subnet(subnet)
        self.installed = False

    def _check_node_subnet(self, subnet: str) -> None:
        if not parse_range(subnet, "node pod subnet").subnet_of(self._pod):
            raise NetworkGuardError(f"node pod subnet {subnet} is not inside the pod range {self.pod_cidr}")

    def _owner(self) -> GuardOwner:
        pid = os.getpid()
        return GuardOwner(
            self.owner_id, pid, process_start_ticks(pid), self.pod_cidr, self.service_cidr, self.node_subnets
        )

    def install(self) -> None:
        """Refuse ranges that overlap the machine's networks; then add this cluster's routes and rules."""
        check_tools()
        with _owners(self.state_dir) as owners:
            exempt = [
                parse_range(subnet, "node pod subnet")
                for owner in [*owners, self._owner()]
                for subnet in owner.node_subnets
            ]
            problems = find_overlaps(
                {"pod range": self._pod, "Service range": self._service},
                machine_routes(),
                machine_addresses(),
                exempt,
            )
            if problems:
                raise NetworkGuardError(
                    "refusing to start the local cluster: "
                    + "; ".join(problems)
                    + " (choose other ranges: `dev up --pod-cidr/--service-cidr`, ControlPlane(pod_cidr=,"
                    " service_cidr=))"
                )
            owners[:] = [o for o in owners if o.id != self.owner_id] + [self._owner()]
        self.installed = True

    def add_node_subnet(self, subnet: str) -> None:
        """Record a real node's pod subnet (before its bridge exists): no start calls it an overlap."""
        self._check_node_subnet(subnet)
        if subnet not in self.node_subnets:
            self.node_subnets = (*self.node_subnets, subnet)
        if self.installed:
            with _owners(self.state_dir) as owners:
                owners[:] = [o for o in owners if o.id != self.owner_id] + [self._owner()]

    def remove(self) -> None:
        """Drop this cluster from the owners; what no live owner still needs leaves the machine."""
        if not self.installed:
            return
        with _owners(self.state_dir) as owners:
            owners[:] = [o for o in owners if o.id != self.owner_id]
        self.installed = False

    def __enter__(self) -> NetworkGuard:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
