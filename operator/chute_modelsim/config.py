"""Flags of the simulator; every flag also reads ``CHUTE_MODELSIM_<FLAG>`` (the flag wins)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chute_shared import flags
from chute_shared.flags import EnvFlags, at_least, non_negative, optional, port
from chute_shared.ports import MODEL_PORT

ENV_PREFIX = "CHUTE_MODELSIM_"
LOADING_MODES = ("refuse", "unavailable")


@dataclass(frozen=True, slots=True)
class Config:
    """What the simulated model server does; see ``docs/modelsim.md``."""

    model: str = "chute-modelsim"
    host: str = "127.0.0.1"
    port: int = MODEL_PORT
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 8001
    load_seconds: float = 0.0
    loading: str = "refuse"
    time_to_first_token_seconds: float = 0.05
    tokens_per_second: float = 100.0
    output_tokens: int = 16
    max_model_len: int = 4096
    max_num_seqs: int = 256
    kv_cache_tokens: int = 65536
    embedding_dimensions: int = 16
    crash_after_requests: int | None = None
    crash_after_seconds: float | None = None
    crash_exit_code: int = 1
    hang_after_requests: int | None = None
    hang_after_seconds: float | None = None
    allocate_mb: int = 0
    grow_mb_per_second: float = 0.0
    allocate_limit_mb: int = 8192
    fault_once_file: str | None = None
    log_level: str = "INFO"
    weights: str | None = None
    load_seconds_per_gib: float = 0.0


def env_name(flag: str) -> str:
    """``--load-seconds`` -> ``CHUTE_MODELSIM_LOAD_SECONDS``."""
    return flags.env_name(ENV_PREFIX, flag)


def _exit_code(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be 1..255 (a crash is a non-zero exit): {text}")
    return value


# flag, type, default, help
_OPTIONS: tuple[tuple[str, Callable[[str], Any], object, str], ...] = (
    ("--model", str, "chute-modelsim", "model name served by /v1/models and accepted in requests"),
    ("--host", str, "127.0.0.1", "address of the OpenAI port"),
    ("--port", port, MODEL_PORT, "OpenAI-compatible port (/v1/*, /health)"),
    ("--admin-host", str, "127.0.0.1", "address of the admin port"),
    ("--admin-port", optional(port), 8001, "admin port (/admin/*: crash, hang, allocate); off disables"),
    ("--load-seconds", non_negative, 0.0, "simulated weight loading before /health answers 200"),
    (
        "--loading",
        str,
        "refuse",
        "while loading: refuse (port not listening yet, like vLLM) or unavailable (listening, 503)",
    ),
    ("--time-to-first-token-seconds", non_negative, 0.05, "delay before the first token of an answer"),
    ("--tokens-per-second", non_negative, 100.0, "generation speed after the first token; 0 = no delay"),
    ("--output-tokens", at_least(1), 16, "completion length when a request sets no max_tokens"),
    ("--max-model-len", at_least(1), 4096, "prompt plus completion tokens at most (400 beyond)"),
    ("--max-num-seqs", at_least(1), 256, "requests generated at once, like vLLM's; more wait (/metrics)"),
    (
        "--kv-cache-tokens",
        at_least(1),
        65536,
        "KV cache size in tokens: running requests' prompts and completions fit in it; more wait",
    ),
    ("--embedding-dimensions", at_least(1), 16, "length of /v1/embeddings vectors (unless asked)"),
    ("--crash-after-requests", optional(at_least(1)), None, "exit non-zero after answering N requests"),
    (
        "--crash-after-seconds",
        optional(non_negative),
        None,
        "exit non-zero S seconds after loading (0: at once)",
    ),
    ("--crash-exit-code", _exit_code, 1, "exit status of a crash"),
    (
        "--hang-after-requests",
        optional(at_least(1)),
        None,
        "stop answering (/health too) after N requests",
    ),
    ("--hang-after-seconds", optional(non_negative), None, "stop answering S seconds after loading"),
    ("--allocate-mb", at_least(0), 0, "allocate and touch this many MiB once loaded (held)"),
    ("--grow-mb-per-second", non_negative, 0.0, "keep allocating this many MiB a second (until OOM-killed)"),
    (
        "--allocate-limit-mb",
        at_least(0),
        8192,
        "never hold more than this (a guard for runs outside a memory-limited container)",
    ),
    (
        "--fault-once-file",
        optional(str),
        None,
        "flag/env faults fire only if this file is absent, and create it (on an emptyDir: once per pod)",
    ),
    ("--log-level", str, "INFO", "DEBUG logs every request"),
    (
        "--weights",
        optional(str),
        None,
        "a snapshot folder (config.json, *.safetensors) to check and read through before serving, e.g. "
        "$(CHUTE_MODEL_PATH) in a Chute with a weights cache; unreadable or inconsistent: exit 1",
    ),
    ("--load-seconds-per-gib", non_negative, 0.0, "with --weights, this much longer to load per GiB read"),
)


def _metavar(flag: str) -> str:
    for suffix, metavar in (
        ("seconds", "S"),
        ("-second", "R"),
        ("-mb", "MIB"),
        ("port", "PORT"),
        ("host", "ADDR"),
        ("requests", "N"),
        ("file", "PATH"),
        ("loading", "{refuse,unavailable}"),
    ):
        if flag.endswith(suffix):
            return metavar
    return flag.lstrip("-").split("-")[-1].upper()


def build_parser(environ: Mapping[str, str] | None = None) -> EnvFlags:
    parser = argparse.ArgumentParser(
        prog="chute-operator modelsim",
        description="A simulated OpenAI-compatible model server (no GPU, deterministic tokens). "
        f"Every flag also reads {ENV_PREFIX}<FLAG> from the environment; the flag wins.",
    )
    options = EnvFlags(parser, ENV_PREFIX, environ)
    for flag, kind, default, help_text in _OPTIONS:
        options.add(flag, kind, default, help_text, metavar=_metavar(flag))
    return options


def parse_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags (falling back to the environment); exits with usage on error like argparse."""
    options = build_parser(environ)
    values = vars(options.parse(argv))
    if values["loading"] not in LOADING_MODES:
        options.error(f"--loading must be one of {', '.join(LOADING_MODES)}: {values['loading']!r}")
    return Config(**values)
