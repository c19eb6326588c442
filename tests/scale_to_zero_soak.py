"""A Chute that goes to zero and wakes again and again under a bounded load, with an operator restart
and an activator rollout in the middle (issue 25), on the local cluster's real node: shared by
tests/realnode/test_scale_to_zero_restarts_on_real_pods.py (a short run) and
benchmarks/scale_to_zero_soak.py (a longer one).

The setup is the one of :mod:`tests.scale_to_zero_harness`: the operator with its metrics API (its
scraper reads the real pods' sidecars) and scale to zero on, a real activator process on the host
(``activator_process``, listed by the activator Service's EndpointSlice, ``activator_service``), and
one Chute (minInstances 0, shutdownAfterSeconds 60, the least the CRD accepts) running the project
image's modelsim behind the real sidecar on the real node.

Every request goes to the Chute Service's ClusterIP (``service_address``), through kube-proxy: to
the activator while the Chute is at zero (the operator's ``NAME-activator`` slice), to the pod once
it is ready. Each carries the Host header an in-cluster client gives (``NAME.NAMESPACE.svc.cluster.local``);
nothing here depends on the activator reading it. The load is open-loop and bounded: a request every
``1 / rate`` seconds, at most ``max_in_flight`` at once (a held request keeps its place), at most
``max_requests`` and ``deadline_seconds`` in all. Requests are
- ``POST /v1/echo/digest`` with bodies of 0 bytes to 8 MiB (every size of :data:`BODY_SIZES` in turn,
  every other one chunked): the model answers the length and SHA-256 of what it received, compared
  with what was sent;
- every ``stream_every``-th a streamed chat completion: every token must arrive, and they must come
  apart (at the model's rate), not as one body.

Each wake from zero is a *cycle*: wait until the Chute is at zero and its Service reaches the activator,
run the load until the Chute has a ready replica again and ``burst_seconds`` after, stop it, and
let the Chute go idle. In the cycle ``restart_at_wake`` the operator is stopped at zero, requests
arrive for ``operator_down_seconds`` (held by the activator: nothing wakes the Chute), then it is
started again. In the cycle ``rollout_at_wake`` the activator is rolled out as a Deployment would:
a second activator process, on a second address of the host (:func:`second_node_address`), is
started; requests arrive and are held by the first; the activator Service's slice lists both, then
the first is sent SIGTERM and listed as terminating: it drains (``drain_seconds``), the operator
rewrites the Chute's slice without it, and once it has exited it leaves the Service's slice.

Counted: every answer's outcome (200 byte-exact, 503 with Retry-After, anything else: a status, a
refused or reset connection, a cut answer, a body that differs), the bodies checked and their bytes,
the wakes, the restart's and the rollout's moments and what was in flight then, and the activator
processes' peak RSS (``VmHWM`` of /proc/PID/status).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chute_devcluster.apiclient import ApiError
from chute_devcluster.controlplane import ControlPlane
from chute_modelsim.server import DIGEST_PATH
from tests.kube_helpers import apply, get, items, service_address
from tests.metrics_api_harness import metrics_api_on_loopback
from tests.operator_fixtures import OperatorProcess
from tests.scale_to_zero_harness import (
    IDLE_WINDOW,
    NAME,
    activator_counters,
    activator_process,
    activator_service,
    at_zero,
    chute,
    chute_port,
    kube_proxy_sends_to,
    second_node_address,
)

MIB = 1024 * 1024
BODY_SIZES = (0, 1, 1000, 65_537, MIB, 8 * MIB)
PIECE = 65_536
ALLOWED = ("200", "503 Retry-After")
"""The only outcomes allowed: answered (byte-exact, a whole stream), or refused with a Retry-After."""
WAKE_REQUESTED = "chutes.ai/wake-requested-at"


@dataclass(frozen=True)
class Plan:
    """How long and how hard; every loop is bounded by it."""

    wakes: int = 2
    restart_at_wake: int = 1
    rollout_at_wake: int = 2
    rate: float = 5.0
    """Requests started per second (open-loop)."""
    max_in_flight: int = 24
    burst_seconds: float = 5.0
    """Load kept up after the Chute has a ready replica again."""
    operator_down_seconds: float = 4.0
    held_before_rollout: int = 3
    """Requests the first activator holds before the rollout begins."""
    drain_seconds: float = 8.0
    load_seconds: float = 8.0
    """The model's load time: the wake's length, while requests are held."""
    tokens_per_second: float = 20.0
    stream_tokens: int = 8
    stream_every: int = 4
    queue_limit: int = 40
    concurrency: int = 64
    """The Chute's: above the requests in flight, so that the sidecar answers none 429 and the HPA
    never wants a second replica."""
    max_requests: int = 3000
    deadline_seconds: float = 900.0
    request_timeout: float = 120.0


@dataclass
class Answer:
    kind: str  # "digest" or "stream"
    size: int
    chunked: bool
    sent: float
    answered: float = 0.0
    outcome: str = ""
    detail: str = ""


@dataclass
class Tally:
    """Every answer, and the requests in flight now."""

    answers: list[Answer] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _pieces(body: memoryview) -> Iterator[memoryview]:
    for start in range(0, len(body), PIECE):
        yield body[start : start + PIECE]


def _classify(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(error, http.client.RemoteDisconnected):
        return "closed without an answer"
    if isinstance(error, http.client.IncompleteRead):
        return "cut"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "error"


def _refusal(response: http.client.HTTPResponse, data: bytes) -> tuple[str, str]:
    """A non-200 answer: ``503 Retry-After`` (allowed) or what it was, and its reason."""
    try:
        reason = str(json.loads(data)["error"].get("reason") or json.loads(data)["error"].get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = data[:120].decode(errors="replace")
    retry = response.getheader("Retry-After") or ""
    if response.status == 503:
        return ("503 Retry-After" if retry.isdigit() else "503 without Retry-After"), reason
    return f"status {response.status}", reason


def digest_request(
    address: tuple[str, int], host: str, body: memoryview, chunked: bool, timeout: float
) -> tuple[str, str]:
    """POST ``body`` to the digest route: (outcome, detail); ``200`` only when the model received it
    byte-exact (its length and SHA-256)."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    headers = {"Host": host, "Content-Type": "application/octet-stream"}
    try:
        # Refused before the body was read (a 503 with Connection: close): the answer is still read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request("POST", DIGEST_PATH, _pieces(body) if chunked else body, headers)
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as error:
        return _classify(error), repr(error)
    finally:
        connection.close()
    if response.status != 200:
        return _refusal(response, data)
    try:
        got = json.loads(data)
    except ValueError:
        return "body mismatch", f"not JSON: {data[:80]!r}"
    want = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return ("200", "") if got == want else ("body mismatch", f"sent {want}, the model got {got}")


