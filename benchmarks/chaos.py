"""The operator under faults on the local control plane (issue 14, item 3); scenarios in tests/faults.py.

Run: .venv/bin/python benchmarks/chaos.py [--operations 100] [--kills 20] [--failovers 3]
     [--throttled-chutes 30] [--seed 14] [--doc-only] [--throttled-only]
Writes benchmarks/results/chaos.json and docs/benchmarks/chaos.md (from the results).

1. kill -9: ``--kills`` SIGKILLs of the operator (each followed by a restart) at random moments while
   ``--operations`` random creates, updates and deletes run; then every Chute must be Ready with exactly
   its children (tests/faults.py ``problems``).
2. kube-apiserver, then etcd, restarted under a running operator; one Chute changed right after; the
   writes the operator made from the restart on.
3. two replicas; the leader SIGKILLed ``--failovers`` times (lease 15 s, renewed every 2 s: the defaults);
   time to the standby leading, and the standby's writes before it led.
4. a control plane of its own with --max-requests-inflight=2 --max-mutating-requests-inflight=1 (priority
   and fairness off, so the limit answers 429 with Retry-After), the operator as a ServiceAccount (the
   admin is exempt): ``--throttled-chutes`` Chutes to converged, and the 429s it got.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults import (  # noqa: E402
    apiserver_429s,
    apply_chutes,
    chaos_chute,
    converge,
    failover,
    kill_during_churn,
    restart_component,
    service_account_kubeconfig,
    writes,
)
from tests.operator_fixtures import OperatorProcess  # noqa: E402

from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.nodes import NodePool  # noqa: E402

NAMESPACE = "chaos"
RESULTS = ROOT / "benchmarks" / "results" / "chaos.json"
DOC = ROOT / "docs" / "benchmarks" / "chaos.md"
RESYNC_SECONDS = 600.0
"""The operator's default periodic resync (Settings.resync_seconds)."""
DEFAULT_LEASE = {"CHUTE_OPERATOR_LEASE_DURATION_SECONDS": "15", "CHUTE_OPERATOR_LEASE_RENEW_SECONDS": "2"}


def _plane(args: argparse.Namespace, apiserver_args: tuple[str, ...] = ()) -> ControlPlane:
    """A control plane of the run's own (started by ``with``)."""
    pools = [NodePool("cpu", 2, "chaos.cpu", "64", "256Gi", "1Ti", pods=args.operations + 50)]
    return ControlPlane(node_pools=pools, kwok_log_level="WARN", apiserver_args=apiserver_args)


