"""``GET /metrics``: the engine series an inference gateway's endpoint picker reads, named as vLLM
names them (``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``,
gauges labelled ``model_name`` and ``engine``), in the Prometheus text format. Pure."""

from __future__ import annotations

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENGINE = "0"
"""vLLM's ``engine`` label: the engine core's index (one here)."""

_GAUGES = (
    ("vllm:num_requests_running", "Number of requests in model execution batches."),
    ("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
    ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(model: str, running: int, waiting: int, kv_usage: float) -> bytes:
    """The three gauges of one model; ``kv_usage`` is a fraction (0 to 1), as vLLM reports it."""
    labels = f'{{engine="{ENGINE}",model_name="{_label(model)}"}}'
    lines: list[str] = []
    for (name, help_text), value in zip(_GAUGES, (float(running), float(waiting), kv_usage), strict=True):
        lines += (f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{labels} {value!r}")
    return ("\n".join(lines) + "\n").encode()
