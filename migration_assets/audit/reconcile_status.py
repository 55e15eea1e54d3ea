"""The reconciliation status of one table (contract F): `ok`, `partial (N rejected, see <file>)` or
`halted (<reason>)`; never `ok` with rows missing.

Every Close object of a table must be accounted for: loaded, rejected (at staging or by Dataverse), or an
expected exclusion (e.g. an attachment above the upload limit, listed for the admin). Tables whose rows are
derived from several Close objects (one Account per distinct lead name) are accounted from their staged rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Counts:
    close_objects: int | None  # None: not a 1:1 image of Close objects (derived rows) or unknown
    staged: int | None  # None: the staged table does not exist
    rejected_at_staging: int
    excluded: int  # expected exclusions (listed in their own report)
    loaded: int
    rejected_at_load: int
    excluded_at_load: int = 0  # staged files the loader measured above the upload limit (listed, not errors)
    # Of `excluded`: records already in the target whose new values were refused; they keep their previous
    # values (accounted for, but the target is not up to date for them: listed in the table's file).
    kept: int = 0


def unaccounted(c: Counts) -> int:
    """Rows neither loaded, rejected nor excluded: Close objects lost before or during the load."""
    staged = c.staged or 0
    missing_load = max(0, staged - c.loaded - c.rejected_at_load - c.excluded_at_load)
    if c.close_objects is None:
        return missing_load
    missing_staging = max(0, c.close_objects - staged - c.rejected_at_staging - c.excluded)
    return missing_load + missing_staging


def status(c: Counts, halted: str | None, rejected_file: str, unplaced: int = 0) -> str:
    """`unplaced`: Close objects the per-source accounting (audit/accounting) found neither loaded,
    rejected, merged, halted nor skipped; the larger of the two counts is reported."""
    if halted:
        return f"halted ({halted})"
    if c.staged is None:
        return "halted (not staged in this warehouse: run the staging step)"
    rejected = c.rejected_at_staging + c.rejected_at_load
    missing = max(unaccounted(c), unplaced)
    parts = [f"{rejected} rejected"] if rejected or missing else []
    if missing:
        parts.append(f"{missing} not accounted for")
    if c.kept:
        parts.append(f"{c.kept} kept with their previous values")
    return f"partial ({', '.join(parts)}, see {rejected_file})" if parts else "ok"
