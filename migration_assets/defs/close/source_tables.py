"""Every table Close itself holds, as one subsettable multi_asset: one step, `close__source_tables`,
reads the selected tables in one pass over Close (`extract.sources.ClosePass`).

When a selected lead table comes from an export, the pass requests it first; Close builds it while the
configuration objects are read through the API, and it is split once (in parallel worker processes) for
every lead table. Selecting some of these assets reads only those tables. File metadata, derived from
the extracted activities, is declared on its own (`files.py`).
"""

from __future__ import annotations

from migration_assets.defs.close import config_objects, lead_tables
from migration_assets.defs.close._common import close_pass_asset

source_tables = close_pass_asset("source_tables", {**config_objects.DESCRIPTIONS, **lead_tables.DESCRIPTIONS})