def _prepare(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
    plane.kubectl("create", "namespace", NAMESPACE)


def _operator(
    plane: ControlPlane, identity: str, kubeconfig: Path | None = None, **env: str
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig or plane.kubeconfig, plane.work_dir, identity, (NAMESPACE,), **env
    ).start()


def _clean(plane: ControlPlane) -> None:
    plane.kubectl("delete", "chutes", "--all", "-n", NAMESPACE, "--wait=true", timeout=600)


def _faults(args: argparse.Namespace, results: dict[str, Any]) -> None:
    with _plane(args) as plane:
        _prepare(plane)
        operator = _operator(plane, "op-killed")
        try:
            results["kill_9"] = kill_during_churn(
                plane, NAMESPACE, operator, args.operations, args.kills, args.seed, timeout=600
            )
        finally:
            operator.stop()
        _clean(plane)
        print("kill -9:", results["kill_9"], flush=True)

        operator = _operator(plane, "op-restarts")
        try:
            expected = {f"steady-{i:02d}": chaos_chute(f"steady-{i:02d}", NAMESPACE, 4) for i in range(20)}
            apply_chutes(plane, list(expected.values()))
            results["restarts"] = [
                restart_component(plane, NAMESPACE, operator, component, expected)
                for component in ("kube-apiserver", "etcd")
            ]
        finally:
            operator.stop()
        _clean(plane)
        print("restarts:", results["restarts"], flush=True)

        expected = {"pair": chaos_chute("pair", NAMESPACE)}
        apply_chutes(plane, list(expected.values()))
        lease = {"CHUTE_OPERATOR_LEASE_NAME": "chaos-failover", **DEFAULT_LEASE}
        replicas = [_operator(plane, "op-a", **lease), _operator(plane, "op-b", **lease)]
        runs = []
        try:
            for _ in range(args.failovers):
                leader, standby = replicas
                runs.append(failover(plane, NAMESPACE, leader, standby, expected))
                leader.start()  # back as the standby
                replicas = [standby, leader]
        finally:
            for replica in replicas:
                replica.stop()
        takeovers = [r["seconds_to_take_over"] for r in runs]
        results["failover"] = {
            "lease_duration_seconds": 15,
            "renew_seconds": 2,
            "bound_seconds": 15 + 2,
            "runs": runs,
            "seconds_to_take_over_max": max(takeovers),
            "standby_writes_while_standby_total": sum(r["standby_writes_while_standby"] for r in runs),
        }
        print("failover:", results["failover"], flush=True)


def _throttled(args: argparse.Namespace, results: dict[str, Any]) -> None:
    limits = (
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=2",
        "--max-mutating-requests-inflight=1",
    )
    with _plane(args, limits) as plane:
        _prepare(plane)
        kubeconfig = service_account_kubeconfig(plane, plane.work_dir / "operator.kubeconfig")
        operator = _operator(plane, "op-throttled", kubeconfig)
        try:
            refused_before = apiserver_429s(plane)
            expected = {
                f"throttled-{i:03d}": chaos_chute(f"throttled-{i:03d}", NAMESPACE, 4)
                for i in range(args.throttled_chutes)
            }
            started = time.monotonic()
            apply_chutes(plane, list(expected.values()))
            seconds = converge(plane, NAMESPACE, expected, 900)
            results["throttled"] = {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                "apiserver_flags": list(limits),
                "chutes": args.throttled_chutes,
                "seconds_to_converge": round(time.monotonic() - started, 1),
                "seconds_in_last_check": round(seconds, 1),
                "apiserver_429s": apiserver_429s(plane) - refused_before,
                "operator_429s": operator.metric("chute_operator_api_errors_total", code="429"),
                "operator_writes": writes(operator),
                "operator_alive": operator.process is not None and operator.process.poll() is None,
            }
        finally:
            operator.stop()
        print("throttled:", results["throttled"], flush=True)


def _doc(results: dict[str, Any]) -> str:
    kill, failover_ = results["kill_9"], results["failover"]
    lines = [
        "# The operator under faults",
        "",
        f"Written by `benchmarks/chaos.py` from `benchmarks/results/chaos.json` ({results['date']}, "
        f"{results['machine']}, load average at the start {results['load_average_at_start']}).",
        "Scenarios in `tests/faults.py`; smaller versions are the tests in `tests/e2e/test_faults.py` "
        "(marker `faults`, minutes each, left out of the default `scripts/test` run: "
        "`scripts/test -m faults`).",
        "",
        "Reproduce:",
        "",
        "```",
        f".venv/bin/python benchmarks/chaos.py --operations {results['args']['operations']} "
        f"--kills {results['args']['kills']} --failovers {results['args']['failovers']} "
        f"--throttled-chutes {results['args']['throttled_chutes']} --seed {results['args']['seed']}",
        ".venv/bin/python benchmarks/chaos.py --throttled-only --throttled-chutes "
        f"{results['args']['throttled_chutes']}   # the throttling scenario alone",
        "scripts/test -m faults",
        "```",
        "",
        "## kill -9 during churn",
        "",
        f"{kill['kills']} SIGKILLs of the operator (each followed by a restart) at random moments while "
        f"{sum(kill['operations'].values())} random changes ran ({kill['operations']}) over "
        f"{kill['churn_seconds']} s. {kill['chutes_at_end']} Chutes at the end: every one Ready at its "
        f"generation with exactly its rendered children (no orphan, no duplicate, none of a deleted Chute) "
        f"{kill['seconds_to_converge_after_churn']} s after the churn ended.",
        "",
        "## Control-plane restarts",
        "",
        "20 Chutes converged; the component restarted (SIGTERM, start with the same data); one Chute "
        "changed right after. Writes counted from the restart on (chute_operator_api_writes_total):",
        "",
        "| component | down (s) | change to converged (s) | writes after the restart |",
        "| --- | --- | --- | --- |",
    ]
    for run in results["restarts"]:
        lines.append(
            f"| {run['component']} | {run['seconds_down']} | {run['seconds_change_to_converged']} | "
            f"{run['writes_after_restart']} |"
        )
    lines += [
        "",
        "## Leader failover",
        "",
        f"Two replicas, lease {failover_['lease_duration_seconds']} s renewed every "
        f"{failover_['renew_seconds']} s (bound: {failover_['bound_seconds']} s); the leader SIGKILLed "
        f"{len(failover_['runs'])} times. Takeover (kill to the standby leading): "
        f"{[r['seconds_to_take_over'] for r in failover_['runs']]} s, at most "
        f"{failover_['seconds_to_take_over_max']} s. Writes by a replica while standby: "
        f"{failover_['standby_writes_while_standby_total']}. A replica acts only while its lease is valid "
        "with a margin (2/3 of the duration), so a SIGKILLed leader's last write precedes the standby's "
        "first by at least a third of the lease.",
        "",
    ]
    throttled = results.get("throttled")
    if throttled:
        when = f"{throttled['date']}, load average at the start {throttled['load_average_at_start']}"
        run = (
            f"Run on its own ({when.replace(', ', ', `--throttled-only`, ', 1)}): "
            if throttled.get("run_alone")
            else f"Run after the scenarios above ({when}): "
        )
        lines += [
            "## API server throttling",
            "",
            f"{run}kube-apiserver with {' '.join(throttled['apiserver_flags'])}; the operator as a "
            "ServiceAccount "
            f"(the admin is exempt from the limit). {throttled['chutes']} Chutes converged in "
            f"{throttled['seconds_to_converge']} s; the API server answered "
            f"{throttled['apiserver_429s']:.0f} requests with 429 (to every client but the admin); the "
            f"operator's reconciles failed {throttled['operator_429s']:.0f} times with 429 and were retried "
            "after the server's Retry-After, with jitter (its watches honour Retry-After too). Operator "
            f"writes: {throttled['operator_writes']}.",
            "",
        ]
        if "date" in throttled:
            lines += [
                "The first run of this scenario (2026-12-02 02:27 UTC) converged in 597.4 s, at the "
                "operator's periodic resync: each 429 counted as a failure of its Chute, and the per-Chute "
                "backoff doubles (1, 2, 4 ... 256 s, capped at 300 s), so a Chute refused nine times in a "
                "row was next due over 500 s after its first try and the resync reached it first. No retry "
                "was dropped; a throttled reconcile now comes back after the Retry-After the API server "
                "sends, and its backoff does not grow.",
                "",
            ]
        if throttled["seconds_to_converge"] > RESYNC_SECONDS * 0.9:
            lines += [
                "**Open problem:** converging took about the operator's periodic resync "
                f"({RESYNC_SECONDS:.0f} "
                "s): under throttling some Chute's reconcile was lost (its retry did not happen) and only "
                "the resync brought it back. Not yet diagnosed.",
                "",
            ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--operations", type=int, default=100)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--throttled-chutes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--doc-only", action="store_true", help="rewrite the doc from the results file")
    parser.add_argument(
        "--throttled-only",
        action="store_true",
        help="run only the throttling scenario; the other results are kept from the results file",
    )
    args = parser.parse_args()
    if args.doc_only:
        DOC.write_text(_doc(json.loads(RESULTS.read_text())))
        return 0
    if args.throttled_only:
        kept = json.loads(RESULTS.read_text())
        _throttled(args, kept)
        kept["throttled"]["run_alone"] = True
        kept["args"]["throttled_chutes"] = args.throttled_chutes
        RESULTS.write_text(json.dumps(kept, indent=2) + "\n")
        DOC.write_text(_doc(kept))
        print(DOC.read_text())
        return 0
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "args": {k: v for k, v in vars(args).items() if k != "doc_only"},
    }
    _faults(args, results)
    if args.throttled_chutes:
        _throttled(args, results)
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    DOC.write_text(_doc(results))
    print(DOC.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
