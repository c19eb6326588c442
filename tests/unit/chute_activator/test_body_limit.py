"""One body limit: a Chute at zero (the activator) takes the bodies it takes awake (the sidecar)."""

from __future__ import annotations

from chute_activator.config import parse_config as activator_config
from chute_shared.limits import MAX_BODY_BYTES
from chute_sidecar.config import parse_config as sidecar_config


def test_the_activator_and_the_sidecar_default_to_the_one_shared_body_limit() -> None:
    activator = activator_config([], environ={})
    sidecar = sidecar_config(["--upstream", "http://127.0.0.1:8000"], env={})
    assert activator.max_body_bytes == sidecar.max_body_bytes == MAX_BODY_BYTES == 64 * 1024 * 1024


def test_the_activator_flag_keeps_its_name_and_environment_variable() -> None:
    assert activator_config(["--max-body-bytes", "1000"], environ={}).max_body_bytes == 1000
    assert activator_config([], environ={"CHUTE_ACTIVATOR_MAX_BODY_BYTES": "2000"}).max_body_bytes == 2000


def test_the_bound_across_requests_is_a_flag_with_an_environment_fallback() -> None:
    assert activator_config([], environ={}).max_held_body_bytes == 128 * 1024 * 1024
    assert activator_config(["--max-held-body-bytes", "5"], environ={}).max_held_body_bytes == 5
    environ = {"CHUTE_ACTIVATOR_MAX_HELD_BODY_BYTES": "7"}
    assert activator_config([], environ=environ).max_held_body_bytes == 7


def test_the_body_timeout_is_a_flag_with_an_environment_fallback() -> None:
    assert activator_config([], environ={}).body_timeout_seconds == 120.0
    assert activator_config(["--body-timeout-seconds", "5"], environ={}).body_timeout_seconds == 5.0
    environ = {"CHUTE_ACTIVATOR_BODY_TIMEOUT_SECONDS": "7"}
    assert activator_config([], environ=environ).body_timeout_seconds == 7.0
