"""Report files: Markdown + CSV under `$CLOSE2D365_HOME/reports/<run_id>/` (DESIGN §11)."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from migration_assets.audit.csv_safe import neutralise, neutralise_frame
from migration_assets.resources.warehouse import default_home


def report_dir(run_id: str) -> Path:
    path = default_home() / "reports" / run_id
    path.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)  # reports quote customer records (spot checks)
    except PermissionError:
        pass
    return path


def write_report(
    run_id: str, name: str, markdown: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[Path, Path]:
    md = report_dir(run_id) / f"{name}.md"
    with private_file(md) as fh:
        fh.write(markdown + "\n")
    return md, write_csv(run_id, name, rows, columns)


def private_file(path: Path) -> TextIO:
    """`path` opened for writing (truncated), readable by the owner only: reports quote customer data."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_TRUNC
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


def oversize_csv_path() -> Path:
    """The admin's list of attachments too big for the target: written by staging (declared sizes), then
    rewritten by the annotation load with the files it measured above the limit added."""
    return default_home() / "reports" / "oversize_attachments.csv"


def write_frame_csv(path: Path, frame: pl.DataFrame) -> Path:
    """A frame as CSV at `path` (owner-only, spreadsheet formulas neutralised)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with private_file(path) as fh:
        neutralise_frame(frame).write_csv(fh)
    return path


def write_csv(run_id: str, name: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """`<name>.csv` alone (e.g. one file of rejected rows per table next to a run's review)."""
    csv_path = report_dir(run_id) / f"{name}.csv"
    with private_file(csv_path) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else neutralise(row.get(k)) for k in columns})
    return csv_path