def stream_request(
    address: tuple[str, int], host: str, tokens: int, rate: float, timeout: float
) -> tuple[str, str]:
    """A streamed chat completion: ``200`` only when every token and ``[DONE]`` arrived, the tokens
    apart in time (at least half the model's interval between the first and the last), not as one body."""
    body = json.dumps(
        {"model": "chute-modelsim", "stream": True, "max_tokens": tokens,
         "messages": [{"role": "user", "content": "soak"}]}
    )  # fmt: skip
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    arrivals: list[float] = []
    try:
        connection.request(
            "POST", "/v1/chat/completions", body, {"Host": host, "Content-Type": "application/json"}
        )
        response = connection.getresponse()
        if response.status != 200:
            return _refusal(response, response.read())
        done = False
        for _ in range(4 * tokens + 10):  # bounded: two lines per event
            line = response.readline()
            if not line or line.strip() == b"data: [DONE]":
                done = bool(line)
                break
            if line.startswith(b"data:") and json.loads(line[5:])["choices"][0]["delta"].get("content"):
                arrivals.append(time.monotonic())
    except (OSError, http.client.HTTPException, ValueError) as error:
        return _classify(error), repr(error)
    finally:
        connection.close()
    if not done or len(arrivals) != tokens:
        return (
            "stream incomplete",
            f"{len(arrivals)} of {tokens} tokens, [DONE] {'seen' if done else 'missing'}",
        )
    spread = arrivals[-1] - arrivals[0]
    if tokens > 1 and rate > 0 and spread < 0.5 * (tokens - 1) / rate:
        return "stream not token by token", f"{tokens} tokens within {spread:.3f}s"
    return "200", ""


