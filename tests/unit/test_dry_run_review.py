"""reports/dry_run_review on a small graph: it runs after everything else even when a step raised, lists that
step, the failed gate's rows by class with their fix, writes review.md + rejected_<table>.csv, and fails the
run (plan_clean) exactly when it lists a problem; the CLI's outcome says the same."""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.
import csv
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from migration_assets.defs.jobs import DRY_RUN_JOB, REVIEW_KEY, gate_severity
from migration_assets.defs.reports.review import dry_run_review
from migration_assets.mapping.staging import warehouse_write
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.runtime import print_dry_run_outcome

UNKNOWN = "unknown choice 'Do Not Contact' for lead status (statecode) (known: 'New')"


def _graph(bad_rows: int) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    @dg.asset(key=["staged", "lead"])
    def lead(warehouse: WarehouseResource) -> None:
        rejected = pl.DataFrame(
            {
                "_close_id": [f"lead_{i}" for i in range(bad_rows)],
                "column": ["statecode"] * bad_rows,
                "value": ["Do Not Contact"] * bad_rows,
                "reason": [UNKNOWN] * bad_rows,
                "check_name": ["mapping"] * bad_rows,
            },
            schema={c: pl.String for c in ("_close_id", "column", "value", "reason", "check_name")},
        )
        with warehouse.connect() as con:
            warehouse_write(con, "lead", pl.DataFrame({"_close_id": ["lead_ok"]}))
            warehouse_write(con, "lead_rejected", rejected)

    @dg.asset_check(asset=lead, name="lead_target_valid", blocking=True)
    def lead_target_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=bad_rows == 0,
            severity=gate_severity(context),
            description=f"{bad_rows} of {bad_rows + 1} rows rejected, above the threshold (max_rows=0)"
            if bad_rows
            else "ok",
            metadata={"rejected_rows": bad_rows, "staged_rows": 1},
        )

    @dg.asset(key=["staged", "task"], deps=[lead])
    def task() -> None:
        if bad_rows:
            raise ValueError("mappings/activities.yaml: bad setting")

    return [lead, task, dry_run_review], [lead_target_valid]


def _run(tmp_path: Path, bad_rows: int) -> dg.ExecuteInProcessResult:
    assets, checks = _graph(bad_rows)
    defs = dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[dg.define_asset_job(DRY_RUN_JOB, selection=dg.AssetSelection.all())],
        resources={"warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"))},
    )
    job = defs.resolve_job_def(DRY_RUN_JOB)
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_the_review_lists_every_problem_and_fails_the_run(
    tmp_path: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(tmp_path, bad_rows=3)
    assert not result.success
    assert REVIEW_KEY in {e.asset_key for e in result.get_asset_materialization_events()}
    verdict = next(e for e in result.get_asset_check_evaluations() if e.check_name == "plan_clean")
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR

    folder = isolated_home / "reports" / result.run_id
    review = (folder / "review.md").read_text(encoding="utf-8")
    assert "**3 problems**" in review
    assert "| lead | 3 | Close lead status 'Do Not Contact' is not in mappings/lead_status.yaml |" in review
    assert "| step staged__task |  | ValueError: mappings/activities.yaml: bad setting |" in review
    with (folder / "rejected_lead.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["close_id"] for r in rows] == ["lead_0", "lead_1", "lead_2"] and rows[0]["cascade"] == ""

    assert print_dry_run_outcome(result) == 2
    out = capsys.readouterr()
    assert "lead: 3 rows: Close lead status 'Do Not Contact' is not in mappings/lead_status.yaml" in out.out
    assert "rejection threshold" in out.out and "step staged__task: ValueError" in out.out
    assert (
        out.err.strip().splitlines()[-1]
        == f"run {result.run_id}: 3 problems; fix them and dry-run again (review: {folder / 'review.md'})"
    )


def test_a_clean_plan_passes_and_exits_0(
    tmp_path: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(tmp_path, bad_rows=0)
    assert result.success
    assert print_dry_run_outcome(result) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith(f"the plan is clean (review: {isolated_home / 'reports' / result.run_id / 'review.md'})")
    )
