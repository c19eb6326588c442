"""Sidecar benchmark: one command, loopback only, a few minutes.

    .venv/bin/python benchmarks/sidecar/run.py [--quick]

Starts a fast stub model (nginx ``return 200``, one worker), an SSE stub (aiohttp), the sidecar, nginx as
a reference reverse proxy, and minimal proxies that differ only in the upstream client (aiohttp,
httpx) and the event loop (uvloop, asyncio). Measures max throughput (wrk), added latency at fixed
rates (loadgen.py, open loop), 200 concurrent SSE streams, and the sidecar's CPU and peak RSS. Writes
benchmarks/results/sidecar.json and docs/benchmarks/sidecar.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")

WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,'
    .. '"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not up within {timeout}s")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Processes:
    """Started helper processes, stopped (each by its own pid) at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  default_type text/plain;
  keepalive_requests 10000000;
  client_body_temp_path {tmp}/{name}-body; proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi; uwsgi_temp_path {tmp}/{name}-uwsgi; scgi_temp_path {tmp}/{name}-scgi;
{body}
}}
"""
    )
    return conf


def proxy_location(upstream: str) -> str:
    return f"""location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
    }}"""


def wrk(url: str, seconds: int, connections: int, lua: Path) -> dict[str, Any]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


def loadgen(*args: str, timeout: float = 120) -> dict[str, Any]:
    output = subprocess.run(
        [PYTHON, str(HERE / "loadgen.py"), *args], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def cpu_of(pid: int | None, into: dict[str, Any]) -> Iterator[None]:
    """Adds ``cpu_percent`` (of one core) of ``pid`` over the block to ``into``."""
    if pid is None:
        yield
        return
    cpu, wall = cpu_seconds(pid), time.monotonic()
    yield
    used = cpu_seconds(pid) - cpu
    into["proxy_cpu_seconds"] = round(used, 3)
    into["loadavg_1m_after"] = float(Path("/proc/loadavg").read_text().split()[0])
    into["proxy_cpu_percent"] = round(100 * used / (time.monotonic() - wall), 1)
    done = into.get("requests") or into.get("completed")
    if done:
        into["proxy_cpu_us_per_request"] = round(used / done * 1e6, 1)


def load_snapshot() -> dict[str, Any]:
    busy = subprocess.run(["pgrep", "-f", "go build|/compile"], capture_output=True, text=True).stdout.split()
    return {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "go_build_running": bool(busy)}


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = status_like("/proc/meminfo", "MemTotal")
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kb / 1024 / 1024, 1)}


def status_like(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def versions() -> dict[str, str]:
    import aiohttp
    import uvloop

    found = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
    }
    try:
        import httpx

        found["httpx"] = httpx.__version__
    except ImportError:
        found["httpx"] = "not installed"
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    found["nginx"] = nginx.split("/")[-1]
    found["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short phases (smoke test of the script)")
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the Markdown report from the saved JSON"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        from report import render

        saved = json.loads((ROOT / "benchmarks" / "results" / "sidecar.json").read_text())
        (ROOT / "docs" / "benchmarks" / "sidecar.md").write_text(render(saved))
        return 0
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is required (apt-get install {tool})", file=sys.stderr)
            return 2
    long, short, rate_seconds = (2, 2, 3.0) if args.quick else (10, 5, 8.0)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": ".venv/bin/python benchmarks/sidecar/run.py" + (" --quick" if args.quick else ""),
        "machine": machine(),
        "versions": versions(),
        "load_before": load_snapshot(),
        "setup": {
            "fast_stub": "nginx 1 worker, `return 200 'ok\\n'` (3-byte body)",
            "sse_stub": "aiohttp+uvloop, 20 events 50 ms apart",
            "wrk": "1 thread, 8 connections",
            "rate_generator": "benchmarks/sidecar/loadgen.py: open loop, uvloop, raw keep-alive pool",
            "sidecar": "--concurrency 256, JSON logs, defaults otherwise",
            "nginx_reference": "1 worker, upstream keepalive, proxy_buffering off",
        },
    }
    tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    lua = tmp / "report.lua"
    lua.write_text(WRK_LUA)
    procs = Processes(tmp)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "operator"))
    try:
        stub_port, sse_port, nginx_port, nginx_sse_port = (free_port() for _ in range(4))
        stub_conf = nginx_conf(
            tmp, "stub", f"  server {{ listen {LOOPBACK}:{stub_port}; location / {{ return 200 'ok\\n'; }} }}"
        )
        procs.start("nginx-stub", ["nginx", "-p", str(tmp), "-c", str(stub_conf)])
        procs.start("sse-stub", [PYTHON, str(HERE / "servers.py"), "sse", str(sse_port)])
        proxy_conf = nginx_conf(
            tmp,
            "proxy",
            f"""  upstream fast {{ server {LOOPBACK}:{stub_port}; keepalive 256; }}
  upstream sse {{ server {LOOPBACK}:{sse_port}; keepalive 256; }}
  server {{ listen {LOOPBACK}:{nginx_port}; {proxy_location("fast")} }}
  server {{ listen {LOOPBACK}:{nginx_sse_port}; {proxy_location("sse")} }}""",
        )
        nginx_proxy = procs.start("nginx-proxy", ["nginx", "-p", str(tmp), "-c", str(proxy_conf)])
        direct = f"http://{LOOPBACK}:{stub_port}"
        wait_http(direct + "/")
        wait_http(f"http://{LOOPBACK}:{sse_port}/health")
        wait_http(f"http://{LOOPBACK}:{nginx_port}/")
        nginx_worker = _nginx_worker(tmp / "nginx-proxy.pid", nginx_proxy.pid)

        def sidecar(name: str, upstream: str, loop: str = "auto") -> tuple[subprocess.Popen[bytes], str]:
            port, metrics, admin = free_port(), free_port(), free_port()
            process = procs.start(
                name,
                [PYTHON, "-m", "chute_sidecar", "--upstream", upstream, "--host", LOOPBACK,
                 "--port", str(port), "--metrics-port", str(metrics), "--admin-port", str(admin),
                 "--concurrency", "256"],
                env=dict(env, CHUTE_SIDECAR_LOOP=loop),
            )  # fmt: skip
            wait_http(f"http://{LOOPBACK}:{admin}/readyz")
            return process, f"http://{LOOPBACK}:{port}"

        main_sidecar, sidecar_url = sidecar("sidecar", direct)
        results["sidecar_rss_idle_kb"] = status_kb(main_sidecar.pid, "VmRSS")

        # -- max throughput ---------------------------------------------------------------
        throughput: dict[str, Any] = {}
        targets = [("direct", direct, None), ("sidecar", sidecar_url, main_sidecar.pid)]
        targets.append(("nginx", f"http://{LOOPBACK}:{nginx_port}", nginx_worker))
        for name, url, pid in targets:
            wrk(url + "/", 1, 8, lua)  # warm up connections and code paths
            entry: dict[str, Any] = {}
            with cpu_of(pid, entry):
                entry.update(wrk(url + "/", long, 8, lua))
            throughput[name] = entry
            print(f"throughput {name}: {entry['rps']} req/s", flush=True)
        results["throughput"] = throughput

        # -- fixed rates --------------------------------------------------------------------
        fixed: dict[str, Any] = {}
        for rate in (100, 1000):
            for name, url, pid in targets:
                entry = {}
                with cpu_of(pid, entry):
                    entry.update(loadgen("rate", url + "/", str(rate), str(rate_seconds)))
                fixed[f"{name}@{rate}"] = entry
                latency = entry["latency_ms"]
                print(f"rate {rate} {name}: p50 {latency['p50']} ms p99 {latency['p99']} ms", flush=True)
        for rate in (100, 1000):
            base = fixed[f"direct@{rate}"]["latency_ms"]
            for name in ("sidecar", "nginx"):
                mine = fixed[f"{name}@{rate}"]["latency_ms"]
                fixed[f"{name}@{rate}"]["added_ms"] = {
                    key: round(mine[key] - base[key], 4) for key in ("p50", "p90", "p99", "mean")
                }
        results["fixed_rate"] = fixed

        # -- SSE: 200 concurrent streams ----------------------------------------------------
        sse_sidecar, sse_sidecar_url = sidecar("sidecar-sse", f"http://{LOOPBACK}:{sse_port}")
        streams: dict[str, Any] = {}
        for name, url, pid in [
            ("direct", f"http://{LOOPBACK}:{sse_port}", None),
            ("sidecar", sse_sidecar_url, sse_sidecar.pid),
            ("nginx", f"http://{LOOPBACK}:{nginx_sse_port}", nginx_worker),
        ]:
            loadgen("sse", url + "/v1/chat/completions", "20")  # warm up
            entry = {}
            with cpu_of(pid, entry):
                entry.update(loadgen("sse", url + "/v1/chat/completions", "200"))
            streams[name] = entry
            ttfb, gap = entry["ttfb_ms"].get("p99"), entry["gap_ms"].get("p99")
            print(f"sse {name}: ttfb p99 {ttfb} ms, gap p99 {gap} ms", flush=True)
        streams["sidecar_peak_rss_kb"] = status_kb(sse_sidecar.pid, "VmHWM")
        results["sse_200_streams"] = streams
        procs.stop(sse_sidecar)

        results["sidecar_peak_rss_kb"] = status_kb(main_sidecar.pid, "VmHWM")
        results["sidecar_rss_end_kb"] = status_kb(main_sidecar.pid, "VmRSS")
        procs.stop(main_sidecar)

        # -- alternatives: event loop and upstream client ----------------------------------
        alternatives: dict[str, Any] = {}
        plain_loop, plain_url = sidecar("sidecar-asyncio", direct, loop="asyncio")
        variants: list[tuple[str, subprocess.Popen[bytes], str]] = [
            ("sidecar asyncio-loop", plain_loop, plain_url)
        ]
        for client in ("lean", "aiohttp", "httpx"):
            for loop in ("uvloop", "asyncio"):
                port = free_port()
                process = procs.start(
                    f"proto-{client}-{loop}",
                    [PYTHON, str(HERE / "servers.py"), "proto", str(port), direct, client, loop],
                    env=env,
                )
                url = f"http://{LOOPBACK}:{port}"
                try:
                    wait_http(url + "/", timeout=15)
                except RuntimeError:
                    alternatives[f"proto {client} {loop}"] = {"error": "did not start (library missing?)"}
                    procs.stop(process)
                    continue
                variants.append((f"proto {client} {loop}", process, url))
        for name, process, url in variants:
            wrk(url + "/", 1, 8, lua)
            entry = {}
            with cpu_of(process.pid, entry):
                entry.update(wrk(url + "/", short, 8, lua))
            entry["rate_1000"] = loadgen("rate", url + "/", "1000", str(rate_seconds / 2))
            alternatives[name] = entry
            print(f"alternative {name}: {entry['rps']} req/s", flush=True)
            procs.stop(process)
        results["alternatives"] = alternatives
    finally:
        procs.stop_all()
    results["load_after"] = load_snapshot()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    shutil.rmtree(tmp, ignore_errors=True)

    from report import render  # sibling module (run.py is a script)

    text = render(results)
    print(text)
    if not args.no_write:
        out = ROOT / "benchmarks" / "results" / "sidecar.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        doc = ROOT / "docs" / "benchmarks" / "sidecar.md"
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
        print(f"wrote {out.relative_to(ROOT)} and {doc.relative_to(ROOT)}")
    return 0


def _nginx_worker(pid_file: Path, master: int) -> int | None:
    """The single worker of an nginx master (where the proxying CPU is spent)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children")
        if children.exists() and (pids := children.read_text().split()):
            return int(pids[0])
        time.sleep(0.05)
    return None


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))
