"""Report files: Markdown + CSV under `$CLOSE2D365_HOME/reports/<run_id>/` (DESIGN §11)."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    md.write_text(markdown + "\n", encoding="utf-8")
    return md, write_csv(run_id, name, rows, columns)


def write_csv(run_id: str, name: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """`<name>.csv` alone (e.g. one file of rejected rows per table next to a run's review)."""
    csv_path = report_dir(run_id) / f"{name}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return csv_path


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(no rows)"
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [
            "" if r.get(c) is None else str(r.get(c)).replace("|", "\\|").replace("\n", " ")[:200]
            for c in columns
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
