"""Before a run starts, the command checks what it can check in seconds: the mappings load, the Close key
works, every Dataverse application user gets a token. Each problem is one line naming what to change, all
at once, and the run is not started (no extraction first, no line per asset)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import generate
from migration_assets.cli import main
from migration_assets.demo import demo_dataverse_env
from migration_assets.runtime import instance

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bad_secret_broken_mapping_and_bad_key_are_all_reported_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    org = generate("tiny", 1)
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "settings.yaml").write_text("publisher_prefix: [unclosed\n", encoding="utf-8")
    with CloseEmulatorServer(org) as close_server, EmulatorServer(DataverseEmulatorConfig()) as dv:
        env = {
            **demo_dataverse_env(dv),
            "CLOSE_API_KEY": "api_wrong",
            "CLOSE_BASE_URL": close_server.base_url,
            "CLOSE2D365_MAPPINGS": str(mappings),
        }
        env["DATAVERSE_CLIENT_SECRETS"] = "not-the-secret"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for command in ("run", "dry-run"):
            assert main([command]) == 2
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.startswith("  - ")]
            assert len(lines) == 3, err
            assert "mappings:" in lines[0] and "settings.yaml" in lines[0]
            assert "Close" in lines[1] and "CLOSE_API_KEY" in lines[1] and "401" in lines[1]
            assert "DATAVERSE_CLIENT_SECRETS" in lines[2] and env["DATAVERSE_CLIENT_IDS"] in lines[2]
            assert "Traceback" not in err
        assert main(["extract"]) == 2  # extraction needs only Close, and says so before starting
        assert "CLOSE_API_KEY" in capsys.readouterr().err
    assert not instance().get_run_records(), "no run was started"


def test_an_unreachable_close_fails_the_check_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    monkeypatch.setenv("CLOSE_API_KEY", "api_x")
    monkeypatch.setenv("CLOSE_BASE_URL", f"http://127.0.0.1:{_free_port()}/api/v1/")  # nothing listens
    assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "CLOSE_BASE_URL" in err and "connection" in err.lower()
    assert not instance().get_run_records()


def test_settings_that_cannot_work_are_named_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CLOSE2D365_HOME", str(blocker / "home"))  # cannot be created: its parent is a file
    monkeypatch.setenv("CLOSE2D365_CLOSE_SOURCE", "ftp")
    monkeypatch.setenv("CLOSE_API_KEY", "api_x")
    assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "CLOSE2D365_HOME" in err and "not a writable folder" in err
    assert "CLOSE2D365_CLOSE_SOURCE is 'ftp': use one of api, export, file" in err
    assert "unexpected error" not in err and "Traceback" not in err

    monkeypatch.setenv("CLOSE2D365_HOME", str(isolated_home))
    monkeypatch.setenv("CLOSE2D365_CLOSE_SOURCE", "file")
    monkeypatch.setenv("CLOSE2D365_EXPORT_FILE", str(tmp_path / "missing.json"))
    monkeypatch.setenv("DATAVERSE_CA_BUNDLE", str(tmp_path / "missing-ca.pem"))
    for name, value in {
        "DATAVERSE_URL": "https://x.crm.dynamics.com",
        "DATAVERSE_TENANT_ID": "t",
        "DATAVERSE_CLIENT_IDS": "c",
        "DATAVERSE_CLIENT_SECRETS": "s",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["dry-run"]) == 2
    err = capsys.readouterr().err
    assert "CLOSE2D365_EXPORT_FILE" in err and "missing.json" in err
    assert "DATAVERSE_CA_BUNDLE" in err and "missing-ca.pem" in err
