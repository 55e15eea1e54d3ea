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


def test_a_long_status_is_cut_on_the_terminal_and_skipped_files_are_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSE2D365_HOME", str(tmp_path))
    folder = tmp_path / "reports" / "run-1"
    folder.mkdir(parents=True)
    reason = "halted (staged/x: check x_target_valid failed: " + "columns not in the target; " * 30 + ")"
    with (folder / "reconciliation.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, RECON_COLUMNS)
        writer.writeheader()
        writer.writerow({c: "1" for c in RECON_COLUMNS} | {"table": "x", "status": reason})
        writer.writerow({c: "1" for c in RECON_COLUMNS} | {"table": "contact", "status": "ok"})
    text = reconciliation_text("run-1")
    assert max(len(line) for line in text.splitlines()) < 250, "one halted row must not widen the table"
    assert (
        "halted (staged/x: check x_target_valid failed:" in text and "in full in reconciliation.csv" in text
    )
    assert "not loaded" not in text  # no oversize list: nothing said
    with (folder / "oversize_attachments.csv").open("w", newline="", encoding="utf-8") as fh:
        fh.write("_close_id,column,value,reason,check_name\na:1,_file_size,9,too big,max_upload_size\n")
        fh.write("b:2,_file_size,9,too big,max_upload_size\n")
    assert "2 files were not loaded: above the target's upload limit" in reconciliation_text("run-1")
