"""Jobs of the one Definitions: extract, dry_run, migrate, observe, delta, verify (and rollback, an op job
over the ledger).

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

from migration_assets.defs.close.observe import OBSERVED_KEYS

DRY_RUN_JOB = "dry_run"
CLOSE_SELECTION = dg.AssetSelection.groups("close")
# The observation of Close (close_source/*, observable source assets: AssetSelection.all() leaves them
# out). Every job that extracts observes first, so each close/* materialization records the data version
# of Close it read, and Dagster's staleness can tell when Close moved past it.
CLOSE_OBSERVATION = dg.AssetSelection.assets(*OBSERVED_KEYS)
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

DRY_RUN_SELECTION = (dg.AssetSelection.all() | CLOSE_OBSERVATION) - TARGET_WRITES
MIGRATE_SELECTION = (dg.AssetSelection.all() | CLOSE_OBSERVATION) - DRY_RUN_ONLY
OBSERVE_JOB = "observe"
VERIFY_JOB = "verify"
# The whole target against the whole source: the reconciliation counts every record in Dataverse, the
# spot check compares sampled records with Close. `close2d365 cutover` runs it after the final delta.
VERIFY_SELECTION = dg.AssetSelection.assets(["reports", "reconciliation"], ["reports", "spot_check"])
# The run's audit pack (index.html and the run's own admin lists) is written by every job that stages or
# reports, the verify job included; it reads no Close and writes no Dataverse.
AUDIT_PACK = dg.AssetSelection.assets(["reports", "audit_pack"])
DELTA_JOB = "delta"
# The delta job is `migrate` with Close read in delta mode (what changed since the last extraction, and
# the event log's deletions and merges); its loads write only the staged rows that changed since the last
# load, and loaded/deleted_records applies delta.deleted_records (both key on the job's name). It leaves
# the verification out, so that its requests stay proportional to what changed. The mode is run config,
# so the launchpad can still change it.
# The security-role plan (an admin review, one read of each matched user's roles) is not redone per delta;
# `verify` (the cutover's last step) redoes it.
SECURITY_ROLE_PLAN = dg.AssetSelection.assets(["reports", "security_roles"])
DELTA_SELECTION = MIGRATE_SELECTION - VERIFY_SELECTION - SECURITY_ROLE_PLAN
DELTA_RUN_CONFIG = {"ops": {"close__source_tables": {"config": {"mode": "delta"}}}}


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
            "extract",
            selection=CLOSE_SELECTION | CLOSE_OBSERVATION,
            description="Extract every Close object into DuckDB.",
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
        dg.define_asset_job(
            DELTA_JOB,
            selection=DELTA_SELECTION,
            config=DELTA_RUN_CONFIG,
            description="Delta cutover: re-extract what changed in Close, stage and check it, load only the "
            "rows that changed since the last load, then deactivate or delete records whose Close source "
            "is gone (delta.deleted_records), all through the ledger.",
        ),
        dg.define_asset_job(
            OBSERVE_JOB,
            selection=CLOSE_OBSERVATION,
            description="Observe Close without extracting: new data versions of the Close objects that "
            "changed, so that the lineage shows what is unsynced (what a delta run would move).",
        ),
        dg.define_asset_job(
            VERIFY_JOB,
            selection=VERIFY_SELECTION | AUDIT_PACK | SECURITY_ROLE_PLAN,
            description="Reconcile every table of the target with Close and spot-check sampled records "
            "field by field against Close, and redo the security-role plan; writes nothing.",
        ),
        rollback_job,
    ]
