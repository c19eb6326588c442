"""The kopf wiring hands watch events to the controller on the event loop's own thread."""

from __future__ import annotations

import inspect

import kopf
import pytest

import chute_operator.handlers  # registers the handlers


def test_every_watch_handler_runs_on_the_event_loop() -> None:
    """kopf runs a plain function in a thread pool; the store and the work queue are not thread-safe,
    and a key queued from another thread wakes no waiting worker (seconds of delay per spec change)."""
    handlers = list(kopf.get_default_registry()._watching.get_all_handlers())
    assert {handler.id for handler in handlers} == {
        "child-ServiceMonitor",
        "child-InferencePool",
        "child-HTTPRoute",
        "child-Ingress",
    }
    assert [h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)] == []


def test_the_informers_watch_every_kind_kopf_does_not() -> None:
    """Every kind the store keeps is watched once: by kopf (the optional kinds) or by an informer."""
    from chute_operator.kube import OPTIONAL_KINDS, WATCHED_KINDS

    informed, by_kopf = set(chute_operator.handlers.INFORMED), set(chute_operator.handlers.CHILDREN)
    assert by_kopf == set(OPTIONAL_KINDS)
    assert informed | by_kopf == set(WATCHED_KINDS)
    assert not informed & by_kopf


def test_no_change_handlers_so_kopf_needs_no_essence() -> None:
    """NoDiffBase gives kopf an empty essence of every object; only a change handler would read it."""
    registry = kopf.get_default_registry()
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    body = kopf.Body({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"image": "i"}})
    storage = chute_operator.handlers.NoDiffBase()
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None


def test_the_start_up_handler_takes_the_settings_and_catalog_of_the_run_else_reads_them_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`chute-operator run` hands its settings and catalog in the memo; `kopf run` reads the environment."""
    from chute_operator.gpus import builtin_catalog
    from chute_operator.settings import Settings

    settings, catalog = Settings.from_env({"CHUTE_OPERATOR_WORKERS": "3"}), builtin_catalog()
    memo = kopf.Memo(settings=settings, catalog=catalog)
    assert chute_operator.handlers._configuration(memo) == (settings, catalog)
    monkeypatch.setenv("CHUTE_OPERATOR_WORKERS", "5")
    read, loaded = chute_operator.handlers._configuration(kopf.Memo())
    assert read.reconciling.workers == 5
    assert loaded == builtin_catalog()


def test_a_kind_kopf_lists_again_is_relisted_by_the_controller() -> None:
    """kopf relists a kind when its watch cannot resume (relisting.py): the controller relists the
    store's kind of it; kopf's own resources (peering) are not the store's, nor the kinds it does not
    watch."""
    from chute_operator.api import GROUP, PLURAL

    asked: list[tuple[str, str | None]] = []

    class Controller:
        def relist_soon(self, kind: str, namespace: str | None) -> None:
            asked.append((kind, namespace))

    assert chute_operator.handlers.HOOKED  # this kopf tells
    listener = chute_operator.handlers.relist_listener(Controller())  # type: ignore[arg-type]
    listener("monitoring.coreos.com", "servicemonitors", "ns")
    listener("networking.k8s.io", "ingresses", None)
    listener(GROUP, PLURAL, "ns")  # the informers relist the Chutes themselves
    listener("kopf.dev", "kopfpeerings", "ns")
    assert asked == [("ServiceMonitor", "ns"), ("Ingress", None)]
