"""Bad input from clients and bad flags: a clear 4xx or a clean error, never a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from .conftest import LOOPBACK, OPERATOR_DIR, PYTHON, Running, StartSidecar, Stub, subprocess_env

NON_ASCII = ["日本".encode(), "é".encode(), b"\xff\xfe"]  # UTF-8 beyond Latin-1, UTF-8 Latin-1, not UTF-8


async def _raw(running: Running, head: bytes) -> tuple[int, dict[str, object]]:
    """Send exact bytes; the status and the JSON body of the answer."""
    reader, writer = await asyncio.open_connection(LOOPBACK, running.sidecar.port)
    try:
        writer.write(head)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(status_line.split()[1]), json.loads(body)


def _request(name: bytes, value: bytes) -> bytes:
    host = value if name == b"Host" else b"model.example"
    extra = b"" if name == b"Host" else name + b": " + value + b"\r\n"
    return b"GET /echo HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


@pytest.mark.parametrize("value", NON_ASCII, ids=["cjk", "latin1-as-utf8", "not-utf8"])
@pytest.mark.parametrize("name", [b"Authorization", b"X-API-Key"])
async def test_non_ascii_credentials_are_a_bad_request(
    start_sidecar: StartSidecar,
    stub: Stub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    name: bytes,
    value: bytes,
) -> None:
    keys = tmp_path / "api-key"
    keys.write_text("the-key\n")
    running = await start_sidecar(api_key_file=str(keys))
    if name == b"Authorization":
        value = b"Bearer " + value
    with caplog.at_level(logging.WARNING):
        status, body = await _raw(running, _request(name, value))
    assert status == 400
    assert name.decode() in str(body["detail"])
    assert stub.seen == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback


@pytest.mark.parametrize("value", NON_ASCII, ids=["cjk", "latin1-as-utf8", "not-utf8"])
@pytest.mark.parametrize("name", [b"Host", b"X-Forwarded-For", b"Connection"])
async def test_non_ascii_headers_the_proxy_reads_are_a_bad_request(
    sidecar: Running, stub: Stub, caplog: pytest.LogCaptureFixture, name: bytes, value: bytes
) -> None:
    with caplog.at_level(logging.WARNING):
        status, body = await _raw(sidecar, _request(name, value))
    assert status == 400
    assert name.decode() in str(body["detail"])
    assert stub.seen == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 'chute_requests_total{code="400",method="GET",route="other"} 1.0' in await sidecar.metrics_text()


async def test_non_ascii_in_other_headers_passes_through_unchanged(sidecar: Running, stub: Stub) -> None:
    """Headers the sidecar does not read are forwarded as bytes, whatever they hold."""
    status, body = await _raw(sidecar, _request(b"X-Title", "日本".encode()))
    assert status == 200
    assert body["headers"]["X-Title"] == "日本"  # type: ignore[index]


@pytest.mark.parametrize("level", ["LOUD", "debugg", "5"])
async def test_bad_log_level_exits_2_with_a_message(level: str) -> None:
    process = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "chute_sidecar", "--upstream", "http://127.0.0.1:9", "--log-level", level,
        cwd=OPERATOR_DIR,
        env=subprocess_env(),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    text = stderr.decode()
    assert "--log-level" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "ERROR", "critical"])
def test_log_levels_accepted_in_any_case(level: str) -> None:
    from chute_sidecar.config import parse_config

    assert parse_config(["--upstream", "http://x", "--log-level", level], env={}).log_level == level.upper()
