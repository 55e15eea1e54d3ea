"""The admin's list of attachments too big for the target, complete after the annotation load.

Staging lists the files Close declares above the limit (`staged.annotation_rejected`, check
`max_upload_size`). The loader measures each body it downloads and refuses one above the limit (Close's
declared size can be smaller than the body, and call recordings declare none) with OVERSIZE_CODE in the
ledger. After the load, the list is rewritten as both: the staging-time entries and this run's load-time
refusals, in the same columns, so no entry of either is lost.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from migration_assets.audit.files import oversize_csv_path, write_frame_csv
from migration_assets.load.file_body import OVERSIZE_CODE
from migration_assets.resources.warehouse import fetch_polars, table_exists
from migration_assets.target.checks import MAX_UPLOAD_SIZE, REJECTION_SCHEMA

CHECK = MAX_UPLOAD_SIZE  # the staging check's name: the reports count both kinds as expected exclusions
COLUMNS = ", ".join(f'"{c}"' for c in REJECTION_SCHEMA)


def _has_column(con: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND column_name = ?",
        [schema, table, column],
    ).fetchall()
    return bool(row and row[0][0])


def oversize_files(con: duckdb.DuckDBPyConnection, run_id: str, table: str = "annotation") -> pl.DataFrame:
    """Staging-time oversize entries plus the files run `run_id` refused at load for their measured size
    (the value is the size Close declared; the reason gives both sizes)."""
    frames = [pl.DataFrame(schema=REJECTION_SCHEMA)]
    if table_exists(con, "staged", f"{table}_rejected"):
        frames.append(
            fetch_polars(
                con, f"SELECT {COLUMNS} FROM staged.\"{table}_rejected\" WHERE check_name = '{CHECK}'"
            )
        )
    if table_exists(con, "ledger", "rejected"):
        declared = "NULL"
        join = ""
        if table_exists(con, "staged", table) and _has_column(con, "staged", table, "_file_size"):
            # One staged row per Close id: the declared size of the refused file.
            declared = "CAST(s._file_size AS VARCHAR)"
            join = f'LEFT JOIN (SELECT DISTINCT _close_id, _file_size FROM staged."{table}") s ON s._close_id = r.close_id'
        frames.append(
            fetch_polars(
                con,
                f"SELECT r.close_id AS _close_id, '_file_size' AS \"column\", {declared} AS value, "
                f"r.message AS reason, '{CHECK}' AS check_name FROM ledger.rejected r {join} "
                "WHERE r.run_id = ? AND r.table_name = ? AND r.code = ? ORDER BY r.rejected_at, r.close_id",
                [run_id, table, OVERSIZE_CODE],
            )
        )
    frame = pl.concat([f.cast(REJECTION_SCHEMA) for f in frames], how="vertical")  # type: ignore[arg-type]
    # A file the loader refused although staging listed it already (the limit changed in between) once.
    return frame.unique(subset=["_close_id"], keep="first", maintain_order=True)


def write_oversize_list(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[Path, int]:
    """Rewrite the admin's oversize list with this run's load-time refusals added; (path, entries)."""
    frame = oversize_files(con, run_id)
    return write_frame_csv(oversize_csv_path(), frame), frame.height