class Load:
    """Open-loop: a request every ``1 / plan.rate`` seconds to ``address``, each in a thread of its own,
    at most ``plan.max_in_flight`` at once; :meth:`stop` waits for those in flight."""

    def __init__(self, plan: Plan, host: str, tally: Tally, deadline: float) -> None:
        self.plan, self.host, self.tally, self.deadline = plan, host, tally, deadline
        self.buffer = memoryview(os.urandom(max(BODY_SIZES) + 4096))
        self.sent = 0
        self._slots = threading.BoundedSemaphore(plan.max_in_flight)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None

    def start(self, address: tuple[str, int]) -> None:
        self._stop.clear()
        self._dispatcher = threading.Thread(target=self._dispatch, args=(address,), daemon=True)
        self._dispatcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._dispatcher is not None:
            self._dispatcher.join(30)
        for thread in self._threads:
            thread.join(self.plan.request_timeout + 30)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _dispatch(self, address: tuple[str, int]) -> None:
        due = time.monotonic()
        while (
            not self._stop.is_set()
            and self.sent < self.plan.max_requests
            and time.monotonic() < self.deadline
        ):
            if not self._slots.acquire(timeout=0.5):
                continue
            index, self.sent = self.sent, self.sent + 1
            thread = threading.Thread(target=self._one, args=(address, index), daemon=True)
            self._threads.append(thread)
            thread.start()
            due += 1.0 / self.plan.rate
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _one(self, address: tuple[str, int], index: int) -> None:
        plan, tally = self.plan, self.tally
        stream = index % plan.stream_every == plan.stream_every - 1
        size = 0 if stream else BODY_SIZES[(index // 2) % len(BODY_SIZES)]
        chunked = not stream and index % 2 == 1
        answer = Answer("stream" if stream else "digest", size, chunked, time.monotonic())
        with tally.lock:
            tally.in_flight += 1
        try:
            if stream:
                answer.outcome, answer.detail = stream_request(
                    address, self.host, plan.stream_tokens, plan.tokens_per_second, plan.request_timeout
                )
            else:
                offset = (index * 4099) % 4096
                body = self.buffer[offset : offset + size]
                answer.outcome, answer.detail = digest_request(
                    address, self.host, body, chunked, plan.request_timeout
                )
        except Exception as error:  # counted, never lost
            answer.outcome, answer.detail = "error", repr(error)
        finally:
            answer.answered = time.monotonic()
            with tally.lock:
                tally.in_flight -= 1
                tally.answers.append(answer)
            self._slots.release()


class Monitor:
    """Polls the Chute's Deployment (every 0.25 s, bounded by ``deadline``): the moments it went to
    zero, asked for a replica again, and had a ready one."""

    def __init__(self, cp: ControlPlane, namespace: str, deadline: float) -> None:
        self.cp, self.deadline = cp, deadline
        self.path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}"
        self.zeros: list[float] = []
        self.wakes: list[float] = []
        self.ready: list[float] = []
        self._state: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                deployment = self.cp.api.get(self.path, timeout=5)
            except (ApiError, OSError):
                deployment = None
            if deployment:
                spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
                state = (int(spec.get("replicas", 1)), int(status.get("readyReplicas") or 0))
                self._see(state)
            self._stop.wait(0.25)

    def _see(self, state: tuple[int, int]) -> None:
        now, before = time.monotonic(), self._state
        if before is not None:
            if state[0] == 0 and before[0] != 0:
                self.zeros.append(now)
            if state[0] >= 1 and before[0] == 0:
                self.wakes.append(now)
            if state[1] >= 1 and before[1] == 0:
                self.ready.append(now)
        elif state[1] >= 1:
            self.ready.append(now)
        self._state = state

    @property
    def none_ready(self) -> bool:
        """At zero replicas and none ready (its old pod terminating at most)."""
        return self._state is not None and self._state == (0, 0)

    def ready_since(self, moment: float) -> float | None:
        return next((t for t in self.ready if t >= moment), None)


class PeakRss:
    """Samples each activator process's ``VmHWM`` (its peak RSS) and ``VmRSS`` every 0.2 s."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.pids: dict[str, int] = {}
        self.peak_kib: dict[str, int] = {}
        self.last_kib: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sample()

    def sample(self) -> None:
        for name, pid in list(self.pids.items()):
            with contextlib.suppress(OSError):
                fields = dict(
                    line.split(":", 1)
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if ":" in line
                )
                for key, into in (("VmHWM", self.peak_kib), ("VmRSS", self.last_kib)):
                    if key in fields:
                        kib = int(fields[key].split()[0])
                        into[name] = max(into.get(name, 0), kib) if key == "VmHWM" else kib

    def _loop(self) -> None:
        while not self._stop.wait(0.2) and time.monotonic() < self.deadline:
            self.sample()


def queue_length(metrics_host: str, metrics_port: int, namespace: str) -> float:
    """Requests the activator holds for the Chute now (``chute_activator_queue_length``); -1 unreadable."""
    try:
        connection = http.client.HTTPConnection(metrics_host, metrics_port, timeout=2)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if (
            line.startswith("chute_activator_queue_length{")
            and f'chute="{NAME}"' in line
            and namespace in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait(what: str, probe: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {found!r})")
        time.sleep(step)


def _slice_addresses(cp: ControlPlane, namespace: str) -> set[str]:
    piece = get(cp, "endpointslice", f"{NAME}-activator", namespace) or {}
    return {a for e in piece.get("endpoints") or [] for a in e.get("addresses") or []}


def _pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return items(cp, "pods", namespace, f"chutes.ai/chute={NAME}")


def kube_proxy_destinations(namespace: str, service: str) -> set[str]:
    """Where kube-proxy's rules send the Service's serving port now: ``IP:PORT`` of each endpoint."""
    rules = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30, check=True
    )
    marker = f'"{namespace}/{service}:http"'
    return {
        rule.split("--to-destination ", 1)[1].split()[0]
        for rule in rules.stdout.splitlines()
        if marker in rule and "DNAT" in rule and "--to-destination " in rule
    }


def _events(cp: ControlPlane, namespace: str) -> dict[str, int]:
    counted: collections.Counter[str] = collections.Counter()
    for event in items(cp, "events", namespace):
        if (event.get("involvedObject") or {}).get("name") == NAME and event.get("reason") in (
            "ScaledToZero",
            "Waking",
        ):
            counted[event["reason"]] += int(event.get("count") or 1)
    return dict(sorted(counted.items()))


@dataclass
class Soak:
    """One run of the scenario: :meth:`run` returns its results (a JSON-able dict)."""

    cp: ControlPlane
    work: Path
    image: str
    namespace: str
    plan: Plan
    log: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    notes: dict[str, Any] = field(default_factory=dict)
    monitor: Monitor | None = None

    def _at(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def _say(self, message: str) -> None:
        self.log(f"[soak {self._at():7.1f}s] {message}")

    def run(self) -> dict[str, Any]:
        cp, plan, namespace = self.cp, self.plan, self.namespace
        assert cp.real_node_settings is not None, "needs the real node"
        node_ip, node = cp.real_node_settings.node_ip, cp.real_node_settings.name
        deadline = self.started + plan.deadline_seconds
        tally, rss = Tally(), PeakRss(deadline)
        monitor = self.monitor = Monitor(cp, namespace, deadline)
        processes: list[subprocess.Popen[bytes]] = []
        cycles: list[dict[str, Any]] = []
        with contextlib.ExitStack() as stack:
            second = stack.enter_context(second_node_address(cp))
            operator, _ = stack.enter_context(
                metrics_api_on_loopback(
                    cp, namespace, self.work,
                    CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
                    CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
                    CHUTE_OPERATOR_SIDECAR_IMAGE=self.image,
                )
            )  # fmt: skip
            activator_service(cp, namespace, node_ip)
            manifest = chute(
                self.image, node, plan.load_seconds, NAME, plan.tokens_per_second, plan.concurrency
            )
            apply(cp, manifest, namespace)
            port = chute_port(cp, namespace)  # the Chute's own port on every activator
            first = stack.enter_context(
                activator_process(
                    cp, namespace, self.work, node_ip, plan.queue_limit, plan.drain_seconds, processes
                )
            )
            rss.watch("first", processes[0].pid)
            rss.start()
            monitor.start()
            stack.callback(rss.stop)
            stack.callback(monitor.stop)
            self._say(f"activator on {node_ip}:{port}; second address {second}")
            wait("the Chute's first replica ready", lambda: monitor.ready, 300)
            self._say("the Chute's replica is ready")
            host = f"{NAME}.{namespace}.svc.cluster.local"
            load = Load(plan, host, tally, deadline)
            actives = {"first": (node_ip, first)}
            for wake in range(1, plan.wakes + 1):
                ((serving, _),) = actives.values()  # one activator between rollouts
                zero = self._to_zero(serving, port)
                cycle: dict[str, Any] = {"wake": wake, "at_zero_s": round(zero - self.started, 2)}
                if wake == plan.restart_at_wake:
                    self._say("stopping the operator at zero")
                    operator.stop()
                    cycle["operator_stopped_s"] = self._at()
                address = service_address(cp, NAME, namespace)
                load_began, sent_before = time.monotonic(), load.sent
                load.start(address)
                if wake == plan.restart_at_wake:
                    cycle["operator_restart"] = self._restart(operator, tally, load, sent_before)
                if wake == plan.rollout_at_wake:
                    rollout = self._rollout(stack, actives, second, port, processes, rss, tally, load)
                    self._finish_rollout(rollout, processes[0], first[1], second, port)
                    actives.pop("first")
                    cycle["activator_rollout"] = rollout
                ready = wait(
                    "a ready replica again",
                    functools.partial(monitor.ready_since, load_began),
                    180 + plan.load_seconds,
                )
                cycle["ready_after_load_began_s"] = round(ready - load_began, 2)
                self._say(f"wake {wake}: a ready replica {ready - load_began:.1f}s after the load began")
                until = ready + plan.burst_seconds
                while time.monotonic() < until:
                    time.sleep(0.2)
                load.stop()
                cycle["load_s"] = round(time.monotonic() - load_began, 2)
                cycle["requests"] = load.sent - sum(c.get("requests", 0) for c in cycles)
                self._say(f"wake {wake}: load stopped, {cycle['requests']} requests")
                cycles.append(cycle)
            for name, (serving, ports) in actives.items():
                self.notes.setdefault("activator_counters", {})[name] = activator_counters(ports[1], serving)
        return self._results(tally, monitor, rss, cycles, processes)

    def _to_zero(self, activator_address: str, port: int) -> float:
        """Wait (bounded) until the Chute is at zero and kube-proxy sends its Service to the activator."""
        cp, namespace = self.cp, self.namespace
        window = IDLE_WINDOW + 120
        wait("the Chute at zero", lambda: at_zero(cp, namespace, NAME), window, step=0.5)
        moment = time.monotonic()
        wait("no ready replica", lambda: self.monitor is not None and self.monitor.none_ready, 60)
        wait("the Chute's activator slice", lambda: activator_address in _slice_addresses(cp, namespace), 30)
        # Only to the activator: kube-proxy may still send some connections to the old pod for a moment
        # (its endpoint's change syncs after the Deployment's status), which would answer them itself.
        activator = {f"{activator_address}:{port}"}
        wait(
            "kube-proxy sending the Chute's Service to the activator alone",
            lambda: (
                kube_proxy_destinations(namespace, NAME) == activator
                or (activator <= kube_proxy_destinations(namespace, NAME) and not _pods(cp, namespace))
            ),
            60,
            step=0.5,
        )
        self._say("at zero, its Service reaching the activator alone")
        return moment

    def _restart(
        self, operator: OperatorProcess, tally: Tally, load: Load, sent_before: int
    ) -> dict[str, Any]:
        """The operator is down while requests arrive (``load`` had sent ``sent_before`` before this
        cycle); started again; until it leads again."""
        plan = self.plan
        stopped, before = time.monotonic(), len(tally.answers)
        time.sleep(plan.operator_down_seconds)
        with tally.lock:
            in_flight, sent = tally.in_flight, load.sent - sent_before
            answered = collections.Counter(f"{a.kind} {a.outcome}" for a in tally.answers[before:])
        self._say(
            f"starting the operator again: {in_flight} requests in flight, {sent} sent while it was down"
        )
        begun = time.monotonic()
        operator.start()
        healthy = time.monotonic()
        leading = wait("the operator leading", lambda: operator.metric("chute_operator_leader") == 1, 60)
        read = wait(
            "the operator reading the activator",
            lambda: operator.metric("chute_operator_activator_ready_pods") >= 1,
            60,
        )
        assert leading
        assert read
        return {
            "cycle": plan.restart_at_wake,
            "down_s": round(begun - stopped, 2),
            "sent_while_down": sent,
            "answered_while_down": dict(answered),
            "in_flight_at_start": in_flight,
            "start_to_healthy_s": round(healthy - begun, 2),
            "start_to_activator_read_s": round(time.monotonic() - begun, 2),
        }

    def _rollout(
        self,
        stack: contextlib.ExitStack,
        actives: dict[str, tuple[str, tuple[int, int, int]]],
        second: str,
        port: int,
        processes: list[subprocess.Popen[bytes]],
        rss: PeakRss,
        tally: Tally,
        load: Load,
    ) -> dict[str, Any]:
        """A second activator beside the first; both in the Service; the first SIGTERMed while it
        holds requests, listed as terminating."""
        cp, namespace, plan = self.cp, self.namespace, self.plan
        node_ip, first_ports = actives["first"]
        began = time.monotonic()
        started = stack.enter_context(
            activator_process(
                cp, namespace, self.work, second, plan.queue_limit, plan.drain_seconds, processes
            )
        )
        actives["second"] = (second, started)
        rss.watch("second", processes[-1].pid)
        second_ready = time.monotonic()

        def holding() -> float | None:
            held = queue_length(node_ip, first_ports[1], namespace)
            return held if held >= plan.held_before_rollout else None

        held = wait(
            f"the first activator holding {plan.held_before_rollout} requests", holding, 30, step=0.05
        )
        activator_service(cp, namespace, node_ip, others=(second,))
        wait(
            "the Chute's activator slice listing both",
            lambda: _slice_addresses(cp, namespace) == {node_ip, second},
            30,
        )
        wait(
            "kube-proxy sending the Chute's Service to the second activator",
            lambda: kube_proxy_sends_to(namespace, NAME, f"{second}:{port}"),
            30,
            step=0.2,
        )
        with tally.lock:
            in_flight = tally.in_flight
        held_now = queue_length(node_ip, first_ports[1], namespace)
        processes[0].send_signal(signal.SIGTERM)
        sigterm = time.monotonic()
        activator_service(cp, namespace, second, terminating=(node_ip,))
        self._say(f"SIGTERM to the first activator: it holds {held_now:g}, {in_flight} requests in flight")
        return {
            "cycle": plan.rollout_at_wake,
            "first_address": node_ip,
            "second_address": second,
            "second_started_s": round(began - self.started, 2),
            "second_start_to_ready_s": round(second_ready - began, 2),
            "first_held_before_both_listed": held,
            "sigterm_s": round(sigterm - self.started, 2),
            "first_held_at_sigterm": held_now,
            "in_flight_at_sigterm": in_flight,
            "_sigterm": sigterm,
        }

    def _finish_rollout(
        self,
        rollout: dict[str, Any],
        first: subprocess.Popen[bytes],
        metrics_port: int,
        second: str,
        port: int,
    ) -> None:
        """Until the first activator has exited (bounded: its drain and shutdown timeout); then it leaves
        the Service's slice, as its deleted pod would. Its counters: the last read before it stopped."""
        cp, namespace = self.cp, self.namespace
        node_ip = rollout["first_address"]
        sigterm = rollout.pop("_sigterm")
        seen: dict[str, float] = {}
        bound = time.monotonic() + self.plan.drain_seconds + 60
        while time.monotonic() < bound and len(seen) < 3:
            now = time.monotonic()
            with contextlib.suppress(OSError):
                self.notes.setdefault("activator_counters", {})["first"] = activator_counters(
                    metrics_port, node_ip
                )
            if "slice" not in seen and node_ip not in _slice_addresses(cp, namespace):
                seen["slice"] = now
            if "kube_proxy" not in seen and not kube_proxy_sends_to(namespace, NAME, f"{node_ip}:{port}"):
                seen["kube_proxy"] = now
            if "exited" not in seen and first.poll() is not None:
                seen["exited"] = now
            time.sleep(0.1)
        rollout.update(
            {
                "sigterm_to_operator_slice_without_first_s": round(seen["slice"] - sigterm, 2)
                if "slice" in seen
                else None,
                "sigterm_to_kube_proxy_without_first_s": (
                    round(seen["kube_proxy"] - sigterm, 2) if "kube_proxy" in seen else None
                ),
                "sigterm_to_first_exited_s": round(seen["exited"] - sigterm, 2) if "exited" in seen else None,
                "first_exit_code": first.poll(),
            }
        )
        activator_service(cp, namespace, second)
        self._say(f"the first activator exited {first.poll()}: {rollout}")

    def _results(
        self,
        tally: Tally,
        monitor: Monitor,
        rss: PeakRss,
        cycles: list[dict[str, Any]],
        processes: list[subprocess.Popen[bytes]],
    ) -> dict[str, Any]:
        answers = tally.answers
        outcomes = collections.Counter(a.outcome for a in answers)
        refusals = collections.Counter(a.detail for a in answers if a.outcome == "503 Retry-After")
        bodies = [a for a in answers if a.kind == "digest" and a.outcome == "200"]
        streams = [a for a in answers if a.kind == "stream"]
        failures = [
            {
                **asdict(a),
                "sent": round(a.sent - self.started, 2),
                "answered": round(a.answered - self.started, 2),
            }
            for a in answers
            if a.outcome not in ALLOWED
        ]
        return {
            "plan": asdict(self.plan),
            "idle_window_s": IDLE_WINDOW,
            "duration_s": self._at(),
            "requests": len(answers),
            "outcomes": dict(sorted(outcomes.items())),
            "refused_503_reasons": dict(sorted(refusals.items())),
            "failures": failures[:50],
            "bodies": {
                "checked_byte_exact": len(bodies),
                "bytes_checked": sum(a.size for a in bodies),
                "chunked": sum(a.chunked for a in bodies),
                "by_size": {str(size): sum(a.size == size for a in bodies) for size in BODY_SIZES},
            },
            "streams": {
                "sent": len(streams),
                "whole_token_by_token": sum(a.outcome == "200" for a in streams),
            },
            "went_to_zero": len(monitor.zeros),
            "woke": len(monitor.wakes),
            "events": _events(self.cp, self.namespace),
            "cycles": cycles,
            "activator_peak_rss_mib": {name: round(kib / 1024, 1) for name, kib in rss.peak_kib.items()},
            "activator_exit_codes": [p.poll() for p in processes],
            **self.notes,
        }
