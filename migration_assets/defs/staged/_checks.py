"""The blocking target check every staged table gets (`<table>_target_valid`): mapping/staged_check.py
re-validates staged.<table> and holds its rejected rows against the threshold; the failing rows appear in
the UI as a Markdown table.

A failure halts the downstream tables (severity ERROR), except in the `dry_run` job, where it is reported
with severity WARN so that every table is still staged and checked (see defs/jobs.py).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import dagster as dg

from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import markdown, staged_key
from migration_assets.mapping.staged_check import RulesFor, check_staged
from migration_assets.mapping.staged_lookups import target_lookup
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


def evaluate(
    warehouse: WarehouseResource,
    table: str,
    rules_for: RulesFor | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    dataverse: DataverseResource | None = None,
) -> dg.AssetCheckResult:
    check = check_staged(warehouse, table, rules_for, target_lookup(dataverse))
    return dg.AssetCheckResult(
        passed=check.passed,
        severity=severity,
        description=check.description,
        metadata={
            "staged_rows": check.staged_rows,
            "rejected_rows": check.rejected_rows,
            "excluded_rows (listed for the admin)": check.excluded["_close_id"].n_unique(),
            "threshold": check.threshold,
            "rejected_by_check": dg.MetadataValue.md(markdown(check.by_check)),
            "rejected": dg.MetadataValue.md(markdown(check.rejected.drop("_close_object"))),
            "excluded": dg.MetadataValue.md(markdown(check.excluded.drop("_close_object"))),
            "invalid_after_write": dg.MetadataValue.md(markdown(check.still_bad))
            if check.still_bad.height
            else "none",
            # Values truncated (settings.yaml truncation) or dropped (on_error: null): loaded, never silent.
            "truncated_or_nulled": dg.MetadataValue.md(markdown(check.notices))
            if check.notices is not None and check.notices.height
            else "none",
        },
    )


def target_check(table: str, rules_for: RulesFor | None = None) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=staged_key(table),
        name=f"{table}_target_valid",
        blocking=True,
        description=f"staged.{table} satisfies the target's metadata; rejected rows within the threshold.",
    )
    @reports_api_calls
    def _check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.AssetCheckResult:
        # In the dry run a failure is reported (WARN) without halting the tables staged from this one.
        return evaluate(warehouse, table, rules_for, gate_severity(context), dataverse)

    return _check
