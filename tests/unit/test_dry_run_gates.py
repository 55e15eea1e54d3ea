"""A failed gate halts what is downstream of it in every job but `dry_run`, where it is recorded as failed
(severity WARN) and staging goes on, so that one dry run shows the problems of every layer."""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import dagster as dg

from migration_assets.defs.jobs import DRY_RUN_JOB, gate_severity


@dg.asset
def parent() -> None:
    return None


@dg.asset(deps=[parent])
def child() -> None:
    return None


@dg.asset_check(asset=parent, blocking=True)
def parent_gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=gate_severity(context), description="bad rows")


def _run(job_name: str) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(
        assets=[parent, child],
        asset_checks=[parent_gate],
        jobs=[dg.define_asset_job(job_name, selection=dg.AssetSelection.all())],
    )
    return defs.resolve_job_def(job_name).execute_in_process(raise_on_error=False)


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_the_dry_run_records_the_failed_gate_and_goes_on() -> None:
    result = _run(DRY_RUN_JOB)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert _materialized(result) == {"parent", "child"}


def test_any_other_job_halts_at_the_failed_gate() -> None:
    result = _run("migrate")
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert _materialized(result) == {"parent"} and not result.success
