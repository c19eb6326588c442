"""The kopf wiring hands watch events to the controller on the event loop's own thread."""

from __future__ import annotations

import inspect

import kopf

import chute_operator.handlers  # noqa: F401  (registers the handlers)


def test_every_watch_handler_runs_on_the_event_loop() -> None:
    """kopf runs a plain function in a thread pool; the store and the work queue are not thread-safe,
    and a key queued from another thread wakes no waiting worker (seconds of delay per spec change)."""
    handlers = list(kopf.get_default_registry()._watching.get_all_handlers())
    assert {handler.id for handler in handlers} >= {"chute_event", "child-Deployment", "child-Pod"}
    assert [h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)] == []
