"""Standard templates: how each model server is started, and its defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chute_operator.api import ChuteSpec, Cord
from chute_shared.paths import METRICS_PATH, MODEL_HEALTH_PATH
from chute_shared.ports import MODEL_PORT

ArgsBuilder = Callable[[ChuteSpec, int], list[str]]


@dataclass(frozen=True)
class Engine:
    """Defaults a template supplies; the Chute's own fields win where set."""

    name: str
    port: int
    health_path: str
    startup_timeout_seconds: int
    concurrency: int
    cords: tuple[Cord, ...]
    command: tuple[str, ...]
    """Empty: the image's own entrypoint."""
    args: ArgsBuilder
    metrics_path: str | None = None
    """The engine's own Prometheus path, relayed by the sidecar on its metrics port (None: none)."""


def _revision(spec: ChuteSpec, flag: str) -> list[str]:
    return [flag, spec.model.revision] if spec.model and spec.model.revision else []


def _model(spec: ChuteSpec) -> str:
    return spec.model.name if spec.model else ""


def _vllm_args(spec: ChuteSpec, port: int) -> list[str]:
    args = [_model(spec), "--host", "127.0.0.1", "--port", str(port)]
    if spec.node_selector.gpu_count > 1:
        args += ["--tensor-parallel-size", str(spec.node_selector.gpu_count)]
    return args + _revision(spec, "--revision")


def _embedding_args(spec: ChuteSpec, port: int) -> list[str]:
    return [*_vllm_args(spec, port), "--task", "embed"]


def _sglang_args(spec: ChuteSpec, port: int) -> list[str]:
    args = ["--model-path", _model(spec), "--host", "127.0.0.1", "--port", str(port)]
    if spec.node_selector.gpu_count > 1:
        args += ["--tp-size", str(spec.node_selector.gpu_count)]
    return args + _revision(spec, "--revision")


def _tei_args(spec: ChuteSpec, port: int) -> list[str]:
    return [
        "--model-id",
        _model(spec),
        "--hostname",
        "127.0.0.1",
        "--port",
        str(port),
        *_revision(spec, "--revision"),
    ]


def _no_args(spec: ChuteSpec, port: int) -> list[str]:
    return []


_OPENAI = (
    Cord(path="/v1/chat/completions", method="POST", stream=True),
    Cord(path="/v1/completions", method="POST", stream=True),
    Cord(path="/v1/models", method="GET"),
    Cord(path="/tokenize", method="POST"),
    Cord(path="/detokenize", method="POST"),
)

ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine(
            "vllm", 8000, MODEL_HEALTH_PATH, 1800, 32, _OPENAI, ("vllm", "serve"), _vllm_args, METRICS_PATH
        ),
        Engine(
            "sglang",
            30000,
            MODEL_HEALTH_PATH,
            1800,
            32,
            (*_OPENAI, Cord(path="/generate", method="POST", stream=True)),
            ("python3", "-m", "sglang.launch_server"),
            _sglang_args,
        ),
        Engine(
            "tei",
            8000,
            MODEL_HEALTH_PATH,
            600,
            32,
            (
                Cord(path="/embed", method="POST"),
                Cord(path="/rerank", method="POST"),
                Cord(path="/predict", method="POST"),
                Cord(path="/v1/embeddings", method="POST"),
            ),
            (),
            _tei_args,
        ),
        Engine(
            "embedding",
            8000,
            MODEL_HEALTH_PATH,
            900,
            32,
            (Cord(path="/v1/embeddings", method="POST"), Cord(path="/v1/models", method="GET")),
            ("vllm", "serve"),
            _embedding_args,
            METRICS_PATH,
        ),
        Engine(
            "diffusion",
            8000,
            MODEL_HEALTH_PATH,
            1200,
            3,
            (Cord(path="/generate", method="POST"),),
            (),
            _no_args,
        ),
        Engine("custom", MODEL_PORT, MODEL_HEALTH_PATH, 600, 1, (), (), _no_args),
    )
}
