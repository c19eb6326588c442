"""Pure pieces: flags and environment, cords, usage parsing, the limiter."""

from __future__ import annotations

import json
import time

import pytest

from chute_sidecar.config import Config, env_name, parse_config
from chute_sidecar.limiter import Limiter
from chute_sidecar.routes import OTHER, RouteTable, method_label, parse_cord
from chute_sidecar.usage import TAIL_BYTES, Tail, parse_usage, wants_usage


def test_contract_invocation_parses() -> None:
    config = parse_config(
        [
            "--upstream", "http://127.0.0.1:8000/",
            "--port", "8080",
            "--metrics-port", "9090",
            "--admin-port", "9091",
            "--concurrency", "8",
            "--health-path", "/healthz",
            "--startup-timeout-seconds", "900",
            "--request-timeout-seconds", "30",
            "--max-body-bytes", "1024",
            "--cord", "POST /v1/chat/completions",
            "--cord", "GET /v1/models/*",
            "--restrict-to-cords",
            "--api-key-file", "/var/run/chutes/auth/api-key",
            "--drain-seconds", "2",
            "--shutdown-timeout-seconds", "40",
            "--health-interval-seconds", "3",
            "--log-format", "text",
        ],
        env={},
    )  # fmt: skip
    assert config == Config(
        upstream="http://127.0.0.1:8000",
        concurrency=8,
        health_path="/healthz",
        startup_timeout_seconds=900,
        request_timeout_seconds=30,
        max_body_bytes=1024,
        cords=("POST /v1/chat/completions", "GET /v1/models/*"),
        restrict_to_cords=True,
        api_key_file="/var/run/chutes/auth/api-key",
        drain_seconds=2,
        shutdown_timeout_seconds=40,
        health_interval_seconds=3,
        log_format="text",
    )


def test_defaults() -> None:
    config = parse_config(["--upstream", "http://127.0.0.1:8000"], env={})
    assert (config.port, config.metrics_port, config.admin_port, config.concurrency) == (8080, 9090, 9091, 1)
    assert config.drain_token is None
    assert (config.health_path, config.startup_timeout_seconds) == ("/health", 1800)
    assert config.api_key_file is None
    assert not config.restrict_to_cords
    assert config.log_format == "json"


def test_environment_fills_in_and_flags_win() -> None:
    env = {
        env_name("--upstream"): "http://127.0.0.1:7000",
        env_name("--concurrency"): "5",
        env_name("--admin-port"): "9191",
        env_name("--restrict-to-cords"): "true",
        env_name("--cord"): "POST /a; GET /b\nGET /c/*",
        env_name("--drain-token"): "t0ken",
    }
    assert env_name("--admin-port") == "CHUTE_SIDECAR_ADMIN_PORT"
    config = parse_config(["--concurrency", "2"], env=env)
    assert config.upstream == "http://127.0.0.1:7000"
    assert config.concurrency == 2
    assert config.admin_port == 9191
    assert config.drain_token == "t0ken"
    assert "t0ken" not in repr(config)
    assert config.restrict_to_cords
    assert config.cords == ("POST /a", "GET /b", "GET /c/*")
    assert parse_config(["--cord", "GET /x"], env=env).cords == ("GET /x",)


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),
        (["--upstream", "127.0.0.1:8000"], {}),
        (["--upstream", "http://x", "--concurrency", "0"], {}),
        (["--upstream", "http://x", "--cord", "FETCH /a"], {}),
        (["--upstream", "http://x", "--cord", "/a"], {}),
        (["--upstream", "http://x", "--restrict-to-cords"], {}),
        (["--upstream", "http://x", "--log-format", "xml"], {}),
        (["--upstream", "http://x", "--admin-port", "9090"], {}),  # the metrics port's default
        (["--upstream", "http://x", "--port", "7000", "--metrics-port", "7000"], {}),
        (["--upstream", "http://x"], {"CHUTE_SIDECAR_PORT": "http"}),
        (["--upstream", "http://x"], {"CHUTE_SIDECAR_RESTRICT_TO_CORDS": "maybe"}),
    ],
)
def test_bad_configuration_exits_with_usage(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv, env=env)
    assert exc.value.code == 2


