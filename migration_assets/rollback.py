"""Rollback of migration runs: `close2d365 rollback --run RUN_ID | --all` and the `rollback` job.

Deletes what the runs created (children before parents) and restores the before-images of what they
updated (DESIGN §5). The rollback is itself a ledgered run: every delete/restore is recorded, and the
original ledger rows are stamped `rolled_back_by`, so running it again finds nothing left to undo.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb
from dagster import OpExecutionContext

from migration_assets.lib import ledger as lg
from migration_assets.lib.dv_batch import BatchRequest
from migration_assets.lib.ledger import Intent, Ledger, Rejection
from migration_assets.lib.rollback_plan import Step, plan_rollback, summarize
from migration_assets.resources.dataverse import DataverseApiError, DataverseClient, DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

DELETE_BATCH = 100


class RollbackError(RuntimeError):
    """The rollback was asked for something the ledger does not know (unknown run, no selection)."""


@dataclass
class RollbackReport:
    rollback_run_id: str
    runs: list[str]
    deleted: int = 0
    already_gone: int = 0
    restored: int = 0
    failed: list[str] = field(default_factory=list)
    per_table: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def render(self) -> str:
        lines = [
            f"rollback {self.rollback_run_id} of {', '.join(self.runs) or 'no run'}: deleted {self.deleted} "
            f"(already gone {self.already_gone}), restored {self.restored}, failed {len(self.failed)}",
            f"{'table':<28}{'delete':>8}{'restore':>9}",
        ]
        lines += [f"{t:<28}{c['delete']:>8}{c['restore']:>9}" for t, c in sorted(self.per_table.items())]
        lines += [f"FAILED: {f}" for f in self.failed[:50]]
        return "\n".join(lines)


def _select_runs(con: duckdb.DuckDBPyConnection, run_id: str | None, all_runs: bool) -> list[str]:
    if all_runs == (run_id is not None):
        raise RollbackError("give exactly one of --run RUN_ID or --all")
    if all_runs:
        return lg.run_ids(con)
    assert run_id is not None
    if not lg.run_exists(con, run_id):
        known = lg.run_ids(con)
        raise RollbackError(
            f"run {run_id!r} is not in the ledger (migration runs: {', '.join(known[-10:]) or 'none'})"
        )
    return [run_id]


def _restore(client: DataverseClient, step: Step) -> None:
    if step.columns:
        client.update(step.table, step.record_id, step.columns)
    state = step.state
    if state.get("statecode") is None:
        return
    want = (int(state["statecode"]), state.get("statuscode"))
    if step.table == "opportunity" and want[0] in (1, 2):
        current = client.get("opportunity", step.record_id, ["statecode", "statuscode"]) or {}
        if (current.get("statecode"), current.get("statuscode")) == want:
            return
        if current.get("statecode") not in (0, None):
            client.set_state("opportunity", step.record_id, 0, 1)  # reopen before closing again
        close = client.win_opportunity if want[0] == 1 else client.lose_opportunity
        close(step.record_id, int(want[1] or (3 if want[0] == 1 else 4)))
        return
    body: dict[str, Any] = {"statecode": want[0]}
    if want[1] is not None:
        body["statuscode"] = int(want[1])
    client.update(step.table, step.record_id, body)


def execute_rollback(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    run_ids: Sequence[str] | None,
    rollback_run_id: str,
    log: Callable[[str], None] = print,
) -> RollbackReport:
    """Undo the ledger rows of `run_ids` (None: every migration run) in the target."""
    entries = lg.entries(con, run_ids)
    runs = sorted({e.run_id for e in entries}) if run_ids is None else list(run_ids)
    steps = plan_rollback(entries)
    report = RollbackReport(rollback_run_id, runs, per_table=summarize(steps))
    ledger = Ledger(con, rollback_run_id, kind="rollback")
    log(f"rollback {rollback_run_id}: {len(steps)} steps over {len(runs)} run(s)")
    for step in (s for s in steps if s.kind == "restore"):
        try:
            if step.values:
                _restore(client, step)
                report.restored += 1
                ledger.record_done(
                    [Intent(step.table, step.record_id, step.close_id, "restored", step.values)]
                )
            ledger.mark_rolled_back(step.sources)
        except DataverseApiError as exc:
            if exc.status == 404:
                ledger.mark_rolled_back(step.sources)  # the record is gone: nothing left to restore
                report.already_gone += 1
                continue
            report.failed.append(f"restore {step.table}({step.record_id}): {exc.message}")
            ledger.reject(
                [
                    Rejection(
                        step.table,
                        step.record_id,
                        step.close_id,
                        "restore",
                        exc.status,
                        exc.code,
                        exc.message,
                    )
                ]
            )
    deletes = [s for s in steps if s.kind == "delete"]
    for start in range(0, len(deletes), DELETE_BATCH):
        _delete_chunk(client, ledger, deletes[start : start + DELETE_BATCH], report)
    ledger.close_run(
        "failed" if report.failed else "success",
        None if not report.failed else f"{len(report.failed)} failures",
    )
    log(report.render())
    return report


def _delete_chunk(client: DataverseClient, ledger: Ledger, chunk: list[Step], report: RollbackReport) -> None:
    # One table rank at a time is guaranteed by the plan's order; a chunk may span two ranks, so it is
    # split where the table changes group to keep children strictly before parents.
    groups: list[list[Step]] = []
    for s in chunk:
        if groups and groups[-1][-1].table == s.table:
            groups[-1].append(s)
        else:
            groups.append([s])
    for group in groups:
        entity_set = client.entity_set(group[0].table)
        items = [
            BatchRequest("DELETE", f"{entity_set}({s.record_id})", None, dict(client.write_headers))
            for s in group
        ]
        parts = client.execute_batch(items)  # type: ignore[arg-type]
        done: list[Step] = []
        for s, part in zip(group, parts, strict=True):
            if part is not None and (part.ok or part.status == 404):
                done.append(s)
                if part.ok:
                    report.deleted += 1
                else:
                    report.already_gone += 1
                continue
            code, message = (
                (part.error or ("", part.reason)) if part is not None else ("", "no answer in $batch")
            )
            report.failed.append(f"delete {s.table}({s.record_id}): {message}")
            ledger.reject(
                [
                    Rejection(
                        s.table,
                        s.record_id,
                        s.close_id,
                        "delete",
                        part.status if part else None,
                        code,
                        message,
                    )
                ]
            )
        ledger.record_done([Intent(s.table, s.record_id, s.close_id, "deleted") for s in done])
        ledger.mark_rolled_back([src for s in done for src in s.sources])


def dataverse_from_env() -> DataverseResource:
    """The Dataverse resource from the same environment variables the Dagster definitions use."""
    from migration_assets.resources import MissingEnvironmentError, dataverse_resource

    try:
        return dataverse_resource(resolved=True)
    except MissingEnvironmentError as exc:
        raise RollbackError(f"{exc} to roll back") from exc


def rollback(
    run_id: str | None,
    all_runs: bool,
    *,
    dataverse: DataverseResource | None = None,
    warehouse: WarehouseResource | None = None,
    rollback_run_id: str | None = None,
    log: Callable[[str], None] = print,
) -> RollbackReport:
    """`close2d365 rollback --run RUN_ID | --all`. Idempotent: a second call finds nothing to undo."""
    warehouse = warehouse or WarehouseResource()
    dataverse = dataverse or dataverse_from_env()
    client = dataverse.get_client()
    try:
        with warehouse.connect() as con:
            lg.ensure_schema(con)
            runs = _select_runs(con, run_id, all_runs)
            return execute_rollback(
                con, client, None if all_runs else runs, rollback_run_id or f"rollback-{uuid.uuid4()}", log
            )
    finally:
        client.close()


@dg.op(
    config_schema={
        "run_id": dg.Field(str, is_required=False),
        "all_runs": dg.Field(bool, default_value=False),
    },
    description="Undo migration runs: delete what they created, restore what they updated.",
)
def rollback_op(
    context: OpExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> None:
    cfg = context.op_config
    client = dataverse.get_client()
    with warehouse.connect() as con:
        lg.ensure_schema(con)
        runs = _select_runs(con, cfg.get("run_id"), bool(cfg.get("all_runs")))
        report = execute_rollback(
            con, client, None if cfg.get("all_runs") else runs, context.run.run_id, context.log.info
        )
    context.log.info(report.render())
    if not report.ok:
        raise RollbackError(f"{len(report.failed)} rollback steps failed:\n" + "\n".join(report.failed[:20]))


@dg.job(
    name="rollback", description="Roll back a migration run (config: run_id) or every run (all_runs: true)."
)
def rollback_job() -> None:
    rollback_op()
