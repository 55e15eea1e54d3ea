"""The command line's own pages: every subcommand is described, every option has a help text and shows its
default, and `--debug` is accepted before or after the subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from migration_assets.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_subcommand_has_a_description_and_every_option_a_help_text() -> None:
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"demo", "emulators", "run", "delta", "cutover", "dry-run", "rollback", "ui"} <= set(commands)
    for name, sub in commands.items():
        assert sub.description and len(sub.description) > 20, name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
        page = sub.format_help()
        assert sub.description.split()[0] in page and "--debug" in page, name
    assert all(a.help for a in parser._actions)


def test_help_pages_show_the_defaults() -> None:
    commands = _subcommands(build_parser())
    emulators = " ".join(commands["emulators"].format_help().split())
    for default in ("(default: 8765)", "(default: 8766)", "(default: 127.0.0.1)", "(default: demo)"):
        assert default in emulators, emulators
    assert "(default: 15.0)" in " ".join(commands["cutover"].format_help().split())
    assert "(default: 3000)" in " ".join(commands["ui"].format_help().split())
    # A flag or an option without a default shows none ("default: False" / "None" says nothing).
    assert "(default: False)" not in emulators and "(default: None)" not in commands["rollback"].format_help()


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "ui", "--port", "{port}"],
        ["ui", "--debug", "--port", "{port}"],
        ["ui", "--port", "{port}", "--debug"],
    ],
)
def test_debug_is_accepted_before_or_after_the_subcommand(argv: list[str], busy_port: int) -> None:
    args = [a.format(port=busy_port) for a in argv]
    assert build_parser().parse_args(args).debug is True
    # With --debug, a user error raises instead of printing one line: the option took effect wherever it was.
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{busy_port}"):
        main(args)


def test_without_debug_an_error_is_one_line(busy_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["ui"]).debug is False
    assert main(["ui", "--port", str(busy_port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "unexpected error" not in err
    assert f"127.0.0.1:{busy_port}" in err and "already in use" in err and "--port" in err


def test_the_demo_checks_its_ui_port_before_the_run(
    busy_port: int, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    assert main(["demo", "--size", "tiny", "--ui", "--ui-port", str(busy_port)]) == 2
    assert not isolated_home.exists(), "stopped before the run: no warehouse, no instance"
    err = capsys.readouterr().err
    assert f"127.0.0.1:{busy_port}" in err and "already in use" in err and "--ui-port PORT" in err, err
