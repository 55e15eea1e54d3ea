"""staged/lead's hook: the sales part of each Close lead; person fields from its first contact, the Close
status label mapped to statecode/statuscode (applied after create) and kept in `<prefix>_closeoriginalstatus`."""

import duckdb
import polars as pl

from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.staging_source import lead_contacts


def with_contacts(con: duckdb.DuckDBPyConnection, src: pl.DataFrame) -> pl.DataFrame:
    """Close embeds contacts in the lead; the extraction keeps them in close.contacts."""
    return src.drop("contacts", strict=False).join(
        lead_contacts(con), left_on="id", right_on="lead_id", how="left"
    )


HOOK = StagingHook(reads=("contacts",), prepare=with_contacts)
