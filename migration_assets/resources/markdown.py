"""The one Markdown table of the project: Dagster UI metadata (from a Polars frame) and report files
(from rows of dicts), with long values shortened and pipes escaped so a cell never breaks the table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl


def _cell(value: Any, max_width: int) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def markdown_table(
    data: pl.DataFrame | Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    max_rows: int | None = None,
    max_width: int = 200,
    drop: Sequence[str] = (),
    count_more: bool = False,
) -> str:
    """`data` as a Markdown table: a frame (its columns but `drop`), or rows of dicts with `columns`.

    At most `max_rows` rows (all when None); `count_more` then adds a line saying how many were left
    out. A frame without columns reads "(no columns)", an empty list of rows "(no rows)".
    """
    if isinstance(data, pl.DataFrame):
        frame = data.drop([c for c in drop if c in data.columns])
        names = list(columns or frame.columns)
        if not names:
            return "(no columns)"
        total = frame.height
        rows: Sequence[Sequence[Any]] = (
            frame.select(names).head(max_rows if max_rows is not None else total).rows()
        )
    else:
        if not data:
            return "(no rows)"
        names = list(columns or data[0])
        total = len(data)
        shown = data if max_rows is None else data[:max_rows]
        rows = [[row.get(c) for c in names] for row in shown]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(v, max_width) for v in row) + " |" for row in rows]
    more = total - len(rows)
    return "\n".join(lines) + (f"\n\n… and {more} more" if count_more and more > 0 else "")
