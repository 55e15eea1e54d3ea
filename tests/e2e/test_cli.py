"""The command line as a user meets it: the demo's count table, and clear one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import generate
from migration_assets.cli import main


def test_demo_tiny_extracts_every_object_and_prints_counts(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--size", "tiny"]) == 0
    out = capsys.readouterr().out
    org = generate("tiny", 1)
    for table, expected in org.truth["counts"].items():
        line = next(line for line in out.splitlines() if line.startswith(table + " "))
        assert line.split()[1:] == [str(expected), str(expected), "ok"], line
    assert (isolated_home / "dagster_home" / "dagster.yaml").exists(), (
        "the run is recorded on the shared instance"
    )


def test_extract_without_api_key_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "CLOSE_API_KEY is not set" in err and "Traceback" not in err


def test_extract_with_wrong_api_key_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with CloseEmulatorServer(generate("tiny", 1)) as server:
        monkeypatch.setenv("CLOSE_API_KEY", "api_wrong")
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "CLOSE_API_KEY" in err
    assert "Traceback" not in err
