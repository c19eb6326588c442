"""Deterministic fake tokens: counting a prompt, generating a completion, embedding a text.

Nothing here is a real tokenizer: a token is a word or a single punctuation character, which is
close enough to make counts plausible and exactly reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import zlib

_TOKEN = re.compile(r"\w+|[^\w\s]")
VOCABULARY = (
    "the", "model", "answers", "with", "simulated", "tokens", "that", "are", "always", "the",
    "same", "for", "one", "prompt", "and", "never", "need", "a", "GPU", "so", "tests", "can",
    "count", "them", "while", "latency", "stays", "what", "its", "flags", "say", "chute",
    "serves", "requests", "through", "sidecar", "which", "measures", "every", "stream", "of",
    "words", "in", "order", "to", "check", "usage", "is", "reported", "back", "by", "this",
    "server", "quickly", "slowly", "again", "here", "now", "then", "more", "less", "fast",
    "slow", "done",
)  # fmt: skip


def count_tokens(text: str) -> int:
    """Words and punctuation characters in ``text``."""
    return len(_TOKEN.findall(text))


def seed_of(text: str, salt: int = 0) -> int:
    """A stable seed for ``text`` (the same across processes, unlike ``hash``)."""
    return zlib.crc32(f"{salt}:{text}".encode())


def generate(seed: int, count: int) -> list[str]:
    """``count`` tokens for ``seed``; each after the first starts with a space, so ``"".join`` reads."""
    words = [VOCABULARY[(seed + index * 31) % len(VOCABULARY)] for index in range(count)]
    return [word if index == 0 else " " + word for index, word in enumerate(words)]


def embed(text: str, dimensions: int) -> list[float]:
    """A unit vector of ``dimensions`` floats derived from ``text``."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        values.extend((byte - 127.5) / 127.5 for byte in digest)
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def float32_base64(values: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
