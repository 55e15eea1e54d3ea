"""The CLI prints the reconciliation of the run it just ran, never an older run's report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from migration_assets.audit.reconciliation import RECON_COLUMNS
from migration_assets.runtime import reconciliation_text


def test_only_this_runs_report_is_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSE2D365_HOME", str(tmp_path))
    older = tmp_path / "reports" / "run-old"
    older.mkdir(parents=True)
    with (older / "reconciliation.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, RECON_COLUMNS)
        writer.writeheader()
        writer.writerow({c: "x" for c in RECON_COLUMNS} | {"table": "contact", "status": "ok"})
    text = reconciliation_text("run-new")
    assert "run-new wrote no reconciliation report" in text and "contact" not in text
    assert "contact" in reconciliation_text("run-old") and str(older) in reconciliation_text("run-old")
