"""Flags, their environment variables, and the switches' ``off`` value."""

from __future__ import annotations

import pytest

from chute_modelsim.config import Config, env_name, parse_config


def test_defaults_listen_on_loopback_like_vllm() -> None:
    config = parse_config([], environ={})
    assert config == Config()
    assert (config.host, config.port, config.admin_host, config.admin_port) == (
        "127.0.0.1",
        8000,
        "127.0.0.1",
        8001,
    )
    assert config.crash_after_requests is None
    assert config.hang_after_seconds is None
    assert config.fault_once_file is None


def test_every_flag_parses() -> None:
    config = parse_config(
        [
            "--model", "m", "--host", "0.0.0.0", "--port", "9000", "--admin-host", "0.0.0.0",
            "--admin-port", "off", "--load-seconds", "40", "--loading", "unavailable",
            "--time-to-first-token-seconds", "0.5", "--tokens-per-second", "0", "--output-tokens", "3",
            "--max-model-len", "100", "--embedding-dimensions", "8", "--crash-after-requests", "2",
            "--crash-after-seconds", "0", "--crash-exit-code", "7", "--hang-after-requests", "5",
            "--hang-after-seconds", "1.5", "--allocate-mb", "64", "--grow-mb-per-second", "10",
            "--allocate-limit-mb", "512", "--fault-once-file", "/cache/once", "--log-level", "DEBUG",
        ],
        environ={},
    )  # fmt: skip
    assert config == Config(
        model="m",
        host="0.0.0.0",
        port=9000,
        admin_host="0.0.0.0",
        admin_port=None,
        load_seconds=40.0,
        loading="unavailable",
        time_to_first_token_seconds=0.5,
        tokens_per_second=0.0,
        output_tokens=3,
        max_model_len=100,
        embedding_dimensions=8,
        crash_after_requests=2,
        crash_after_seconds=0.0,
        crash_exit_code=7,
        hang_after_requests=5,
        hang_after_seconds=1.5,
        allocate_mb=64,
        grow_mb_per_second=10.0,
        allocate_limit_mb=512,
        fault_once_file="/cache/once",
        log_level="DEBUG",
    )


def test_environment_fills_in_and_the_flag_wins() -> None:
    environ = {
        env_name("--crash-after-requests"): "3",
        env_name("--load-seconds"): "12",
        env_name("--admin-port"): "off",
    }
    assert env_name("--crash-after-requests") == "CHUTE_MODELSIM_CRASH_AFTER_REQUESTS"
    config = parse_config(["--load-seconds", "1"], environ=environ)
    assert (config.crash_after_requests, config.load_seconds, config.admin_port) == (3, 1.0, None)


def test_empty_environment_value_turns_a_switch_off() -> None:
    assert parse_config([], environ={"CHUTE_MODELSIM_HANG_AFTER_REQUESTS": ""}).hang_after_requests is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--loading", "later"],
        ["--crash-after-requests", "0"],
        ["--crash-exit-code", "0"],
        ["--load-seconds", "-1"],
        ["--port", "70000"],
        ["--tokens-per-second", "fast"],
    ],
)
def test_bad_values_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, environ={})
    assert exit_info.value.code == 2
    assert "chute-operator modelsim" in capsys.readouterr().err


def test_bad_environment_value_exits_2() -> None:
    with pytest.raises(SystemExit):
        parse_config([], environ={"CHUTE_MODELSIM_OUTPUT_TOKENS": "0"})
