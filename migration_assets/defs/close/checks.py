"""Source checks on the close/* tables (DESIGN §6): every record readable (ids well formed, no conflicting
copies, numbers and dates read, no negative amounts), referential integrity, activities present.

Failing rows are listed in the check metadata as a Markdown table, not only counted. Checks whose
failure means the data cannot be migrated correctly (malformed ids, records pointing at leads that were
not extracted, a source without activities) are blocking; a contact reference that does not resolve is
a warning (Close keeps activities of deleted contacts; the loader then leaves the party unresolved).
In the `dry_run` job a failed blocking check is reported with severity WARN, so that staging still runs
and shows its own problems in the same run (defs/jobs.py).
"""

# No `from __future__ import annotations`: Dagster reads the resource annotations at definition time.
from collections import Counter
from collections.abc import Sequence

import dagster as dg
import polars as pl

from migration_assets.clients.close.export_file import CSV_EXPORT_EXPLANATION
from migration_assets.defs.close._common import CELL_WIDTH, GROUP, SCHEMA
from migration_assets.defs.jobs import gate_severity
from migration_assets.extract.duplicates import CONFLICTS, QUARANTINE_TABLE, ensure_conflicts_table
from migration_assets.extract.tables import ACTIVITY_TABLE_TYPES, TABLES, TS
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars

SHOW = 20


def _key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


def _missing(warehouse: WarehouseResource, tables: Sequence[str]) -> list[str]:
    return [t for t in tables if not warehouse.table_exists(SCHEMA, t)]


def _not_evaluated(missing: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"Not evaluated: table(s) {', '.join(f'{SCHEMA}.{t}' for t in missing)} not extracted yet.",
    )


def _result(bad: pl.DataFrame, total: int, what: str, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    metadata = {"failing_rows": len(bad), "checked_rows": total}
    if len(bad):
        metadata["failures"] = dg.MetadataValue.md(markdown_table(bad, max_rows=SHOW, max_width=CELL_WIDTH))
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        severity=severity,
        description=f"{len(bad)} of {total} rows {what}" if len(bad) else f"all {total} rows ok",
        metadata=metadata,
    )


def id_pattern(table: str) -> str:
    """The Close id format of a table: its prefix + the base62 random part."""
    spec = TABLES[table]
    prefixes = "|".join(p.rstrip("_") for p in spec.id_prefixes)
    alternatives = "|".join(f"[0-9A-Za-z]{{{n}}}" for n in spec.id_lengths)
    return f"^({prefixes})_({alternatives})$"


# Money fields in Close are whole cents and never negative (an opportunity's value): a negative amount is
# a data error to fix in Close, not something to load silently.
NON_NEGATIVE = {"opportunities": ("value",)}
READ_TYPES = (pl.Int64, TS)  # typed columns whose value a source can hold in a form that cannot be read
REASON = {pl.Int64: "not a whole number in the Int64 range", TS: "not a date and time"}


def _json_path(key: str) -> str:
    return "$." + key.replace("'", "").replace('"', "")


def _problem_queries(table: str) -> list[str]:
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


def _readable_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=_key(table),
        name="records_readable",
        blocking=True,
        description=f"Every record of close.{table} was read as the source holds it: ids well formed "
        f"({id_pattern(table)}), no id delivered twice "
        "with different, equally new content (e.g. one contact under two leads), no number or date that "
        "could not be read, no negative amount. Such records are listed, never merged or loaded empty.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        total = int(warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.{table}")["n"][0])
        with warehouse.connect() as con:
            ensure_conflicts_table(con)  # a table written before this check existed has no list yet
            bad = fetch_polars(con, " UNION ALL ".join(_problem_queries(table)) + ' ORDER BY id, "column"')
        reasons = "; ".join(
            f"{n} {column} {reason}"
            for (column, reason), n in Counter(zip(bad["column"], bad["reason"], strict=True)).items()
        )
        what = f"cannot be migrated as the source holds them ({reasons}); correct them in Close and extract again"
        return _result(bad, total, what, gate_severity(context))

    return _check


def _reference_check(
    table: str, column: str, parent: str, *, blocking: bool, name: str
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=_key(table),
        name=name,
        blocking=blocking,
        additional_deps=[_key(parent)],
        description=f"Every non-null {table}.{column} exists in {SCHEMA}.{parent}; orphans are listed.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        severity = gate_severity(context) if blocking else dg.AssetCheckSeverity.WARN
        missing = _missing(warehouse, [table, parent])
        if missing:
            return _not_evaluated(missing)
        total = int(
            warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.{table} WHERE {column} IS NOT NULL")["n"][0]
        )
        bad = warehouse.read(
            f"SELECT c.id, c.{column} FROM {SCHEMA}.{table} c ANTI JOIN {SCHEMA}.{parent} p "
            f"ON c.{column} = p.id WHERE c.{column} IS NOT NULL ORDER BY c.id"
        )
        return _result(bad, total, f"reference a {column} missing from {SCHEMA}.{parent}", severity)

    return _check


ACTIVITY_TABLES = tuple(ACTIVITY_TABLE_TYPES)


# Attached to close/calls (the first activity table) rather than close/leads: the lead-reference
# checks of the activity tables depend on close/leads, so a blocking check on leads that depended on
# the activity tables would close a cycle.
@dg.asset_check(
    asset=_key("calls"),
    name="activities_present",
    blocking=True,
    additional_deps=[_key("leads"), *(_key(t) for t in ACTIVITY_TABLES if t != "calls")],
    description="A source with leads must have activities: a CSV export has none and must not be migrated.",
)
def activities_present(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    missing = _missing(warehouse, ["leads", *ACTIVITY_TABLES])
    if missing:
        return _not_evaluated(missing)
    leads = int(warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.leads")["n"][0])
    counts = {
        t: int(warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.{t}")["n"][0]) for t in ACTIVITY_TABLES
    }
    total = sum(counts.values())
    passed = leads == 0 or total > 0
    description = (
        f"{leads} leads, {total} activities"
        if passed
        else f"{leads} leads but no activities at all. The source looks like a CSV export or an "
        f"export made without activities. {CSV_EXPORT_EXPLANATION}"
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=gate_severity(context),
        description=description,
        metadata={"leads": leads, **{f"activities_{t}": n for t, n in counts.items()}},
    )


_ID_TABLES = [name for name, spec in TABLES.items() if spec.id_prefixes]
readable_checks = [_readable_check(t) for t in _ID_TABLES]

_CHILDREN = ["contacts", "opportunities", "tasks", *ACTIVITY_TABLES]
lead_reference_checks = [
    _reference_check(t, "lead_id", "leads", blocking=True, name="lead_id_references_lead") for t in _CHILDREN
]
contact_reference_checks = [
    _reference_check(t, "contact_id", "contacts", blocking=False, name="contact_id_references_contact")
    for t in ["opportunities", "tasks", *ACTIVITY_TABLES]
]
