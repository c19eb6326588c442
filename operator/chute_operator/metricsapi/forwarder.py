"""Forwarding the custom metrics requests the operator does not answer to the adapter serving v1beta1,
through the kube-apiserver (which authenticates to the adapter as its front proxy), with the
operator's own credentials. What is forwarded and how it is translated: :mod:`forwarding`.

The v1beta1 APIService is read at most every ``check_seconds``, not per request (after a failed
read, every ``retry_seconds``, the last known target kept); a forwarded request is bounded in time
and in the size of its answer, and so is the number of them in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chute_operator.kube import ApiFailure, KubeApi
from chute_operator.metricsapi import forwarding, responses
from chute_operator.metricsapi.adapter_answer import ADAPTER, adapter_answer, failure
from chute_operator.metricsapi.query import Answer
from chute_operator.transport import TooLarge, Unanswered

log = logging.getLogger(__name__)

CHECK_SECONDS = 30.0
"""The v1beta1 APIService is read again after this long (it changes when an adapter comes or goes)."""
RETRY_SECONDS = 5.0
"""After a failed read of that APIService, it is read again this soon (the last known target kept)."""
TIMEOUT_SECONDS = 10.0
"""A forwarded request waits this long for its answer at most (then 504)."""
MAX_BYTES = 2 * 1024 * 1024
"""A forwarded answer longer than this is refused (502): a MetricValueList of some 7 000 pods. One
costs some 7 times its size while parsed, translated and written again."""
MAX_IN_FLIGHT = 8
"""Forwarded requests at once, at most; one more is refused at once (503, Retry-After). With
:data:`MAX_BYTES`, some 130 MiB at worst; the HPA controller asks with 5 workers by default."""
RETRY_AFTER_SECONDS = 1
"""What a refused request is told to wait (client-go, the HPA's client, waits and asks again)."""
RESULTS = ("ok", "refused", "failed", "busy")
"""Forwarded requests counted by result: answered, refused by the adapter (4xx/5xx), no usable answer,
refused by the operator (:data:`MAX_IN_FLIGHT` in flight already)."""


@dataclass
class Forwarder:
    """:meth:`forward` a v1beta2 request to the v1beta1 APIService when another adapter serves it."""

    api: KubeApi
    own: tuple[str, str]
    """The operator's metrics API Service (namespace, name): never forwarded to."""
    check_seconds: float = CHECK_SECONDS
    timeout_seconds: float = TIMEOUT_SECONDS
    max_bytes: int = MAX_BYTES
    max_in_flight: int = MAX_IN_FLIGHT
    clock: Callable[[], float] = time.monotonic
    retry_seconds: float = RETRY_SECONDS
    _target: forwarding.Target | None = None
    _next_read: float = 0.0
    _read_failing: bool = False
    _in_flight: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def target(self) -> forwarding.Target:
        """Whether to forward: the v1beta1 APIService read again once ``check_seconds`` have passed;
        a failed read keeps the last known target (none yet: not forwarding) and is tried again after
        ``retry_seconds``."""
        async with self._lock:
            now = self.clock()
            if self._target is not None and now < self._next_read:
                return self._target
            try:
                found = await self.api.api_service(forwarding.LEGACY_API_SERVICE)
            except (ApiFailure, Unanswered, ValueError) as error:  # ValueError: an answer that is no JSON
                self._next_read = now + self.retry_seconds
                if not self._read_failing:
                    log.warning(
                        "custom metrics API: reading APIService %s failed (%s); %s, reading it again "
                        "every %gs",
                        forwarding.LEGACY_API_SERVICE,
                        error,
                        "keeping the last known target" if self._target else "not forwarding until read",
                        self.retry_seconds,
                    )
                self._read_failing = True
                if self._target is None:
                    self._target = forwarding.Target(
                        False, f"reading APIService {forwarding.LEGACY_API_SERVICE}: {error}"
                    )
                return self._target
            target = forwarding.forward_target(found, self.own)
            if self._target is None or target != self._target or self._read_failing:
                action = "forwarding" if target.forward else "not forwarding"
                log.info("custom metrics API: %s the metrics it does not serve: %s", action, target.why)
            self._target, self._next_read, self._read_failing = target, now + self.check_seconds, False
            return target

    async def forward(self, tail: str, query: Mapping[str, str]) -> Answer | None:
        """The adapter's answer as v1beta2 (its failures as Status documents), or None when nothing
        serves v1beta1 (or ``tail`` names no metric): the operator answers itself."""
        path = forwarding.v1beta1_path(tail)
        if path is None or not (await self.target()).forward:
            return None
        if self._in_flight >= self.max_in_flight:
            self.counts["busy"] += 1
            return _busy(self.max_in_flight)
        self._in_flight += 1
        try:
            answer = await self._ask(path, forwarding.forwarded_query(query))
        finally:
            self._in_flight -= 1
        result = "ok" if answer.status < 400 else "failed" if answer.status in _FAILED else "refused"
        self.counts[result] += 1
        return answer

    async def _ask(self, path: str, params: dict[str, str]) -> Answer:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await self.api.transport.request("GET", path, params, max_bytes=self.max_bytes)
        except TooLarge as error:
            return failure(502, f"{ADAPTER}: {error}")
        except TimeoutError:
            return failure(
                504, f"no answer from {forwarding.LEGACY_API_SERVICE} within {self.timeout_seconds:g}s"
            )
        except Unanswered as error:
            return failure(503, f"{forwarding.LEGACY_API_SERVICE}: {error}")
        return adapter_answer(answer.status, answer.body, answer.headers.get("Location", ""))


_FAILED = (502, 503, 504)


def _busy(in_flight: int) -> Answer:
    message = f"{in_flight} requests to {forwarding.LEGACY_API_SERVICE} in flight already: ask again later"
    details = {"retryAfterSeconds": RETRY_AFTER_SECONDS}
    status = responses.status(503, "ServiceUnavailable", message, details)
    return Answer(503, status, {"Retry-After": str(RETRY_AFTER_SECONDS)})
