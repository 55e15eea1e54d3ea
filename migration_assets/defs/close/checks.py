"""Source checks on the close/* tables (DESIGN §6): every record readable (ids well formed, no conflicting
copies, numbers and dates read, no negative amounts), referential integrity, activities present. What each
looks for is in extract/source_checks.py.

Failing rows are listed in the check metadata as a Markdown table, not only counted. Checks whose
failure means the data cannot be migrated correctly (malformed ids, records pointing at leads that were
not extracted, a source without activities) are blocking; a contact reference that does not resolve is
a warning (Close keeps activities of deleted contacts; the loader then leaves the party unresolved).
In the `dry_run` job a failed blocking check is reported with severity WARN, so that staging still runs
and shows its own problems in the same run (defs/jobs.py).
"""

# No `from __future__ import annotations`: Dagster reads the resource annotations at definition time.
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import polars as pl

from migration_assets.clients.close.export_file import CSV_EXPORT_EXPLANATION
from migration_assets.defs.close._common import CELL_WIDTH, GROUP, SCHEMA
from migration_assets.defs.jobs import gate_severity
from migration_assets.extract.source_checks import (
    id_pattern,
    not_extracted,
    orphan_references,
    problem_summary,
    row_count,
    unreadable_records,
)
from migration_assets.extract.tables import ACTIVITY_TABLE_TYPES, TABLES
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource

SHOW = 20


def _key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


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


@dataclass(frozen=True)
class _Check:
    """One check of a close/* table: its spec (name, blocking, description, extra deps) and evaluation."""

    spec: dg.AssetCheckSpec
    evaluate: Callable[[dg.AssetCheckExecutionContext, WarehouseResource], dg.AssetCheckResult]


def _readable_check(table: str) -> _Check:
    def evaluate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        total, bad = unreadable_records(warehouse, table)
        reasons = problem_summary(bad)
        what = f"cannot be migrated as the source holds them ({reasons}); correct them in Close and extract again"
        return _result(bad, total, what, gate_severity(context))

    spec = dg.AssetCheckSpec(
        "records_readable",
        asset=_key(table),
        blocking=True,
        description=f"Every record of close.{table} was read as the source holds it: ids well formed "
        f"({id_pattern(table)}), no id delivered twice "
        "with different, equally new content (e.g. one contact under two leads), no number or date that "
        "could not be read, no negative amount. Such records are listed, never merged or loaded empty.",
    )
    return _Check(spec, evaluate)


def _reference_check(table: str, column: str, parent: str, *, blocking: bool, name: str) -> _Check:
    def evaluate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        severity = gate_severity(context) if blocking else dg.AssetCheckSeverity.WARN
        missing = not_extracted(warehouse, [table, parent])
        if missing:
            return _not_evaluated(missing)
        total, bad = orphan_references(warehouse, table, column, parent)
        return _result(bad, total, f"reference a {column} missing from {SCHEMA}.{parent}", severity)

    spec = dg.AssetCheckSpec(
        name,
        asset=_key(table),
        blocking=blocking,
        additional_deps=[_key(parent)],
        description=f"Every non-null {table}.{column} exists in {SCHEMA}.{parent}; orphans are listed.",
    )
    return _Check(spec, evaluate)


ACTIVITY_TABLES = tuple(ACTIVITY_TABLE_TYPES)


def _activities_present(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    missing = not_extracted(warehouse, ["leads", *ACTIVITY_TABLES])
    if missing:
        return _not_evaluated(missing)
    leads = row_count(warehouse, "leads")
    counts = {t: row_count(warehouse, t) for t in ACTIVITY_TABLES}
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


# Attached to close/calls (the first activity table) rather than close/leads: the lead-reference
# checks of the activity tables depend on close/leads, so a blocking check on leads that depended on
# the activity tables would close a cycle.
ACTIVITIES_PRESENT = _Check(
    dg.AssetCheckSpec(
        "activities_present",
        asset=_key("calls"),
        blocking=True,
        additional_deps=[_key("leads"), *(_key(t) for t in ACTIVITY_TABLES if t != "calls")],
        description="A source with leads must have activities: a CSV export has none and must not be migrated.",
    ),
    _activities_present,
)


def table_checks(table: str, checks: Sequence[_Check]) -> dg.AssetChecksDefinition:
    """The checks of close/<table> as one step (`close__<table>_checks`), subsettable: each check keeps its
    key, blocking flag and dependencies, and a failed blocking check halts what is downstream of this table
    only, as a check of its own would; one step instead of one per check spares a delta a Dagster step per
    check (about 20 of them, each costing more to run than its query)."""
    by_name = {c.spec.name: c for c in checks}

    @dg.multi_asset_check(name=f"{GROUP}__{table}_checks", specs=[c.spec for c in checks], can_subset=True)
    def _checks(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckResult]:
        for key in sorted(context.selected_asset_check_keys, key=lambda k: list(by_name).index(k.name)):
            result = by_name[key.name].evaluate(context, warehouse)
            yield result._replace(asset_key=key.asset_key, check_name=key.name)

    return _checks


_ID_TABLES = [name for name, spec in TABLES.items() if spec.id_prefixes]
_CHILDREN = ["contacts", "opportunities", "tasks", *ACTIVITY_TABLES]
_CONTACT_CHILDREN = ["opportunities", "tasks", *ACTIVITY_TABLES]


def _checks_of(table: str) -> list[_Check]:
    """Every check of close/<table>, in the order they were declared one by one."""
    out = [_readable_check(table)] if table in _ID_TABLES else []
    if table == "calls":
        out.append(ACTIVITIES_PRESENT)
    if table in _CHILDREN:
        out.append(_reference_check(table, "lead_id", "leads", blocking=True, name="lead_id_references_lead"))
    if table in _CONTACT_CHILDREN:
        out.append(
            _reference_check(
                table, "contact_id", "contacts", blocking=False, name="contact_id_references_contact"
            )
        )
    return out


close_table_checks = [table_checks(t, checks) for t in TABLES if (checks := _checks_of(t))]
