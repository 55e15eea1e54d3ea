"""The reconciliation as the UI draws it: a table in the asset's metadata, numbers as numbers."""

from __future__ import annotations

import dagster as dg

from migration_assets.audit.reconciliation import RECON_COLUMNS
from migration_assets.defs.reports.reconciliation import per_table


def test_per_table_keeps_every_row_and_column() -> None:
    rows = [
        {**{c: "3" for c in RECON_COLUMNS}, "table": "lead", "status": "partial (1 rejected, see x.csv)"},
        {**{c: "0" for c in RECON_COLUMNS}, "table": "c2d_visit", "status": "halted (check failed)"},
    ]
    value = per_table(rows)
    assert isinstance(value, dg.TableMetadataValue)
    assert [c.name for c in value.schema.columns] == RECON_COLUMNS
    first = value.records[0].data
    assert first["table"] == "lead" and first["loaded"] == 3 and first["status"].startswith("partial")
    assert [r.data["table"] for r in value.records] == ["lead", "c2d_visit"]
