"""CSV cells that a spreadsheet cannot run: a text cell starting with `= + - @` (or a tab / carriage
return, which some spreadsheets skip before one of those) is prefixed with an apostrophe, as OWASP's "CSV
injection" guidance recommends. Close values are user input: `=HYPERLINK(...)` in a lead name must reach the
admin's spreadsheet as text, never as a formula. Numbers are not text cells and stay as they are.
"""

from __future__ import annotations

from typing import Any

import polars as pl

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"


def neutralise(value: Any) -> Any:
    """A cell value safe to open in a spreadsheet (text only; other types unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def neutralise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """`neutralise` over every text column of a frame."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_PATTERN)).then("'" + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text
    )
