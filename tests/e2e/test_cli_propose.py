"""`close2d365 propose-mapping` on an extracted org: every org file proposed for review, the open decisions
counted, re-runs that keep reviewed decisions and say which files changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _migrate_support import close_server as close_emulator  # noqa: E402 - tests/e2e is on sys.path

from emulators.orgdata import generate
from migration_assets.cli import main
from migration_assets.demo import copy_defaults
from migration_assets.mapping.config import ORG_FILES
from migration_assets.mapping.scripted_review import accept_proposals


def test_propose_mapping_after_extract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mappings = copy_defaults(tmp_path / "mappings")
    assert not {p.name for p in mappings.glob("*.yaml")} & (set(ORG_FILES) - {"owners.yaml"})
    monkeypatch.setenv("CLOSE2D365_MAPPINGS", str(mappings))
    monkeypatch.delenv("DATAVERSE_URL", raising=False)

    assert main(["propose-mapping"]) == 2, "nothing extracted yet"
    assert "close2d365 extract" in capsys.readouterr().err

    org = generate("tiny", 1)
    with close_emulator(org) as server:
        monkeypatch.setenv("CLOSE_API_KEY", org.api_key)
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        assert main(["extract"]) == 0

    assert main(["propose-mapping"]) == 0
    out = capsys.readouterr().out
    for name in ORG_FILES:
        status = "updated" if name == "owners.yaml" else "written"
        assert any(line.startswith(status) and f"/{name}" in line for line in out.splitlines()), out
    assert "decision(s) to make" in out
    entries = yaml.safe_load((mappings / "custom_fields.yaml").read_text(encoding="utf-8"))["fields"]
    assert entries and all(entry["confirmed"] is False for entry in entries)
    n_fields = sum(len(v) for k, v in org.custom_fields.items() if k != "activity")
    assert len(entries) == n_fields, "every Close custom field has an entry"
    lead = yaml.safe_load((mappings / "lead_status.yaml").read_text(encoding="utf-8"))["statuses"]
    assert list(lead) == [s["label"] for s in org.lead_statuses], "display order"

    # A re-run on the same org changes nothing and says so; reviewed decisions survive it.
    assert main(["propose-mapping"]) == 0
    out = capsys.readouterr().out
    assert all(line.startswith("unchanged") for line in out.splitlines()[: len(ORG_FILES)]), out
    label = org.lead_statuses[0]["label"]
    accept_proposals(mappings, {"lead_status.yaml": {label: {"statecode": 2, "statuscode": 6}}})
    assert main(["propose-mapping"]) == 0
    out = capsys.readouterr().out
    assert "No open decision" in out
    lead = yaml.safe_load((mappings / "lead_status.yaml").read_text(encoding="utf-8"))["statuses"]
    assert lead[label] == {"statecode": 2, "statuscode": 6}
    assert not list(mappings.glob("*.proposed.yaml")), "no side files"
