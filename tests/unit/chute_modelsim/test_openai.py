"""Requests to plans and answers, without a server: determinism, lengths, usage, errors."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from chute_modelsim.config import Config
from chute_modelsim.openai import (
    RequestError,
    embeddings_answer,
    full_answer,
    models_answer,
    plan_chat,
    plan_text,
    step_chunks,
    usage_chunk,
)
from chute_modelsim.tokens import count_tokens, generate

CONFIG = Config(output_tokens=5, max_model_len=50, embedding_dimensions=4)
CHAT = {"model": "chute-modelsim", "messages": [{"role": "user", "content": "Hello, world!"}]}


def test_count_tokens_words_and_punctuation() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0


def test_generation_is_deterministic_and_joins_into_text() -> None:
    assert generate(42, 4) == generate(42, 4)
    assert generate(42, 4) != generate(43, 4)
    tokens = generate(7, 3)
    assert not tokens[0].startswith(" ")
    assert all(token.startswith(" ") for token in tokens[1:])


def test_chat_plan_default_length_stops() -> None:
    plan = plan_chat(CHAT, CONFIG)
    assert plan.prompt_tokens == 4
    assert len(plan.choices) == 1
    assert len(plan.choices[0]) == 5
    assert plan.finish_reason == "stop"
    assert plan.usage() == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    assert plan_chat(CHAT, CONFIG) == plan, "the same request gets the same tokens"


def test_chat_max_tokens_is_exact_and_finishes_by_length() -> None:
    assert len(plan_chat({**CHAT, "max_tokens": 9}, CONFIG).choices[0]) == 9
    plan = plan_chat({**CHAT, "max_completion_tokens": 2, "max_tokens": 9}, CONFIG)
    assert (len(plan.choices[0]), plan.finish_reason) == (2, "length")


def test_chat_content_parts_n_and_seed() -> None:
    parts = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url"}]}]
    }
    plan = plan_chat({**parts, "n": 3}, CONFIG)
    assert plan.prompt_tokens == 2
    assert len(plan.choices) == 3
    assert plan.completion_tokens == 15
    assert plan_chat({**CHAT, "seed": 1}, CONFIG).choices != plan_chat({**CHAT, "seed": 2}, CONFIG).choices


def test_full_chat_answer_shape() -> None:
    answer = full_answer(plan_chat(CHAT, CONFIG), "chatcmpl-1", 1700000000)
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "chute-modelsim"
    (choice,) = answer["choices"]
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 5
    assert answer["usage"]["total_tokens"] == 9


def test_stream_chunks_rebuild_the_full_answer() -> None:
    plan = plan_chat({**CHAT, "stream": True, "stream_options": {"include_usage": True}}, CONFIG)
    chunks = [chunk for step in range(plan.steps) for chunk in step_chunks(plan, "c", 1, step)]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks)
    assert text == full_answer(plan, "c", 1)["choices"][0]["message"]["content"]
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["usage"] is None for chunk in chunks)
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks]
    assert finishes[-1] == "stop"
    assert set(finishes[:-1]) == {None}
    last = usage_chunk(plan, "c", 1)
    assert last["choices"] == []
    assert last["usage"] == plan.usage()


def test_stream_without_include_usage_has_no_usage_key() -> None:
    plan = plan_chat({**CHAT, "stream": True}, CONFIG)
    assert "usage" not in step_chunks(plan, "c", 1, 0)[0]


def test_text_completion_prompts_and_token_ids() -> None:
    plan = plan_text({"prompt": ["one two", "three"], "max_tokens": 2}, CONFIG)
    assert plan.prompt_tokens == 3
    assert [len(tokens) for tokens in plan.choices] == [2, 2]
    answer = full_answer(plan, "cmpl-1", 1)
    assert answer["object"] == "text_completion"
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    assert plan_text({"prompt": [1, 2, 3]}, CONFIG).prompt_tokens == 3
    assert plan_text({"prompt": [[1, 2], [3]]}, CONFIG).prompt_tokens == 3
    chunk = step_chunks(plan_text({"prompt": "x", "stream": True}, CONFIG), "c", 1, 0)[0]
    assert set(chunk["choices"][0]) == {"index", "text", "logprobs", "finish_reason"}


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ([], None, 400),
        ({"model": "other", "messages": CHAT["messages"]}, "model", 404),
        ({"messages": []}, "messages", 400),
        ({"messages": ["hi"]}, "messages", 400),
        ({**CHAT, "max_tokens": 0}, "max_tokens", 400),
        ({**CHAT, "max_tokens": True}, "max_tokens", 400),
        ({**CHAT, "max_tokens": 47}, "max_tokens", 400),
        ({"messages": [{"role": "user", "content": "w " * 50}]}, "messages", 400),
        ({**CHAT, "stream": "yes"}, "stream", 400),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options", 400),
        ({**CHAT, "n": 17}, "n", 400),
    ],
)
def test_chat_errors(body: object, param: str | None, status: int) -> None:
    with pytest.raises(RequestError) as error:
        plan_chat(body, CONFIG)
    assert (error.value.param, error.value.status) == (param, status)
    assert error.value.body()["error"]["message"]


def test_text_errors() -> None:
    for body in ({"prompt": 3}, {"prompt": []}, {"prompt": ["a"] * 9, "n": 2}):
        with pytest.raises(RequestError):
            plan_text(body, CONFIG)


def test_embeddings_unit_vectors_float_and_base64() -> None:
    answer = embeddings_answer({"input": ["a b", "c"]}, CONFIG)
    assert [item["index"] for item in answer["data"]] == [0, 1]
    vector = answer["data"][0]["embedding"]
    assert len(vector) == 4
    assert math.isclose(sum(value * value for value in vector), 1.0)
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    encoded = embeddings_answer({"input": "a b", "encoding_format": "base64", "dimensions": 6}, CONFIG)
    decoded = struct.unpack("<6f", base64.b64decode(encoded["data"][0]["embedding"]))
    same = embeddings_answer({"input": "a b", "dimensions": 6}, CONFIG)["data"][0]["embedding"]
    assert all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(decoded, same, strict=True))
    assert embeddings_answer({"input": [[1, 2], [3]]}, CONFIG)["usage"]["prompt_tokens"] == 3
    for bad in (
        {"input": 5},
        {"input": []},
        {"input": "x", "encoding_format": "int8"},
        {"input": "x", "dimensions": 0},
    ):
        with pytest.raises(RequestError):
            embeddings_answer(bad, CONFIG)


def test_models_lists_the_one_model() -> None:
    answer = models_answer(CONFIG, 1)
    assert answer["object"] == "list"
    assert [model["id"] for model in answer["data"]] == ["chute-modelsim"]
    assert answer["data"][0]["max_model_len"] == 50
