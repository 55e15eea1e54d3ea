"""Source checks on the close/* tables (DESIGN §6): ids well formed, referential integrity, activities present.

Failing rows are listed in the check metadata as a Markdown table, not only counted. Checks whose
failure means the data cannot be migrated correctly (malformed ids, records pointing at leads that were
not extracted, a source without activities) are blocking; a contact reference that does not resolve is
a warning (Close keeps activities of deleted contacts; the loader then leaves the party unresolved).
In the `dry_run` job a failed blocking check is reported with severity WARN, so that staging still runs
and shows its own problems in the same run (defs/jobs.py).
"""

# No `from __future__ import annotations`: Dagster reads the resource annotations at definition time.
from collections.abc import Sequence

import dagster as dg
import polars as pl

from migration_assets.defs.close._common import GROUP, SCHEMA, markdown_table
from migration_assets.defs.close.duplicates import CONFLICTS, QUALITY_SCHEMA
from migration_assets.defs.close.tables import ACTIVITY_TABLE_TYPES, TABLES
from migration_assets.defs.jobs import gate_severity
from migration_assets.lib.close_export import CSV_EXPORT_EXPLANATION
from migration_assets.resources.warehouse import WarehouseResource

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
        metadata["failures"] = dg.MetadataValue.md(markdown_table(bad, max_rows=SHOW))
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        severity=severity,
        description=f"{len(bad)} of {total} rows {what}" if len(bad) else f"all {total} rows ok",
        metadata=metadata,
    )


def _id_check(table: str) -> dg.AssetChecksDefinition:
    spec = TABLES[table]
    prefixes = "|".join(p.rstrip("_") for p in spec.id_prefixes)
    alternatives = "|".join(f"[0-9A-Za-z]{{{n}}}" for n in spec.id_lengths)
    pattern = f"^({prefixes})_({alternatives})$"

    @dg.asset_check(
        asset=_key(table),
        name="ids_well_formed",
        blocking=True,
        description=f"Every id matches {pattern} (Close prefix + base62 random part).",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        ref = f"{SCHEMA}.{table}"
        total = int(warehouse.read(f"SELECT count(*) AS n FROM {ref}")["n"][0])
        bad = warehouse.read(
            f"SELECT id FROM {ref} WHERE id IS NULL OR NOT regexp_full_match(id, ?) ORDER BY id", [pattern]
        )
        return _result(bad, total, f"have malformed ids (expected {pattern})", gate_severity(context))

    return _check


def _unique_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=_key(table),
        name="ids_unique",
        blocking=True,
        description="No id came twice with different, equally new content (e.g. one contact under two leads); "
        "such copies cannot be resolved by recency and are listed instead of merged.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        total = int(warehouse.read(f"SELECT count(*) AS n FROM {SCHEMA}.{table}")["n"][0])
        if not warehouse.table_exists(QUALITY_SCHEMA, "duplicate_ids"):
            bad = pl.DataFrame(schema={"id": pl.String})
        else:
            bad = warehouse.read(
                f"SELECT id, copies, lead_ids FROM {CONFLICTS} WHERE table_name = ? ORDER BY id", [table]
            )
        what = (
            "came more than once with different content and the same date_updated (listed with their copies "
            "and leads); the tool will not pick one. Fix the records in Close (or the duplicate entries in the "
            "export file) and extract again"
        )
        return _result(bad, total, what, gate_severity(context))

    return _check


# Money fields in Close are whole cents and never negative (an opportunity's value): a negative amount is
# a data error to fix in Close, not something to load silently.
NON_NEGATIVE = {"opportunities": ("value",)}


def _json_path(key: str) -> str:
    return "$." + key.replace('"', "")


def _number_check(table: str) -> dg.AssetChecksDefinition:
    numbers = [c for c in TABLES[table].columns if c.dtype == pl.Int64 and c.key]
    non_negative = NON_NEGATIVE.get(table, ())

    @dg.asset_check(
        asset=_key(table),
        name="numbers_readable",
        blocking=True,
        description=f"Every number in close.{table} ({', '.join(c.name for c in numbers)}) was read: a value "
        "that is not a whole number in range"
        + (f", or a negative {', '.join(non_negative)}," if non_negative else "")
        + " is listed with its record instead of loading as empty.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        ref = f"{SCHEMA}.{table}"
        total = int(warehouse.read(f"SELECT count(*) AS n FROM {ref}")["n"][0])
        parts = []
        for c in numbers:
            path = _json_path(str(c.key))
            # The typed column is NULL only where the source had nothing or something unreadable: the JSON
            # is parsed for those rows alone.
            parts.append(
                f"SELECT id, '{c.name}' AS \"column\", json_extract(raw, '{path}')::VARCHAR AS value, "
                f"'not a whole number in the Int64 range' AS reason FROM {ref} "
                f"WHERE {c.name} IS NULL AND json_type(json_extract(raw, '{path}')) NOT IN ('NULL')"
            )
            if c.name in non_negative:
                parts.append(
                    f"SELECT id, '{c.name}' AS \"column\", {c.name}::VARCHAR AS value, 'negative amount' AS reason "
                    f"FROM {ref} WHERE {c.name} < 0"
                )
        bad = warehouse.read(" UNION ALL ".join(parts) + ' ORDER BY id, "column"')
        what = "have a number that cannot be loaded as it is (listed); correct it in Close and extract again"
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
id_checks = [_id_check(t) for t in _ID_TABLES]
unique_checks = [_unique_check(t) for t in _ID_TABLES if "raw" in TABLES[t].schema]
number_checks = [
    _number_check(t)
    for t, spec in TABLES.items()
    if "raw" in spec.schema
    and "id" in spec.schema
    and any(c.dtype == pl.Int64 and c.key for c in spec.columns)
]

_CHILDREN = ["contacts", "opportunities", "tasks", *ACTIVITY_TABLES]
lead_reference_checks = [
    _reference_check(t, "lead_id", "leads", blocking=True, name="lead_id_references_lead") for t in _CHILDREN
]
contact_reference_checks = [
    _reference_check(t, "contact_id", "contacts", blocking=False, name="contact_id_references_contact")
    for t in ["opportunities", "tasks", *ACTIVITY_TABLES]
]
