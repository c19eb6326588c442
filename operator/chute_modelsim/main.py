"""``chute-operator modelsim ARGS`` / ``python -m chute_modelsim ARGS``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from chute_modelsim.config import Config, parse_config
from chute_modelsim.server import ModelServer
from chute_shared import logs

log = logging.getLogger("chute_modelsim")


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT (exit 0); a crash switch exits the process on its own."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = ModelServer(config)
    await server.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
    return 0


def _runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    run: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    return run


def main(argv: list[str]) -> int:
    """Parse ``argv`` (without the program name) and serve."""
    config = parse_config(argv)
    logs.configure(config.log_level.upper())
    return _runner()(serve(config))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
