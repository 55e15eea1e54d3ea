"""`close2d365 propose-mapping` on an extracted org: reviewable files, never overwriting a reviewed mapping."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import generate
from migration_assets.cli import main
from migration_assets.runtime import REPO_ROOT


def test_propose_mapping_after_extract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO_ROOT / "mappings", mappings)
    (mappings / "custom_fields.yaml").unlink(missing_ok=True)
    monkeypatch.setenv("CLOSE2D365_MAPPINGS", str(mappings))
    monkeypatch.delenv("DATAVERSE_URL", raising=False)

    assert main(["propose-mapping"]) == 2, "nothing extracted yet"
    assert "close2d365 extract" in capsys.readouterr().err

    org = generate("tiny", 1)
    with CloseEmulatorServer(org) as server:
        monkeypatch.setenv("CLOSE_API_KEY", org.api_key)
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        assert main(["extract"]) == 0

    assert main(["propose-mapping"]) == 0
    out = capsys.readouterr().out
    proposal = yaml.safe_load((mappings / "custom_fields.yaml").read_text(encoding="utf-8"))
    entries = proposal["fields"]
    assert entries and all(entry["confirmed"] is False for entry in entries)
    n_fields = sum(len(v) for k, v in org.custom_fields.items() if k != "activity")
    assert len(entries) >= n_fields, "every Close custom field has an entry"
    assert "nothing loads until it is confirmed" in out

    # A reviewed file is never overwritten silently.
    assert main(["propose-mapping"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["propose-mapping", "--force"]) == 0
