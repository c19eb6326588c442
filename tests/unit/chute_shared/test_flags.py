"""Flags that fall back to environment variables: the flag wins, then the variable, then the default."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import pytest

from chute_shared.flags import EnvFlags, at_least, boolean, env_name, optional, port

SHARED = Path(__file__).resolve().parents[3] / "operator" / "chute_shared"


def _flags(environ: dict[str, str]) -> EnvFlags:
    options = EnvFlags(argparse.ArgumentParser(prog="prog"), "APP_", environ)
    options.add("--port", port, 8080, "serving port")
    options.add("--workers", at_least(1), 1, "workers")
    options.add("--crash-after", optional(at_least(1)), None, "a switch")
    options.add("--verbose", boolean, False, "say more", action="store_true")
    options.add("--item", str, (), "repeatable", from_env=lambda text: text.split(";"), action="append")
    return options


def test_the_variable_is_named_from_the_prefix_and_the_flag() -> None:
    assert env_name("CHUTE_SIDECAR_", "--admin-port") == "CHUTE_SIDECAR_ADMIN_PORT"
    assert _flags({}).env_name("--crash-after") == "APP_CRASH_AFTER"


def test_defaults_without_flag_or_variable() -> None:
    args = _flags({}).parse([])
    assert (args.port, args.workers, args.crash_after, args.verbose, args.item) == (8080, 1, None, False, ())


def test_the_variable_fills_in_typed() -> None:
    environ = {"APP_PORT": "9000", "APP_CRASH_AFTER": "3", "APP_VERBOSE": "yes", "APP_ITEM": "a;b"}
    args = _flags(environ).parse([])
    assert (args.port, args.crash_after, args.verbose, args.item) == (9000, 3, True, ["a", "b"])
    assert _flags({"APP_CRASH_AFTER": "off"}).parse([]).crash_after is None


def test_the_flag_wins_over_the_variable() -> None:
    environ = {"APP_PORT": "9000", "APP_CRASH_AFTER": "3", "APP_VERBOSE": "no", "APP_ITEM": "a;b"}
    args = _flags(environ).parse(["--port", "7000", "--crash-after", "off", "--verbose", "--item", "c"])
    assert (args.port, args.crash_after, args.verbose, args.item) == (7000, None, True, ["c"])
    assert _flags({"APP_PORT": "not a port"}).parse(["--port", "1"]).port == 1  # the variable is not read


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"APP_PORT": "http"}, "APP_PORT (--port)"),
        ({"APP_PORT": "70000"}, "APP_PORT (--port)"),
        ({"APP_WORKERS": "0"}, "APP_WORKERS (--workers)"),
        ({"APP_VERBOSE": "maybe"}, "APP_VERBOSE (--verbose)"),
    ],
)
def test_a_bad_value_in_the_environment_exits_2_naming_the_variable(
    environ: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _flags(environ).parse([])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert named in error
    assert repr(next(iter(environ.values()))) in error


def test_a_bad_flag_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _flags({}).parse(["--workers", "0"])
    assert exit_info.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_the_help_names_each_variable_and_default() -> None:
    text = _flags({}).parser.format_help()
    assert "(env APP_PORT, default 8080)" in text
    assert "(env APP_CRASH_AFTER)" in text


def test_the_shared_package_imports_only_the_standard_library() -> None:
    for source in SHARED.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("chute_shared", "__future__"), (
                    f"{source.name} imports {module}"
                )
