"""The real process: ``python -m chute_modelsim`` and ``chute-operator modelsim`` on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Process, subprocess_env

Run = Callable[..., Process]


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post(url: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def wait_for(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s")
        time.sleep(0.05)


def refused(url: str) -> bool:
    try:
        get(url, timeout=1.0)
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    return False


def admin_up(process: Process) -> bool:
    try:
        return get(process.admin("/admin/state"))[0] == 200
    except urllib.error.URLError:
        return False


def test_health_refused_while_loading_then_200(run_process: Run) -> None:
    process = run_process("--load-seconds", "1.5")
    wait_for(lambda: admin_up(process))
    state = json.loads(get(process.admin("/admin/state"))[1])
    if not state["loaded"]:
        assert refused(process.url("/health")), "like vLLM: not listening while loading"
    wait_for(lambda: not refused(process.url("/health")))
    assert get(process.url("/health")) == (200, b"")
    status, body = post(
        process.url("/v1/chat/completions"), {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    assert body["usage"]["completion_tokens"] == 16


def test_crash_after_requests_exits_non_zero(run_process: Run) -> None:
    env = subprocess_env(CHUTE_MODELSIM_CRASH_AFTER_REQUESTS="2", CHUTE_MODELSIM_CRASH_EXIT_CODE="3")
    process = run_process(env=env)
    wait_for(lambda: not refused(process.url("/health")))
    for _ in range(2):
        assert post(process.url("/v1/completions"), {"prompt": "x"})[0] == 200
    assert process.wait() == 3
    assert "crashing on purpose (after 2 requests)" in process.output()


def test_admin_crash_exits_at_once(run_process: Run) -> None:
    process = run_process("--load-seconds", "30")
    wait_for(lambda: admin_up(process))
    request = urllib.request.Request(process.admin("/admin/crash?exit_code=5"), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
    assert process.wait() == 5


def test_hang_flag_stops_health(run_process: Run) -> None:
    process = run_process("--hang-after-seconds", "0")
    wait_for(lambda: admin_up(process) and json.loads(get(process.admin("/admin/state"))[1])["hung"])
    with pytest.raises(TimeoutError):
        get(process.url("/health"), timeout=0.5)


def test_sigterm_exits_0(run_process: Run) -> None:
    process = run_process()
    wait_for(lambda: not refused(process.url("/health")))
    process.popen.send_signal(signal.SIGTERM)
    assert process.wait() == 0


def test_allocate_flag_grows_rss(run_process: Run) -> None:
    process = run_process("--allocate-mb", "50")

    def allocated() -> bool:
        return admin_up(process) and json.loads(get(process.admin("/admin/state"))[1])["allocated_mb"] == 50

    wait_for(allocated)
    status = Path(f"/proc/{process.popen.pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    assert rss_kib >= 50 * 1024


@pytest.mark.parametrize("command", [["chute-operator", "modelsim"], ["python", "-m", "chute_modelsim"]])
def test_both_entry_points_print_help(command: list[str]) -> None:
    if command[0] == "python":
        argv = [sys.executable, *command[1:]]
    else:
        argv = [
            sys.executable,
            "-c",
            "import sys; from chute_operator.cli import main; sys.exit(main())",
            *command[1:],
        ]
    result = subprocess.run(
        [*argv, "--help"], env=subprocess_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "--crash-after-requests" in result.stdout
    assert "CHUTE_MODELSIM_LOAD_SECONDS" in result.stdout
