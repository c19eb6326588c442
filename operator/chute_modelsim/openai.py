"""OpenAI request bodies in, answers out: pure functions, no I/O and no clock.

A request becomes a :class:`Plan` (the tokens of every choice, known up front because they are
fake); the server then decides when each token is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chute_modelsim.config import Config
from chute_modelsim.tokens import count_tokens, embed, float32_base64, generate, seed_of

MAX_CHOICES = 16
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_DIMENSIONS = 8192


class RequestError(Exception):
    """An invalid request: ``status`` and an OpenAI error object."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status

    def body(self) -> dict[str, Any]:
        kind = "not_found_error" if self.status == 404 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True, slots=True)
class Plan:
    """What one chat or text completion answers."""

    kind: str  # "chat" or "text"
    model: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    choices: tuple[tuple[str, ...], ...]
    finish_reason: str

    @property
    def completion_tokens(self) -> int:
        return sum(len(tokens) for tokens in self.choices)

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    @property
    def steps(self) -> int:
        """Token positions to send; every choice has the same length."""
        return max((len(tokens) for tokens in self.choices), default=0)


def _object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _model(body: dict[str, Any], config: Config) -> str:
    model = body.get("model", config.model)
    if model != config.model:
        raise RequestError(f"The model `{model}` does not exist.", param="model", status=404)
    return config.model


