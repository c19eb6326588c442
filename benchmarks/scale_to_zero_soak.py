"""Scale to zero soak on the local cluster's real node: a Chute that goes to zero and wakes again and
again under a bounded load, with an operator restart and an activator rollout in the middle (issue 25).

    .venv/bin/python benchmarks/scale_to_zero_soak.py [--results scale-to-zero-soak.json] [--wakes 4]
        [--restart-at 2] [--rollout-at 3] [--rate 8] [--burst-seconds 20] [--load-seconds 8]
    .venv/bin/python benchmarks/scale_to_zero_soak.py --doc-only   # the doc again, from the results

The scenario is tests/scale_to_zero_soak.py (its docstring says what runs, what is counted);
tests/realnode/test_scale_to_zero_restarts_on_real_pods.py runs a short version of it. Writes
benchmarks/results/scale-to-zero-soak.json (``--results`` names another file there) and, from it,
docs/benchmarks/scale-to-zero-soak.md; tests/unit/test_docs.py checks that the doc is the results
file's.
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

from tests.kube_helpers import eventually  # noqa: E402
from tests.scale_to_zero_harness import real_node_cluster  # noqa: E402
from tests.scale_to_zero_soak import ALLOWED, BODY_SIZES, MIB, Plan, Soak  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_RESULTS = "scale-to-zero-soak.json"
DOC = ROOT / "docs" / "benchmarks" / "scale-to-zero-soak.md"


def _size(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB and size % MIB == 0 else f"{size:,} B"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _counter(counters: dict[str, float], metric: str) -> str:
    """The sum of a metric's samples; for the wait histogram, its forwarded ones."""
    return f"{sum(v for k, v in counters.items() if k.startswith(metric) and 'rejected' not in k):.0f}"


