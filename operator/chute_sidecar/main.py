"""``chute-operator sidecar ARGS`` / ``python -m chute_sidecar ARGS``."""

from __future__ import annotations

import asyncio
import os
import sys

from prometheus_client import disable_created_metrics

from chute_shared import logs
from chute_sidecar.app import Sidecar
from chute_sidecar.config import parse_config
from chute_sidecar.shutdown import serve


def _runner() -> object:
    """uvloop's ``run`` when importable (and not disabled with ``CHUTE_SIDECAR_LOOP=asyncio``)."""
    if os.environ.get("CHUTE_SIDECAR_LOOP", "auto") != "asyncio":
        try:
            import uvloop

            return uvloop.run
        except ImportError:
            pass
    return asyncio.run


def main(argv: list[str]) -> int:
    """Parse ``argv`` (without the program name), run until SIGTERM, return the exit code."""
    config = parse_config(argv)
    logs.configure(config.log_level, config.log_format, silence=("aiohttp.access",))
    disable_created_metrics()  # no ``*_created`` series; process-wide, and this process is the sidecar's

    async def run() -> int:
        return await serve(Sidecar(config))

    runner = _runner()
    code: int = runner(run())  # type: ignore[operator]
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