def test_route_table() -> None:
    table = RouteTable.from_strings(
        ["POST /v1/chat/completions", "GET /v1/models", "GET /v1/models/*", "* /files/*", "DELETE /x"]
    )
    assert table.match("POST", "/v1/chat/completions") == "/v1/chat/completions"
    assert table.match("GET", "/v1/chat/completions") is None
    assert table.match("GET", "/v1/models") == "/v1/models"
    assert table.match("GET", "/v1/models/llama") == "/v1/models/*"
    assert table.match("PUT", "/files/a/b") == "/files/*"
    assert table.match("GET", "/files/../secret") is None
    assert table.match("GET", "/files/%2E%2E/secret") is None
    assert table.match("GET", "/files/.hidden") == "/files/*"
    assert table.match("DELETE", "/x/y") is None
    assert parse_cord("post /a").method == "POST"
    with pytest.raises(ValueError, match="only at the end"):
        parse_cord("GET /a*/b")
    assert method_label("PROPFIND") == OTHER


def test_usage_parsing() -> None:
    body = json.dumps(
        {"choices": [{"text": "x" * 20000}], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}
    )
    tail = Tail()
    for start in range(0, len(body), 1000):
        tail.feed(body[start : start + 1000].encode())
    assert len(tail.data) == TAIL_BYTES
    assert parse_usage(tail.data) == (3, 9)
    nested = b'{"usage": {"prompt_tokens_details": {"cached_tokens": 4}, "prompt_tokens": 5, '
    nested += b'"completion_tokens": 6}}'
    assert parse_usage(nested) == (5, 6)
    cumulative = b"".join(
        b'data: {"usage": {"prompt_tokens": 5, "completion_tokens": %d}}\n\n' % n for n in range(1, 4)
    )
    assert parse_usage(cumulative + b"data: [DONE]\n\n") == (5, 3)  # the last one, not the sum
    assert parse_usage(b'data: {"usage": null}\n\n') is None
    assert parse_usage(b'{"usage": {"prompt_tokens": 5, "compl') is None  # cut off: not trusted
    assert parse_usage(b"") is None
    assert parse_usage(b'{"usage": {"input_tokens": 2, "output_tokens": 8}}') == (2, 8)
    assert wants_usage("application/json; charset=utf-8", None)
    assert wants_usage("text/event-stream", None)
    assert not wants_usage("application/json", "gzip")
    assert not wants_usage("text/plain", None)


def test_limiter() -> None:
    limiter = Limiter(2)
    first, second = limiter.try_acquire(), limiter.try_acquire()
    assert first is not None
    assert second is not None
    assert limiter.try_acquire() is None
    assert limiter.stats()["available"] == 0
    limiter.release(first)
    assert limiter.in_flight == 1
    third = limiter.try_acquire()
    assert third is not None
    limiter.release(second)
    limiter.release(third)
    limiter.release(third)  # idempotent
    stats = limiter.stats()
    assert stats.pop("idle_secs") >= 0
    assert stats == {
        "concurrency": 2,
        "in_flight": 0,
        "available": 2,
        "utilization": 0.0,
        "oldest_in_flight_age_secs": None,
    }


def test_idle_seconds_count_from_start_and_from_the_last_request_and_not_while_busy() -> None:
    limiter = Limiter(2)
    time.sleep(0.2)
    before = limiter.idle_seconds()
    assert before is not None
    assert before >= 0.2  # idle since start
    ticket = limiter.try_acquire()
    assert ticket is not None
    assert limiter.idle_seconds() is None
    assert limiter.stats()["idle_secs"] is None
    limiter.release(ticket)
    after = limiter.idle_seconds()
    assert after is not None
    assert after < before  # counted again from the release
