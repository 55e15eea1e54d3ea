"""Jobs of the one Definitions: extract, dry_run, migrate (and rollback, an op job over the ledger).

How one dry run shows every problem while `migrate` stops at the first one: every gate is a blocking asset
check (`blocking=True`), and Dagster halts downstream assets only when a blocking check fails with severity
ERROR. The `blocking` flag is fixed per definition, so the checks choose their severity per run instead
(`gate_severity`): ERROR in every job but `dry_run`, WARN in `dry_run`. A failed check in a dry run is still
recorded as failed (the UI shows it failed, with its rows), yet staging and checking go on downstream, so
every layer's problems appear in the same run. `reports/dry_run_review` then collects them into one review
file, and its own check `plan_clean` (ERROR) fails the run when there is any: the run is red in the UI
exactly when `close2d365 dry-run` exits 2.

The severity is keyed on the job name, not on a run tag, so that no tag on a run that writes to the target
can ever turn its gates off: the dry_run selection excludes every asset that writes to Dataverse.
"""

from __future__ import annotations

import dagster as dg

DRY_RUN_JOB = "dry_run"
CLOSE_SELECTION = dg.AssetSelection.groups("close")
REVIEW_KEY = dg.AssetKey(["reports", "dry_run_review"])
# Assets that only make sense in a dry run (the review fails its run when the plan has problems; in a
# migration, the gates themselves stop the run).
DRY_RUN_ONLY = dg.AssetSelection.assets(REVIEW_KEY)

# Assets that write to the Dataverse target. A dry run must leave the target untouched, so it stops at the
# schema plan: deploying columns and custom activity tables is part of the migration proper.
TARGET_WRITES = dg.AssetSelection.groups("loaded").downstream() | dg.AssetSelection.assets(
    ["schema", "solution"],
    ["schema", "deployed"],
    ["schema", "custom_activity_tables"],
    ["schema", "custom_activity_columns"],
)
# The reconciliation reports a migrate run's loads, halted ones included, so it has no deps on them (a
# failed load would skip it): leave it out of the dry run explicitly.
TARGET_WRITES = TARGET_WRITES | dg.AssetSelection.assets(["reports", "reconciliation"])

DRY_RUN_SELECTION = dg.AssetSelection.all() - TARGET_WRITES
MIGRATE_SELECTION = dg.AssetSelection.all() - DRY_RUN_ONLY


def reports_every_problem(job_name: str | None) -> bool:
    """Whether a run of this job goes on past failed gates (to list every problem) instead of halting."""
    return job_name == DRY_RUN_JOB


def gate_severity(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckSeverity:
    """Severity of a failed blocking gate: ERROR halts downstream assets; WARN (dry run only) records the
    failure and lets staging and checking continue."""
    if reports_every_problem(context.run.job_name):
        return dg.AssetCheckSeverity.WARN
    return dg.AssetCheckSeverity.ERROR


def all_jobs() -> list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]:
    from migration_assets.defs.rollback import rollback_job

    return [
        dg.define_asset_job(
            "extract", selection=CLOSE_SELECTION, description="Extract every Close object into DuckDB."
        ),
        dg.define_asset_job(
            DRY_RUN_JOB,
            selection=DRY_RUN_SELECTION,
            description="Extract, stage and check everything, plan the schema; writes nothing to Dataverse. "
            "Failed checks do not halt it: every problem is listed in reports/dry_run_review, which fails "
            "the run when there is any.",
        ),
        dg.define_asset_job(
            "migrate",
            selection=MIGRATE_SELECTION,
            description="The whole migration: extract, stage, check, deploy the schema, load, reconcile.",
        ),
        rollback_job,
    ]
