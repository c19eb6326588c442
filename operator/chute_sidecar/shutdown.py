"""Signals: the first SIGTERM/SIGINT starts a graceful shutdown, a second one hurries it."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from chute_sidecar.app import Sidecar

log = logging.getLogger("chute_sidecar.shutdown")


async def serve(sidecar: Sidecar) -> int:
    """Run until signalled, then shut down gracefully; the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second signal: skipping the rest of the drain", extra={"signal": name})
            hurry.set()
        else:
            log.info("signal received: shutting down", extra={"signal": name})
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await sidecar.start()
    except OSError as error:
        log.error("cannot start", extra={"error": str(error)})
        await sidecar.stop()
        return 1
    gc.freeze()  # start-up objects stay out of later collections: shorter GC pauses on the hot path
    await stop.wait()
    await sidecar.shutdown(hurry)
    return 0
