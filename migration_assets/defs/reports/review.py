"""reports/dry_run_review: every problem of a dry run in one file, and the run's verdict.

In the `dry_run` job the gates report failures without halting (defs/jobs.py), so by the time this asset runs
every table has been staged and checked. It reads the run's own events (each check's evaluation, each failed
step) and the `staged.<table>_rejected` tables staged in this run, and writes `review.md` (+ `review.csv`)
and `rejected_<table>.csv` per table under `$CLOSE2D365_HOME/reports/<run_id>/` (audit/dry_run_review).

Its check `plan_clean` (blocking, ERROR) fails when any problem is found, which fails the run: the run is red
in the UI exactly when `close2d365 dry-run` (which prints the same summary) exits 2.

Why it has no upstream dependencies: a staging step that raises (a broken mapping file, say) would skip
every asset downstream of it, the review included, and its problem would go unreported. Instead the lowest
priority runs it after every other step, failed or skipped ones too (the run's executor starts a step only once
every step of a higher priority has ended: step_threads.py).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from collections.abc import Iterable
from typing import Any

import dagster as dg

from migration_assets.audit.dry_run_review import Review, rejected_frames, table_problems, write_review
from migration_assets.audit.review_problems import (
    PROBLEM_COLUMNS,
    TARGET_CHECK_SUFFIX,
    Problem,
    check_problems,
    summary_lines,
)
from migration_assets.defs.jobs import REVIEW_KEY
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource

CHECK_NAME = "plan_clean"
REVIEW_STEP = "__".join(REVIEW_KEY.path)  # the step key Dagster gives the asset's op
LAST = {"dagster/priority": "-100"}  # after every other step of the run (see the module docstring)


def _events(instance: dg.DagsterInstance, run_id: str, kinds: set[dg.DagsterEventType]) -> Iterable[Any]:
    for record in instance.all_logs(run_id, of_type=kinds):
        if record.dagster_event is not None:
            yield record.dagster_event


def _staged_this_run(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    keys = {e.asset_key for e in _events(instance, run_id, {dg.DagsterEventType.ASSET_MATERIALIZATION})}
    return sorted(k.path[1] for k in keys if k is not None and len(k.path) == 2 and k.path[0] == "staged")


def build_review(instance: dg.DagsterInstance, run_id: str, warehouse: WarehouseResource) -> Review:
    """Every problem of run `run_id`, from its events and the rejected rows of the tables it staged."""
    review = Review(run_id)
    for event in _events(instance, run_id, {dg.DagsterEventType.STEP_FAILURE}):
        if event.step_key == REVIEW_STEP:
            continue  # this review's own verdict (when it is read again after its run)
        error = event.step_failure_data.error if event.step_failure_data else None
        # The user's exception is the cause of Dagster's "error occurred while executing" wrapper.
        error = error.cause if error is not None and error.cause is not None else error
        message = (error.message.strip().splitlines() or ["failed"])[0] if error else "failed"
        review.problems.append(
            Problem(
                f"step {event.step_key}",
                message,
                "see the message; the steps after it were not run",
                kind="step",
            )
        )
    review.skipped = sorted(
        {e.step_key for e in _events(instance, run_id, {dg.DagsterEventType.STEP_SKIPPED})}
    )
    with warehouse.connect() as con:
        review.rejected = rejected_frames(con, _staged_this_run(instance, run_id))
    failed_tables: set[str] = set()
    for event in _events(instance, run_id, {dg.DagsterEventType.ASSET_CHECK_EVALUATION}):
        ev = event.asset_check_evaluation_data
        if ev.asset_key == REVIEW_KEY:
            continue
        asset = ev.asset_key.to_user_string()
        review.checks.append(
            {
                "asset": asset,
                "check": ev.check_name,
                "result": "passed" if ev.passed else ("FAILED" if ev.blocking else "warning"),
                "description": ev.description or "",
            }
        )
        if ev.passed:
            continue
        if not ev.blocking:
            review.warnings.append(f"{asset}: {ev.check_name}: {ev.description or 'failed'}")
            continue
        found = check_problems(ev.check_name, asset, ev.description or "", ev.metadata)
        if ev.check_name.endswith(TARGET_CHECK_SUFFIX):
            table = ev.check_name.removesuffix(TARGET_CHECK_SUFFIX)
            failed_tables.add(table)
            found = table_problems(table, review.rejected.get(table), blocking=True) + found
        review.problems.extend(found)
    for table, frame in sorted(review.rejected.items()):
        if table not in failed_tables:
            review.problems.extend(table_problems(table, frame, blocking=False))
    return review


@dg.asset(
    key=REVIEW_KEY,
    group_name="reports",
    op_tags=LAST,
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=REVIEW_KEY,
            blocking=True,
            description="The dry run found no problem: every gate passed and no step failed.",
        )
    ],
    description="Every problem of the dry run in one review file (+ rejected rows per table, as CSV).",
)
def dry_run_review(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    review = build_review(context.instance, context.run.run_id, warehouse)
    md, files = write_review(review)
    blocking = review.blocking
    summary = "\n".join(summary_lines(review.problems))
    verdict = f"{len(blocking)} problems: see {md}" if blocking else f"the plan is clean ({md})"
    return dg.MaterializeResult(
        metadata={
            "problems": len(blocking),
            "summary": dg.MetadataValue.text(summary),
            "review_file": dg.MetadataValue.path(str(md)),
            "review": dg.MetadataValue.md(markdown_table([p.row() for p in blocking], PROBLEM_COLUMNS[:-1])),
            "rejected_files": dg.MetadataValue.md(
                markdown_table([{"file": f, "rows": n} for f, n in files.items()], ["file", "rows"])
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_NAME,
                passed=not blocking,
                # Always ERROR (not gate_severity): this check is the dry run's verdict, it fails the run.
                severity=dg.AssetCheckSeverity.ERROR,
                description=verdict,
                metadata={"problems": len(blocking)},
            )
        ],
    )
