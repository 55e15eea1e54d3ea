"""What the source checks on the close/* tables look for (DESIGN §6): records that cannot be read as the
source holds them (malformed ids, conflicting copies of an id, unreadable numbers and dates, negative money)
and references to records that were not extracted. Each returns the failing rows, not only a count; the
checks themselves (blocking or not, their severity) are declared in defs/close/checks.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import polars as pl

from migration_assets.extract.duplicates import CONFLICTS, QUARANTINE_TABLE, ensure_conflicts_table
from migration_assets.extract.tables import TABLES, TS
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, table_exists

SCHEMA = "close"
# Money fields in Close are whole cents and never negative (an opportunity's value): a negative amount is
# a data error to fix in Close, not something to load silently.
NON_NEGATIVE = {"opportunities": ("value",)}
READ_TYPES = (pl.Int64, TS)  # typed columns whose value a source can hold in a form that cannot be read
REASON = {pl.Int64: "not a whole number in the Int64 range", TS: "not a date and time"}


def id_pattern(table: str) -> str:
    """The Close id format of a table: its prefix + the base62 random part."""
    spec = TABLES[table]
    prefixes = "|".join(p.rstrip("_") for p in spec.id_prefixes)
    alternatives = "|".join(f"[0-9A-Za-z]{{{n}}}" for n in spec.id_lengths)
    return f"^({prefixes})_({alternatives})$"


def _json_path(key: str) -> str:
    return "$." + key.replace("'", "").replace('"', "")


def problem_queries(table: str) -> list[str]:
    """SELECTs of (id, column, value, reason): malformed ids, conflicting copies of an id, unreadable
    numbers and dates, negative money. Only rows whose typed column is NULL have their JSON parsed: normally
    very few."""
    spec, ref = TABLES[table], f"{SCHEMA}.{table}"
    pattern = id_pattern(table)
    parts = [
        f"SELECT id, 'id' AS \"column\", coalesce(id, '(none)') AS value, 'malformed id (expected {pattern})' "
        f"AS reason FROM {ref} WHERE id IS NULL OR NOT regexp_full_match(id, '{pattern}')"
    ]
    has_raw = "raw" in spec.schema
    if has_raw:
        parts.append(
            f"SELECT id, 'id' AS \"column\", copies || ' copies' || coalesce(', leads ' || lead_ids, '') AS value, "
            "'delivered more than once with different content and the same date_updated; the tool will not "
            f"pick one' AS reason FROM {CONFLICTS} WHERE table_name = '{table}'"
        )
    for c in spec.columns:
        if c.dtype not in READ_TYPES or not c.key or not has_raw:
            continue
        path = _json_path(c.key)
        parts.append(
            f"SELECT id, '{c.name}' AS \"column\", json_extract(raw, '{path}')::VARCHAR AS value, "
            f"'{REASON[c.dtype]}' AS reason FROM {ref} "
            f"WHERE {c.name} IS NULL AND json_type(json_extract(raw, '{path}')) <> 'NULL'"
        )
    if table == "leads":
        parts.append(
            f"SELECT id, '(export line)' AS \"column\", line AS value, reason FROM {QUARANTINE_TABLE}"
        )
    parts += [
        f"SELECT id, '{name}' AS \"column\", {name}::VARCHAR AS value, 'negative amount' AS reason "
        f"FROM {ref} WHERE {name} < 0"
        for name in NON_NEGATIVE.get(table, ())
    ]
    return parts


def unreadable_records(warehouse: WarehouseResource, table: str) -> tuple[int, pl.DataFrame]:
    """(rows of close.<table>, its records that cannot be migrated as the source holds them)."""
    total = row_count(warehouse, table)
    with warehouse.connect() as con:
        ensure_conflicts_table(con)  # a table written before this check existed has no list yet
        bad = fetch_polars(con, " UNION ALL ".join(problem_queries(table)) + ' ORDER BY id, "column"')
    return total, bad


def problem_summary(bad: pl.DataFrame) -> str:
    """`<n> <column> <reason>` per kind of problem, in order of first appearance."""
    return "; ".join(
        f"{n} {column} {reason}"
        for (column, reason), n in Counter(zip(bad["column"], bad["reason"], strict=True)).items()
    )


def orphan_references(
    warehouse: WarehouseResource, table: str, column: str, parent: str
) -> tuple[int, pl.DataFrame]:
    """(rows of close.<table> with a `column`, those whose `column` is no id of close.<parent>)."""
    total = int(
        warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.{table} WHERE {column} IS NOT NULL")["n"][0]
    )
    bad = warehouse.read(
        f"SELECT c.id, c.{column} FROM {SCHEMA}.{table} c ANTI JOIN {SCHEMA}.{parent} p "
        f"ON c.{column} = p.id WHERE c.{column} IS NOT NULL ORDER BY c.id"
    )
    return total, bad


def not_extracted(warehouse: WarehouseResource, tables: Sequence[str]) -> list[str]:
    with warehouse.connect() as con:  # one connection for all of them, not one each
        return [t for t in tables if not table_exists(con, SCHEMA, t)]


def row_count(warehouse: WarehouseResource, table: str) -> int:
    return int(warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.{table}")["n"][0])
