"""The chart's Argo CD health check (charts/chute-operator/files/argocd-health.lua), run as Argo CD runs it.

Argo CD evaluates the script with gopher-lua (Lua 5.1) and the object as the global ``obj``; here
lupa's Lua 5.1 does the same with the exact file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lupa import lua51

HEALTH_CHECK = (
    Path(__file__).resolve().parents[2] / "charts" / "chute-operator" / "files" / "argocd-health.lua"
)
ARGOCD_KEY = "resource.customizations.health.chutes.ai_Chute"
"""The argocd-cm key the script is the value of (group chutes.ai, kind Chute)."""
STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")


@dataclass(frozen=True)
class Health:
    status: str
    message: str


@cache
def _script() -> str:
    return HEALTH_CHECK.read_text()


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON as Argo CD hands it to Lua: objects and arrays become tables (arrays 1-based), nulls nil."""
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> Health:
    """What Argo CD shows for this Chute."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(_script())
    status, message = result["status"], result["message"]
    if status not in STATUSES:
        raise AssertionError(f"the health check returned status {status!r}")
    return Health(str(status), str(message or ""))
