"""What the loader takes from staging's cache of the target (target/metadata_cache.py, `staged.target_*`)
instead of asking Dataverse again in every load: the currencies a bind by ISO code resolves to, and the
upload limit. Staging validated the staged rows against the same cache, so the load agrees with it; a
table of the cache that is missing leaves the loader to ask Dataverse, as before."""

from __future__ import annotations

import duckdb

from migration_assets.resources.warehouse import table_exists

SCHEMA = "staged"
CURRENCY = "transactioncurrency"
CURRENCY_KEY = "isocurrencycode"


def cached_key_binds(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], str]:
    """Binds by alternate key the cache resolves, as the loader's key-bind cache holds them:
    (table, key column, value) -> "/<entity set>(<id>)". Today: currencies by ISO code."""
    if not (
        table_exists(con, SCHEMA, "target_currencies") and table_exists(con, SCHEMA, "target_entity_sets")
    ):
        return {}
    sets = con.execute(
        "SELECT entity_set FROM staged.target_entity_sets WHERE table_name = ?", [CURRENCY]
    ).fetchall()
    if not sets or not sets[0][0]:
        return {}
    entity_set = str(sets[0][0])
    rows = con.execute(
        f"SELECT {CURRENCY_KEY}, transactioncurrencyid FROM staged.target_currencies "
        f"WHERE {CURRENCY_KEY} IS NOT NULL AND transactioncurrencyid IS NOT NULL"
    ).fetchall()
    return {(CURRENCY, CURRENCY_KEY, str(iso)): f"/{entity_set}({str(rid).lower()})" for iso, rid in rows}


def cached_max_upload(con: duckdb.DuckDBPyConnection) -> int | None:
    """organization.maxuploadfilesize as the cache read it; None without a cache."""
    if not table_exists(con, SCHEMA, "target_organization"):
        return None
    row = con.execute("SELECT maxuploadfilesize FROM staged.target_organization LIMIT 1").fetchall()
    return int(row[0][0]) if row and row[0][0] is not None else None
