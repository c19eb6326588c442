"""The activator's log lines are JSON whatever a message holds (its own format once did not escape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

NASTY = 'a "quoted" name,\nA second line\tand a \x07 bell, a back\\slash'

# The real main(), with serve() replaced by one that logs and returns: what main() sets up is tested.
SCRIPT = textwrap.dedent(
    f"""
    import logging, sys
    import chute_activator.main as main

    async def serve(config):
        logging.getLogger("chute_activator").info({NASTY!r}, extra={{"chute": "team/llm"}})
        return 0

    main.serve = serve
    sys.exit(main.main(["--log-level", "INFO"]))
    """
)


def test_every_record_is_one_line_of_valid_json() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    entry = json.loads(lines[0])
    assert entry["msg"] == NASTY
    assert entry["level"] == "info"
    assert entry["logger"] == "chute_activator"
    assert entry["chute"] == "team/llm"
