"""Markdown report (docs/benchmarks/sidecar.md) from the results of run.py."""

from __future__ import annotations

from typing import Any

TARGET_P50_MS = 0.5
TARGET_P99_MS = 2.0
TARGET_RSS_MB = 60.0


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _verdict(value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return f"met ({value:.3f} {unit} <= {limit} {unit})"
    return f"MISSED by {value - limit:.3f} {unit} ({value:.3f} {unit} > {limit} {unit})"


def _throughput(results: dict[str, Any]) -> list[str]:
    lines = [
        "| target | req/s | p50 ms | p99 ms | proxy CPU (% of a core) | proxy CPU µs/request | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in results["throughput"].items():
        cpu = entry.get("proxy_cpu_percent")
        lines.append(
            f"| {name} | {entry['rps']:.0f} | {entry['p50_us'] / 1000:.3f} | {entry['p99_us'] / 1000:.3f} "
            f"| {'-' if cpu is None else cpu} | {entry.get('proxy_cpu_us_per_request', '-')} "
            f"| {entry['socket_errors'] + entry['non_2xx']} |"
        )
    return lines


def _fixed(results: dict[str, Any]) -> list[str]:
    lines = [
        "| rate | target | achieved req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms "
        "| proxy CPU (% of a core) | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, entry in results["fixed_rate"].items():
        name, rate = key.split("@")
        latency, added = entry["latency_ms"], entry.get("added_ms", {})
        cpu = entry.get("proxy_cpu_percent")
        bad = entry["errors"] + sum(v for k, v in entry["statuses"].items() if k != "200")
        lines.append(
            f"| {rate} | {name} | {entry['achieved_rps']:.0f} | {_ms(latency['p50'])} "
            f"| {_ms(latency['p90'])} | {_ms(latency['p99'])} | {_ms(added.get('p50')) if added else '-'} "
            f"| {_ms(added.get('p99')) if added else '-'} | {'-' if cpu is None else cpu} | {bad} |"
        )
    return lines


def _sse(results: dict[str, Any]) -> list[str]:
    lines = [
        "| target | streams done | errors | TTFB p50 ms | TTFB p99 ms | gap p50 ms | gap p99 ms | gap max ms "
        "| proxy CPU (% of a core) | proxy CPU ms/stream |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("direct", "sidecar", "nginx"):
        entry = results["sse_200_streams"][name]
        cpu = entry.get("proxy_cpu_percent")
        lines.append(
            f"| {name} | {entry['completed']}/{entry['streams']} | {entry['errors']} "
            f"| {_ms(entry['ttfb_ms'].get('p50'))} | {_ms(entry['ttfb_ms'].get('p99'))} "
            f"| {_ms(entry['gap_ms'].get('p50'))} | {_ms(entry['gap_ms'].get('p99'))} "
            f"| {_ms(entry['gap_ms'].get('max'))} | {'-' if cpu is None else cpu} "
            f"| {_per_stream(entry)} |"
        )
    return lines


def _per_stream(entry: dict[str, Any]) -> str:
    if "proxy_cpu_seconds" not in entry or not entry.get("completed"):
        return "-"
    return f"{entry['proxy_cpu_seconds'] / entry['completed'] * 1000:.2f}"


def _alternatives(results: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | max req/s (wrk) | CPU at max (% of a core) | CPU µs/request | p50 ms @1000 req/s "
        "| p99 ms @1000 req/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sidecar = results["throughput"]["sidecar"]
    at_1000 = results["fixed_rate"]["sidecar@1000"]["latency_ms"]
    lines.append(
        f"| sidecar uvloop (shipped) | {sidecar['rps']:.0f} | {sidecar.get('proxy_cpu_percent')} "
        f"| {sidecar.get('proxy_cpu_us_per_request')} | {_ms(at_1000['p50'])} | {_ms(at_1000['p99'])} |"
    )
    for name, entry in results["alternatives"].items():
        if "error" in entry:
            lines.append(f"| {name} | {entry['error']} | | | | |")
            continue
        latency = entry["rate_1000"]["latency_ms"]
        lines.append(
            f"| {name} | {entry['rps']:.0f} | {entry.get('proxy_cpu_percent')} "
            f"| {entry.get('proxy_cpu_us_per_request')} | {_ms(latency['p50'])} | {_ms(latency['p99'])} |"
        )
    return lines


def _cpu(results: dict[str, Any], name: str) -> float | None:
    entry = results["alternatives"].get(name, {})
    value = entry.get("proxy_cpu_us_per_request")
    return float(value) if value else None


def _ratio(results: dict[str, Any], slow: str, fast: str) -> str:
    """How many times more CPU per request ``slow`` needs than ``fast``."""
    a, b = _cpu(results, slow), _cpu(results, fast)
    return "n/a" if a is None or b is None else f"{a / b:.1f}x"


def _sidecar_loop_ratio(results: dict[str, Any]) -> str:
    fast = results["throughput"]["sidecar"].get("proxy_cpu_us_per_request")
    slow = _cpu(results, "sidecar asyncio-loop")
    return "n/a" if not fast or slow is None else f"{slow / float(fast):.1f}x"


def render(results: dict[str, Any]) -> str:
    machine, load_before, load_after = results["machine"], results["load_before"], results["load_after"]
    added = results["fixed_rate"]["sidecar@1000"]["added_ms"]
    peak_mb = max(results["sidecar_peak_rss_kb"], results["sse_200_streams"]["sidecar_peak_rss_kb"]) / 1024
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    setup = "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in results["setup"].items())
    out = [
        "# Sidecar benchmark",
        "",
        f"Date: {results['date']}. Machine: {machine['cpus']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB. Everything on loopback; load generator, stubs and proxies share the "
        "same 2 cores, so absolute numbers are lower than on a real node and relative ones matter.",
        "",
        f"Load: loadavg before {' '.join(load_before['loadavg'])}, after {' '.join(load_after['loadavg'])}; "
        f"Go build running before: {load_before['go_build_running']}, "
        f"after: {load_after['go_build_running']}.",
        "",
        f"Command: `{results['command']}` (took {results['wall_seconds']} s). Raw numbers: "
        "`benchmarks/results/sidecar.json`. Versions: " + versions + ".",
        "",
        "Setup:",
        "",
        setup,
        "",
        "## Targets",
        "",
        f"- added p50 at 1000 req/s: {_verdict(added['p50'], TARGET_P50_MS, 'ms')}",
        f"- added p99 at 1000 req/s: {_verdict(added['p99'], TARGET_P99_MS, 'ms')}",
        f"- peak RSS (VmHWM, incl. 200 SSE streams): {_verdict(peak_mb, TARGET_RSS_MB, 'MB')}; "
        f"idle {results['sidecar_rss_idle_kb'] / 1024:.1f} MB",
        "",
        "## Max throughput (wrk, 1 thread, 8 connections)",
        "",
        *_throughput(results),
        "",
        "## Fixed rate (open loop), latency from request written to last byte read",
        "",
        "Added = percentile through the proxy minus the same percentile direct to the stub.",
        "",
        *_fixed(results),
        "",
        "## 200 concurrent SSE streams (20 events, 50 ms apart)",
        "",
        "TTFB = request to first event; gap = time between consecutive events at the client (ideal 50 ms).",
        "",
        *_sse(results),
        "",
        "## Alternatives: upstream client and event loop",
        "",
        "`proto` = a minimal streaming proxy (aiohttp low-level server) that differs only in the upstream "
        "client and the loop (benchmarks/sidecar/servers.py); `sidecar asyncio-loop` is the real sidecar "
        "with `CHUTE_SIDECAR_LOOP=asyncio`.",
        "",
        *_alternatives(results),
        "",
        "## Choice",
        "",
        "CPU per request is the figure compared: it is the least sensitive to the other processes "
        "sharing the 2 cores.",
        "",
        "- Upstream client: the sidecar's own keep-alive HTTP/1.1 client (`chute_sidecar/upstream.py`, "
        "`lean` above). aiohttp's `ClientSession` needs "
        f"{_ratio(results, 'proto aiohttp uvloop', 'proto lean uvloop')} its CPU per request and httpx "
        f"{_ratio(results, 'proto httpx uvloop', 'proto lean uvloop')} (uvloop). The model is a plain "
        "HTTP/1.1 server on loopback: cookies, redirects, TLS, proxies and decompression are not needed, "
        "and the client is covered by its own tests against raw servers "
        "(tests/unit/chute_sidecar/test_upstream.py). "
        "httpx would also be a new runtime dependency.",
        "- Server: aiohttp's low-level `web.Server` on the serving port (no router or middlewares on the "
        "hot path), with the response head sent in the same write as a body that is already there.",
        "- Event loop: uvloop when importable (extra `fast`); the sidecar on the asyncio loop needs "
        f"{_sidecar_loop_ratio(results)} the CPU per request.",
        "- nginx stays the reference: a C proxy is several times cheaper per request; the sidecar's job "
        "(concurrency slots, auth, probes, token metrics) is what the extra CPU buys.",
        "",
        "## Method and caveats",
        "",
        "- Max throughput is closed loop (wrk keeps 8 requests outstanding); the fixed rates are open loop "
        "(loadgen.py sends on schedule whatever the answers do, over a pool that grows when every "
        "connection is busy). `send_lag_ms` in the JSON shows how late the generator itself was.",
        "- Latency is measured in a Python client, which adds its own ~0.1-0.3 ms; that is why the "
        "direct row is the baseline and the sidecar's cost is reported as the difference of "
        "percentiles (not the percentile of differences).",
        "- CPU is utime+stime of the proxy process from /proc/PID/stat over the phase (for nginx, its "
        "single worker); RSS is VmRSS and VmHWM from /proc/PID/status.",
        "- The 2 cores are shared with the load generator, the stubs and, on this workplace, other "
        "sessions' test runs: the run above was started only once the 1-minute loadavg was below 0.6 "
        "and no Go build was running, and each phase records the loadavg after it in the JSON. Under "
        "load (loadavg 3-7) the same script measured tails several times worse for every target, "
        "nginx included.",
        "- SSE: all 200 streams start at once, so the sidecar accepts 200 connections and opens 200 new "
        "connections to the model in a burst; the extra TTFB is that burst being served one by one "
        "on one core. Gaps between events are unchanged by the sidecar.",
        "",
    ]
    return "\n".join(out)
