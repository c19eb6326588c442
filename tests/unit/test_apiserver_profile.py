"""benchmarks/apiserver_profile.py: a pprof trace listing read without Go, and stacks sorted.

The stacks are excerpts of kube-apiserver 1.36's own profiles (`go tool pprof -traces`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from apiserver_profile import OTHER, kind_of, parse_traces, table  # noqa: E402

TRACES = """File: kube-apiserver
Type: cpu
Duration: 10s, Total samples = 1.33s (13.30%)
-----------+-------------------------------------------------------
      10ms   k8s.io/apiserver/pkg/endpoints/filterlatency.trackStarted.func1
             net/http.HandlerFunc.ServeHTTP
             k8s.io/apiserver/pkg/server.DefaultBuildHandlerChain.WithWarningRecorder.func11
             net/http.HandlerFunc.ServeHTTP
             k8s.io/apiserver/pkg/server/filters.(*timeoutHandler).ServeHTTP.func1
-----------+-------------------------------------------------------
     1.20s   sigs.k8s.io/structured-merge-diff/v6/typed.handleAtom
             k8s.io/apimachinery/pkg/util/managedfields/internal.(*FieldManager).Update
             k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Update
             k8s.io/apiextensions-apiserver/pkg/registry/customresource.(*StatusREST).Update
             k8s.io/apiserver/pkg/endpoints/handlers.(*patcher).patchResource.func2
             k8s.io/apiserver/pkg/endpoints/handlers/finisher.finishRequest.func1
-----------+-------------------------------------------------------
     100ms   k8s.io/apimachinery/pkg/util/managedfields/internal.(*FieldManager).UpdateNoErrors
             k8s.io/apiserver/pkg/endpoints/handlers.CreateResource.createHandler.func1.2
             k8s.io/apiserver/pkg/endpoints/handlers/finisher.finishRequest.func1
-----------+-------------------------------------------------------
      10ms   encoding/json.Marshal
             k8s.io/apiserver/pkg/storage/cacher.(*cacheWatcher).processInterval
-----------+-------------------------------------------------------
      10ms   runtime.memmove
-----------+-------------------------------------------------------
"""


def test_each_stack_is_read_with_its_seconds_leaf_first() -> None:
    samples = parse_traces(TRACES)
    assert [round(seconds, 6) for seconds, _ in samples] == [0.01, 1.2, 0.1, 0.01, 0.01]
    assert samples[1][1][0] == "sigs.k8s.io/structured-merge-diff/v6/typed.handleAtom"
    assert samples[4][1] == ["runtime.memmove"]


def test_a_stack_is_the_first_kind_of_work_one_of_its_frames_names() -> None:
    samples = parse_traces(TRACES)
    assert kind_of(samples[0][1]).startswith("request filters")
    assert kind_of(samples[1][1]) == "Chute status patches: their storage"  # before "patches"
    assert kind_of(samples[2][1]).startswith("creates")
    assert kind_of(samples[3][1]).startswith("serving watches")
    assert kind_of(samples[4][1]) == OTHER


def test_the_table_has_a_row_per_kind_and_a_column_per_phase() -> None:
    text = table({"floor": {"total": 10.0, OTHER: 10.0}, "operator": {"total": 20.0, "GETs": 5.0}})
    assert "| kube-apiserver's CPU on | floor | operator |" in text
    assert "| GETs | 0.0 s (0%) | 5.0 s (25%) |" in text
    assert "| all of it | 10.0 s | 20.0 s |" in text