def doc(results: dict[str, Any], name: str = DEFAULT_RESULTS) -> str:
    """The Markdown page, from the results alone."""
    plan, outcomes, bodies = results["plan"], results["outcomes"], results["bodies"]
    allowed = sum(outcomes.get(o, 0) for o in ALLOWED)
    refused = results["requests"] - allowed
    restart = next(c["operator_restart"] for c in results["cycles"] if "operator_restart" in c)
    rollout = next(c["activator_rollout"] for c in results["cycles"] if "activator_rollout" in c)
    args = results["args"]
    setup = (
        "The local cluster's real node (kubelet, containerd, kube-proxy); one Chute (minInstances 0, "
        f"shutdownAfterSeconds {results['idle_window_s']}, the least the CRD accepts) running the project "
        f"image's modelsim ({plan['load_seconds']:g} s load, {plan['tokens_per_second']:g} tokens/s) behind "
        "the real sidecar; the operator with its metrics API and scale to zero on (checks every second); "
        "the activator a real process on the host, listed by its Service's EndpointSlice. Every request goes "
        "to the Chute Service's ClusterIP through kube-proxy, a new connection each. The load is open-loop "
        f"and bounded: {plan['rate']:g} requests a second, at most {plan['max_in_flight']} in flight; every "
        f"{plan['stream_every']}th a streamed chat completion of {plan['stream_tokens']} tokens, the others "
        f"a `POST /v1/echo/digest` with a body of {', '.join(_size(s) for s in BODY_SIZES)} in turn (every "
        "other one chunked), whose length and SHA-256 the model answers and the client compares with what it "
        f"sent. Each of the {len(results['cycles'])} cycles: the Chute idle until it is at zero and its "
        "Service reaches the activator, then the load until it has a ready replica again and "
        f"{plan['burst_seconds']:g} s more."
    )
    lines = [
        "# Scale to zero: soak through an operator restart and an activator rollout",
        "",
        f"Written by `benchmarks/scale_to_zero_soak.py` from `benchmarks/results/{name}` "
        f"({results['date']}, {results['machine']}, load average at the start "
        f"{results['load_average_at_start']}). The scenario is `tests/scale_to_zero_soak.py`; "
        "`tests/realnode/test_scale_to_zero_restarts_on_real_pods.py` runs a short version of it on every "
        "`scripts/test` run with the real node.",
        "",
        "Reproduce:",
        "",
        "```",
        f".venv/bin/python benchmarks/scale_to_zero_soak.py --results {name} --wakes {args['wakes']} "
        f"--restart-at {args['restart_at']} --rollout-at {args['rollout_at']} --rate {args['rate']:g} "
        f"--burst-seconds {args['burst_seconds']:g} --load-seconds {args['load_seconds']:g}",
        "```",
        "",
        "## Setup",
        "",
        setup,
        f"- **Operator restart** (cycle {restart['cycle']}): the operator stopped at zero; requests arrive "
        f"for {restart['down_s']:.1f} s (the activator holds them; nothing wakes the Chute); started again.",
        f"- **Activator rollout** (cycle {rollout['cycle']}): a second activator process on a second address "
        f"of the host; the first holding {rollout['first_held_before_both_listed']:g} requests; both listed "
        "in the activator Service; the first sent SIGTERM and listed as terminating (as the EndpointSlice "
        f"controller lists a pod being deleted): it drains for {plan['drain_seconds']:g} s.",
        "",
        "## Outcomes",
        "",
        f"**{results['requests']} requests over {results['duration_s'] / 60:.1f} minutes: "
        f"{allowed} answered 200 or 503 with Retry-After, {refused} otherwise.**",
        "",
        "| outcome | requests |",
        "| --- | ---: |",
    ]
    lines += [f"| {outcome} | {count} |" for outcome, count in results["outcomes"].items()]
    lines += [
        "",
        f"503 reasons: {results['refused_503_reasons'] or 'none'}.",
        "",
        f"Bodies checked byte-exact: **{bodies['checked_byte_exact']}**, "
        f"{bodies['bytes_checked'] / MIB:.1f} MiB in all, {bodies['chunked']} of them chunked; by size: "
        + ", ".join(f"{_size(int(size))} {count}" for size, count in bodies["by_size"].items())
        + f". Streams: {results['streams']['whole_token_by_token']} of {results['streams']['sent']} whole "
        "and token by token.",
        "",
        f"The Chute went to zero {results['went_to_zero']} times and woke {results['woke']} times "
        f"(its Events: {results['events']}).",
        "",
        "| cycle | at zero (s after the start) | requests | a ready replica after the load began | load |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {c['wake']} | {c['at_zero_s']:.1f} | {c['requests']} | {_s(c['ready_after_load_began_s'])} | "
        f"{_s(c['load_s'])} |"
        for c in results["cycles"]
    ]
    lines += [
        "",
        "## The restart and the rollout",
        "",
        f"- Operator restart: down {restart['down_s']:.1f} s; {restart['sent_while_down']} requests sent "
        f"while it was down, {restart['in_flight_at_start']} in flight when it started; healthy "
        f"{restart['start_to_healthy_s']:.1f} s and leading with the activator read "
        f"{restart['start_to_activator_read_s']:.1f} s after its start.",
        f"- Activator rollout: the second activator ready {rollout['second_start_to_ready_s']:.1f} s after "
        f"its start; at the first's SIGTERM it held {rollout['first_held_at_sigterm']:g} requests, "
        f"{rollout['in_flight_at_sigterm']} in flight in all. After the SIGTERM: the operator's slice for "
        f"the Chute without it {_s(rollout['sigterm_to_operator_slice_without_first_s'])}, kube-proxy's "
        f"rules without it {_s(rollout['sigterm_to_kube_proxy_without_first_s'])}, the process exited "
        f"{_s(rollout['sigterm_to_first_exited_s'])} (status {rollout['first_exit_code']}).",
        "",
        "Through the activators (their own counters, the first's last read before it exited): "
        + "; ".join(
            f"{name} forwarded {_counter(counters, 'chute_activator_forwarded_total')} "
            f"({_counter(counters, 'chute_activator_wait_seconds_count')} of them held first)"
            for name, counters in results.get("activator_counters", {}).items()
        )
        + ". The other requests went to the replica directly, once the operator had taken the activator "
        "out of the Chute's Service.",
        "",
        "## The activator's memory",
        "",
        "Peak RSS (`VmHWM`, sampled every 0.2 s) of each activator process: "
        + ", ".join(f"{name} **{mib:.1f} MiB**" for name, mib in results["activator_peak_rss_mib"].items())
        + ".",
        "",
    ]
    if results["failures"]:
        lines += ["## Failures", "", "| outcome | request | detail |", "| --- | --- | --- |"]
        for failure in results["failures"]:
            what = f"{failure['kind']} {_size(failure['size'])}{' chunked' if failure['chunked'] else ''}"
            lines.append(
                f"| {failure['outcome']} | {what} at {failure['sent']:.1f} s | {failure['detail'][:160]} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", default=DEFAULT_RESULTS, help="file name in benchmarks/results")
    parser.add_argument("--wakes", type=int, default=4)
    parser.add_argument(
        "--restart-at", type=int, default=2, help="the wake whose cycle restarts the operator"
    )
    parser.add_argument(
        "--rollout-at", type=int, default=3, help="the wake whose cycle rolls the activator out"
    )
    parser.add_argument("--rate", type=float, default=8.0, help="requests started per second")
    parser.add_argument(
        "--burst-seconds", type=float, default=20.0, help="load after each wake's ready replica"
    )
    parser.add_argument("--load-seconds", type=float, default=8.0, help="the model's load time")
    parser.add_argument("--doc-only", action="store_true", help="write the doc again from the results file")
    args = parser.parse_args()
    path = RESULTS / Path(args.results).name
    if args.doc_only:
        DOC.write_text(doc(json.loads(path.read_text()), path.name))
        return 0
    if not (
        2 <= args.wakes <= 8 and 1 <= args.restart_at <= args.wakes and 1 <= args.rollout_at <= args.wakes
    ):
        parser.error("--wakes 2..8, --restart-at and --rollout-at among them")
    if args.restart_at == args.rollout_at or not (0 < args.rate <= 20 and 0 <= args.burst_seconds <= 120):
        parser.error("--restart-at and --rollout-at differ; --rate 0..20; --burst-seconds 0..120")
    plan = Plan(
        wakes=args.wakes,
        restart_at_wake=args.restart_at,
        rollout_at_wake=args.rollout_at,
        rate=args.rate,
        burst_seconds=args.burst_seconds,
        load_seconds=args.load_seconds,
        # Room for every request a held phase brings at this rate (the operator down, the model loading):
        # below the activator's queue limit, the Chute's concurrency well above (the HPA keeps 1 replica).
        max_in_flight=48,
        queue_limit=60,
        concurrency=100,
        deadline_seconds=1500,
    )
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "args": {k: v for k, v in vars(args).items() if k not in ("doc_only", "results")},
    }
    with real_node_cluster("bench-soak-") as (cp, scratch):
        namespace = "bench-soak"
        cp.kubectl("create", "namespace", namespace)
        eventually(
            lambda: (
                cp.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0
                or None
            ),
            what="default ServiceAccount",
        )
        try:
            results.update(Soak(cp, scratch, cp.project_image(), namespace, plan).run())
        finally:
            cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    path.write_text(json.dumps(results, indent=2) + "\n")
    DOC.write_text(doc(results, path.name))
    print(DOC.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