def _int(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"`{name}` must be an integer from {low} to {high}", param=name)
    return value


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("`stream` must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise RequestError("`stream_options` is only allowed with `stream: true`", param="stream_options")
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise RequestError("`stream_options.include_usage` must be a boolean", param="stream_options")
    return stream, bool(options.get("include_usage", False))


def _message_text(message: object, index: int) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError(f"messages[{index}] must be an object with a role", param="messages")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise RequestError(f"messages[{index}].content must be a string or a list of parts", param="messages")


def _prompts(body: dict[str, Any]) -> list[tuple[str, int]]:
    """``(text used as seed, token count)`` for each prompt of a text completion."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [(prompt, count_tokens(prompt))]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            return [(item, count_tokens(item)) for item in prompt]
        if all(isinstance(item, int) and not isinstance(item, bool) for item in prompt):
            return [(repr(prompt), len(prompt))]
        if all(isinstance(item, list) and all(isinstance(i, int) for i in item) for item in prompt):
            return [(repr(item), len(item)) for item in prompt]
    raise RequestError("`prompt` must be a string, a list of strings or of token ids", param="prompt")


def _length(
    body: dict[str, Any], names: tuple[str, ...], prompt_tokens: int, prompt_param: str, config: Config
) -> tuple[int, str]:
    """Completion length and finish reason: exactly ``max_tokens`` if asked, else the default length."""
    room = config.max_model_len - prompt_tokens
    if room < 1:
        raise RequestError(
            f"the prompt has {prompt_tokens} tokens; this model's maximum context length is "
            f"{config.max_model_len}",
            param=prompt_param,
        )
    asked = None
    for name in names:
        asked = _int(body, name, None, 1, config.max_model_len)
        if asked is not None:
            break
    if asked is None:
        return min(config.output_tokens, room), "stop"
    if asked > room:
        raise RequestError(
            f"{prompt_tokens} prompt tokens plus {asked} completion tokens exceed this model's maximum "
            f"context length of {config.max_model_len}",
            param=names[-1],
        )
    return asked, "length"


def _seed(body: dict[str, Any]) -> int:
    return _int(body, "seed", 0, -(2**63), 2**64 - 1) or 0


def plan_chat(body: object, config: Config) -> Plan:
    """``POST /v1/chat/completions``."""
    body = _object(body)
    model = _model(body, config)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("`messages` must be a non-empty list", param="messages")
    text = "\n".join(_message_text(message, index) for index, message in enumerate(messages))
    prompt_tokens = count_tokens(text)
    stream, include_usage = _stream(body)
    n = _int(body, "n", 1, 1, MAX_CHOICES) or 1
    length, finish = _length(body, ("max_completion_tokens", "max_tokens"), prompt_tokens, "messages", config)
    seed = _seed(body)
    choices = tuple(tuple(generate(seed_of(text, seed + index), length)) for index in range(n))
    return Plan("chat", model, stream, include_usage, prompt_tokens, choices, finish)


def plan_text(body: object, config: Config) -> Plan:
    """``POST /v1/completions``; a list of prompts gets one choice per prompt (times ``n``)."""
    body = _object(body)
    model = _model(body, config)
    prompts = _prompts(body)
    stream, include_usage = _stream(body)
    n = _int(body, "n", 1, 1, MAX_CHOICES) or 1
    if len(prompts) * n > MAX_CHOICES:
        raise RequestError(f"at most {MAX_CHOICES} choices (prompts times n) per request", param="prompt")
    prompt_tokens = sum(tokens for _, tokens in prompts)
    length, finish = _length(body, ("max_tokens",), max(tokens for _, tokens in prompts), "prompt", config)
    seed = _seed(body)
    choices = tuple(
        tuple(generate(seed_of(text, seed + index), length)) for text, _ in prompts for index in range(n)
    )
    return Plan("text", model, stream, include_usage, prompt_tokens, choices, finish)


def _choice(plan: Plan, index: int, text: str, finish: str | None) -> dict[str, Any]:
    if plan.kind == "chat":
        return {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def _object_name(plan: Plan, chunk: bool) -> str:
    if plan.kind == "chat":
        return "chat.completion.chunk" if chunk else "chat.completion"
    return "text_completion"


def full_answer(plan: Plan, ident: str, created: int) -> dict[str, Any]:
    """The non-streaming answer, with ``usage``."""
    return {
        "id": ident,
        "object": _object_name(plan, chunk=False),
        "created": created,
        "model": plan.model,
        "choices": [
            _choice(plan, index, "".join(tokens), plan.finish_reason)
            for index, tokens in enumerate(plan.choices)
        ],
        "usage": plan.usage(),
    }


def _chunk(plan: Plan, ident: str, created: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": ident,
        "object": _object_name(plan, chunk=True),
        "created": created,
        "model": plan.model,
        "choices": choices,
    }
    if plan.include_usage:
        chunk["usage"] = None
    return chunk


def step_chunks(plan: Plan, ident: str, created: int, step: int) -> list[dict[str, Any]]:
    """The stream events of token position ``step``: one per choice (the first carries the role)."""
    events = []
    last = plan.steps - 1
    for index, tokens in enumerate(plan.choices):
        if step >= len(tokens):
            continue
        finish = plan.finish_reason if step == last else None
        if plan.kind == "chat":
            if step == 0:
                role = {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
                events.append(_chunk(plan, ident, created, [{**role, "finish_reason": None}]))
            choice = {
                "index": index,
                "delta": {"content": tokens[step]},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"index": index, "text": tokens[step], "logprobs": None, "finish_reason": finish}
        events.append(_chunk(plan, ident, created, [choice]))
    return events


def usage_chunk(plan: Plan, ident: str, created: int) -> dict[str, Any]:
    """The last event when ``stream_options.include_usage``: no choices, the whole request's usage."""
    return {
        "id": ident,
        "object": _object_name(plan, chunk=True),
        "created": created,
        "model": plan.model,
        "choices": [],
        "usage": plan.usage(),
    }


def embeddings_answer(body: object, config: Config) -> dict[str, Any]:
    """``POST /v1/embeddings``: one unit vector per input, float list or base64 float32."""
    body = _object(body)
    model = _model(body, config)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw):
        inputs = [repr(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(item, list) for item in raw):
        inputs = [repr(item) for item in raw]
    else:
        raise RequestError("`input` must be a string or a non-empty list", param="input")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise RequestError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request", param="input")
    dimensions = _int(body, "dimensions", config.embedding_dimensions, 1, MAX_EMBEDDING_DIMENSIONS)
    assert dimensions is not None  # nosec B101  # narrows the type: _int returns its default when absent
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise RequestError("`encoding_format` must be float or base64", param="encoding_format")
    if isinstance(raw, list) and raw and not isinstance(raw[0], str):
        prompt_tokens = len(raw) if isinstance(raw[0], int) else sum(len(item) for item in raw)
    else:
        prompt_tokens = sum(count_tokens(text) for text in inputs)
    data = []
    for index, text in enumerate(inputs):
        vector = embed(text, dimensions)
        encoded: list[float] | str = float32_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def models_answer(config: Config, created: int) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {
        "object": "list",
        "data": [
            {
                "id": config.model,
                "object": "model",
                "created": created,
                "owned_by": "chute-modelsim",
                "root": config.model,
                "max_model_len": config.max_model_len,
            }
        ],
    }
