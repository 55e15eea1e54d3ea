"""The dry run's review: every problem of the run in one file, and its verdict.

The asset reports/dry_run_review gathers the problems from the run's events (defs/reports/review); this
module holds them (`Review`), reads the rejected rows of the staged tables and writes under
`$CLOSE2D365_HOME/reports/<run_id>/`:

- `review.md` (+ `review.csv`): each problem, how many rows, the file and setting that fixes it; the rows
  rejected within a threshold; every check's result;
- `rejected_<table>.csv` per table with rejected rows: table, close_id, column, value, reason, cascade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from migration_assets.audit.files import report_dir, write_csv, write_report
from migration_assets.audit.review_problems import (
    PROBLEM_COLUMNS,
    REJECTED_COLUMNS,
    Problem,
    rejected_rows,
    row_problems,
)
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import fetch_polars, table_exists
from migration_assets.target.checks import EXCLUSIONS

CHECK_COLUMNS = ("asset", "check", "result", "description")


@dataclass
class Review:
    """Every problem, check result and rejected row of one dry run."""

    run_id: str
    problems: list[Problem] = field(default_factory=list)  # blocking ones make the plan not clean
    checks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # failed non-blocking checks: listed, not counted
    skipped: list[str] = field(default_factory=list)  # steps not run because a step upstream failed
    rejected: dict[str, pl.DataFrame] = field(default_factory=dict)  # table -> staged.<table>_rejected

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.blocking]


def rejected_frames(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, pl.DataFrame]:
    """Table -> its non-empty staged.<table>_rejected."""
    out = {}
    for table in tables:
        if table_exists(con, "staged", f"{table}_rejected"):
            frame = fetch_polars(con, f'SELECT * FROM staged."{table}_rejected"')
            if frame.height:
                out[table] = frame
    return out


def table_problems(table: str, frame: pl.DataFrame | None, blocking: bool) -> list[Problem]:
    """A table's rejected rows as problems (`blocking` when its gate failed)."""
    if frame is None:
        return []
    excluded = pl.col("check_name").is_in(list(EXCLUSIONS))
    # Expected exclusions (oversize attachments) are listed for the admin, never a reason to stop.
    return row_problems(table, frame.filter(~excluded), blocking) + row_problems(
        table, frame.filter(excluded), False
    )


def render(review: Review, files: dict[str, int], others: list[str]) -> str:
    blocking = review.blocking
    verdict = (
        f"**{len(blocking)} problems**: the plan is not clean. Fix each one where it says, then dry-run again."
        if blocking
        else "**The plan is clean**: `close2d365 run` will not be stopped by a check."
    )
    accepted = [p.row() for p in review.problems if not p.blocking]
    parts = [
        f"# Dry run review (run {review.run_id})",
        "",
        verdict,
        "",
        "## Problems",
        "",
        markdown_table([p.row() for p in blocking], PROBLEM_COLUMNS[:-1]),
        "",
        "## Rejected within the thresholds (these rows will not be loaded)",
        "",
        markdown_table(accepted, PROBLEM_COLUMNS[:-1]),
        "",
        "## Rejected rows, per table",
        "",
        markdown_table([{"file": f, "rows": n} for f, n in files.items()], ["file", "rows"]),
    ]
    if others:
        parts += ["", "## Other reports of this run (same folder)", "", *(f"- {name}" for name in others)]
    if review.warnings:
        parts += ["", "## Warnings (do not block)", "", *(f"- {w}" for w in review.warnings)]
    if review.skipped:
        parts += ["", "## Not run (a step before them failed)", "", ", ".join(review.skipped)]
    parts += ["", "## Every check of the run", "", markdown_table(review.checks, CHECK_COLUMNS)]
    return "\n".join(parts)


def write_review(review: Review) -> tuple[Path, dict[str, int]]:
    """review.md + review.csv + rejected_<table>.csv under the run's report folder; (review.md, files)."""
    files = {}
    for table, frame in sorted(review.rejected.items()):
        path = write_csv(review.run_id, f"rejected_{table}", rejected_rows(table, frame), REJECTED_COLUMNS)
        files[path.name] = frame["_close_id"].n_unique()
    # What other assets of the run wrote there (dropped orphaned values, the workflow inventory, ...).
    others = sorted(
        p.name
        for p in report_dir(review.run_id).iterdir()
        if p.name not in files and not p.name.startswith("review.")
    )
    md, _ = write_report(
        review.run_id,
        "review",
        render(review, files, others),
        [p.row() for p in review.problems],
        PROBLEM_COLUMNS,
    )
    return md, files
