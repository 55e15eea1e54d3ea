"""Rollback of migration runs: `close2d365 rollback --run RUN_ID | --all` and the core of the `rollback`
job (declared in defs/rollback.py).

Re-creates what delta runs deleted (under the same id, from the ledgered image), deletes what the runs
created (children before parents) and restores the before-images of what they updated or deactivated
(DESIGN §5), then puts back the alternate-key values a load released for a record it created (free once
that record is deleted), then removes the schema components they created (option values, keys, lookups,
columns, tables, then the solution and the publisher), keeping, with the reason in the report, any schema
that records or components of runs not rolled back still use. The rollback is itself a ledgered run: every
delete/restore is recorded, and the original ledger rows are stamped `rolled_back_by` (schema rows
`removed_by`), so running it again finds nothing left to undo. The staged rows recorded as loaded
(`load.snapshot`) no longer describe the target afterwards: they are dropped, so that the next delta
diffs every row against the target once.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from migration_assets.clients.dataverse.batch import BatchRequest
from migration_assets.clients.dataverse.client import DataverseApiError, DataverseClient, DataverseError
from migration_assets.clients.dataverse.odata import odata_string
from migration_assets.load import ledger as lg
from migration_assets.load.entity_meta_cache import forget_entity_metadata
from migration_assets.load.key_release import DUPLICATE_KEY
from migration_assets.load.ledger import Intent, Ledger, Rejection
from migration_assets.load.rollback_plan import (
    SchemaStep,
    Step,
    plan_rollback,
    plan_schema_rollback,
    summarize,
)
from migration_assets.load.sales_process import restore_instance
from migration_assets.load.sales_process_plan import STAGE_BIND
from migration_assets.load.snapshot import drop_snapshots
from migration_assets.mapping.ids import opportunityclose_id
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.solution_deploy import solution_components

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
    recreated: int = 0
    failed: list[str] = field(default_factory=list)
    per_table: dict[str, dict[str, int]] = field(default_factory=dict)
    schema_removed: list[str] = field(default_factory=list)
    schema_already_gone: list[str] = field(default_factory=list)
    schema_kept: list[str] = field(default_factory=list)  # "<component>: kept because <reason>"

    @property
    def ok(self) -> bool:
        return not self.failed

    def render(self) -> str:
        lines = [
            f"rollback {self.rollback_run_id} of {', '.join(self.runs) or 'no run'}: deleted {self.deleted} "
            f"(already gone {self.already_gone}), restored {self.restored}, "
            + (f"re-created {self.recreated}, " if self.recreated else "")
            + f"failed {len(self.failed)}",
            f"{'table':<28}{'delete':>8}{'restore':>9}",
        ]
        lines += [f"{t:<28}{c['delete']:>8}{c['restore']:>9}" for t, c in sorted(self.per_table.items())]
        if self.schema_removed or self.schema_already_gone or self.schema_kept:
            lines.append(
                f"schema: removed {len(self.schema_removed)} component(s) "
                f"(already gone {len(self.schema_already_gone)}), kept {len(self.schema_kept)}"
            )
            lines += [f"  removed {c}" for c in self.schema_removed]
            lines += [f"  KEPT {c}" for c in self.schema_kept]
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
    if STAGE_BIND in step.values:  # a business process flow instance moves back one stage at a time
        restore_instance(client, step.table, step.record_id, step.values)
        return
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


def _recreate(client: DataverseClient, step: Step) -> None:
    """A record a delta run deleted, created again under its id with its ledgered values (lookups and
    activity parties included), then put back in its state. A record already there (a re-run of this
    rollback) counts as re-created: `create` treats a duplicate id as done."""
    body = {k: v for k, v in step.columns.items() if v is not None}
    client.create(step.table, body)
    state = step.state
    if state.get("statecode") is None:
        return
    if step.table == "opportunity" and int(state["statecode"]) in (1, 2):
        # Closed again as it was closed: the action sets the close date and value from its
        # opportunityclose, under the id the load gave it when that one went with the deletion.
        won = int(state["statecode"]) == 1
        close_id = opportunityclose_id(step.record_id)
        kept = client.get("opportunityclose", close_id, ["activityid"]) is not None
        close = {
            k: v
            for k, v in (
                ("activityid", None if kept else close_id),
                ("actualend", step.values.get("actualclosedate")),
                ("actualrevenue", step.values.get("actualvalue")),
            )
            if v is not None
        }
        action = client.win_opportunity if won else client.lose_opportunity
        action(step.record_id, int(state.get("statuscode") or (3 if won else 4)), **close)
        return
    _restore(client, Step("restore", step.table, step.record_id, step.close_id, state))


def _recreate_all(
    client: DataverseClient, ledger: Ledger, steps: Sequence[Step], report: RollbackReport
) -> None:
    for step in steps:
        try:
            _recreate(client, step)
        except DataverseApiError as exc:
            report.failed.append(f"re-create {step.table}({step.record_id}): {exc.message}")
            _refused(ledger, step, "recreate", exc)
            continue
        report.recreated += 1
        ledger.record_done([Intent(step.table, step.record_id, step.close_id, "restored", step.values)])
        ledger.mark_rolled_back(step.sources)


def execute_rollback(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    run_ids: Sequence[str] | None,
    rollback_run_id: str,
    log: Callable[[str], None] = print,
) -> RollbackReport:
    """Undo the ledger rows of `run_ids` (None: every migration run) in the target."""
    entries = lg.entries(con, run_ids)
    components = {c.run_id for c in lg.schema_components(con, run_ids)}
    runs = sorted({e.run_id for e in entries} | components) if run_ids is None else list(run_ids)
    steps = plan_rollback(entries)
    report = RollbackReport(rollback_run_id, runs, per_table=summarize(steps))
    ledger = Ledger(con, rollback_run_id, kind="rollback")
    log(f"rollback {rollback_run_id}: {len(steps)} steps over {len(runs)} run(s)")
    if steps:
        drop_snapshots(con)
    if components:  # schema components go: the recorded table definitions may name them
        forget_entity_metadata(con)
    _recreate_all(client, ledger, [s for s in steps if s.kind == "recreate"], report)
    # A restore that puts back an alternate-key value a record created by these runs now holds (a group's
    # account whose key moved to a new account) is refused until that record is deleted: it runs again then.
    held = _restore_all(
        client, ledger, [s for s in steps if s.kind == "restore"], report, defer_key_clash=True
    )
    deletes = [s for s in steps if s.kind == "delete"]
    for start in range(0, len(deletes), DELETE_BATCH):
        _delete_chunk(client, ledger, deletes[start : start + DELETE_BATCH], report)
    _restore_all(client, ledger, held, report, defer_key_clash=False)
    _rekey_all(client, ledger, [s for s in steps if s.kind == "rekey"], report)
    remove_schema(con, client, run_ids, rollback_run_id, report, log)
    ledger.close_run(
        "failed" if report.failed else "success",
        None if not report.failed else f"{len(report.failed)} failures",
    )
    log(report.render())
    return report


def _restore_all(
    client: DataverseClient,
    ledger: Ledger,
    steps: Sequence[Step],
    report: RollbackReport,
    defer_key_clash: bool,
) -> list[Step]:
    """Restore before-images; returns the steps refused for an alternate-key clash when deferring them."""
    deferred: list[Step] = []
    for step in steps:
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
            if defer_key_clash and exc.code == DUPLICATE_KEY:
                deferred.append(step)
                continue
            report.failed.append(f"restore {step.table}({step.record_id}): {exc.message}")
            _refused(ledger, step, "restore", exc)
    return deferred


def _refused(ledger: Ledger, step: Step, operation: str, exc: DataverseApiError) -> None:
    """Ledger the target's refusal of one rollback step, with its status, code and message."""
    ledger.reject(
        [Rejection(step.table, step.record_id, step.close_id, operation, exc.status, exc.code, exc.message)]
    )


def _rekey_all(
    client: DataverseClient, ledger: Ledger, steps: Sequence[Step], report: RollbackReport
) -> None:
    """Alternate-key values a load released for another record, put back once the records the runs
    created are deleted (the value is free again). A record gone since has nothing to take them."""
    for step in steps:
        try:
            client.update(step.table, step.record_id, step.values)
        except DataverseApiError as exc:
            if exc.status == 404:
                report.already_gone += 1
                continue
            report.failed.append(f"restore key of {step.table}({step.record_id}): {exc.message}")
            _refused(ledger, step, "restore", exc)
            continue
        ledger.record_done([Intent(step.table, step.record_id, step.close_id, "restored", step.values)])


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


def remove_schema(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    run_ids: Sequence[str] | None,
    rollback_run_id: str,
    report: RollbackReport,
    log: Callable[[str], None],
) -> None:
    """Remove the schema components the runs created, after their records (idempotent: gone is fine)."""
    components = lg.schema_components(con, run_ids)
    if not components:
        return
    selected = {c.run_id for c in components}
    # Records still in the target per ledger (other runs, or deletes of these runs that failed).
    live: dict[str, set[str]] = {}
    for e in lg.entries(con, None):
        live.setdefault(e.table, set()).add(e.run_id)
    others = [c for c in lg.schema_components(con, None) if c.run_id not in selected]
    plan = plan_schema_rollback(components, live, others)
    report.schema_kept += [f"{s.label}: kept because {why}" for s, why in plan.kept]
    solution_name = next((s.name for s in plan.steps if s.kind == "solution"), None)
    removed_ids: set[str] = set()
    solution_stays = False
    for step in plan.steps:
        if step.kind in ("solution", "publisher") and report.failed:
            why: str | None = "a step before it failed (see FAILED)"
        elif step.kind == "publisher" and solution_stays:
            why = f"its solution {solution_name} stays"
        else:
            why = _still_needed(client, step, removed_ids)
        if why:
            report.schema_kept.append(f"{step.label}: kept because {why}")
            solution_stays = solution_stays or step.kind == "solution"
            continue
        try:
            gone = _remove(client, step, solution_name)
        except DataverseApiError as exc:
            report.failed.append(f"remove {step.label}: {exc.message}")
            continue
        (report.schema_removed if gone else report.schema_already_gone).append(step.label)
        if step.component_id:
            removed_ids.add(step.component_id.lower())
        lg.mark_schema_removed(con, step.sources, rollback_run_id)
        log(f"{'removed' if gone else 'already gone:'} {step.label}")


def _still_needed(client: DataverseClient, step: SchemaStep, removed_ids: set[str]) -> str | None:
    """What the target itself says against removing this step (the ledger cannot know it): a custom table
    still holding records, a solution holding components, or a publisher owning solutions, that this
    rollback did not create."""
    if step.kind == "table":
        try:
            primary_id = client.metadata(step.name, refresh=True).primary_id
        except DataverseError as exc:
            if "does not exist" in str(exc) or getattr(exc, "status", None) == 404:
                return None  # already gone
            raise
        rows = list(client.query(step.name, select=[primary_id], top=1))
        return "it still holds records that no rolled-back run wrote" if rows else None
    if step.kind == "solution" and step.component_id:
        left = [
            c
            for c in solution_components(client, step.component_id)
            if str(c.get("objectid") or "").lower() not in removed_ids
        ]
        if left:
            return (
                f"it still holds {len(left)} component(s) this rollback did not create (remove them "
                "from the solution in make.powerapps.com > Solutions, then delete the solution there)"
            )
    if step.kind == "publisher" and step.component_id:
        owned = client.rows(
            "solutions", ["solutionid", "uniquename"], f"_publisherid_value eq {step.component_id}"
        )
        left_names = [
            str(r.get("uniquename"))
            for r in owned
            if str(r.get("solutionid") or "").lower() not in removed_ids
        ]
        if left_names:
            return f"it owns solution(s) {', '.join(left_names)} that this rollback did not create"
    return None


def _remove(client: DataverseClient, step: SchemaStep, solution: str | None) -> bool:
    """Delete one component through the metadata API; False when it was already gone."""
    table = step.table or ""
    if step.kind == "option":
        return client.delete_option_value(table, step.name, int(step.detail["value"]), solution)
    if step.kind == "key":
        return client.delete_key(table, step.name, step.component_id)
    if step.kind == "relationship":
        return client.delete_relationship(step.name, step.component_id)
    if step.kind == "column":
        return client.delete_column(table, step.name)
    if step.kind == "table":
        return client.delete_table(step.name)
    if step.kind == "solution":
        return _delete_row(client.delete_solution, client, "solutions", step)
    return _delete_row(client.delete_publisher, client, "publishers", step)


def _delete_row(
    delete: Callable[[str], bool], client: DataverseClient, entity_set: str, step: SchemaStep
) -> bool:
    """A publisher or solution by its id; a pending ledger row (the run died before the id came back) is
    found by its unique name."""
    row_id = step.component_id
    if row_id is None:
        key = "publisherid" if entity_set == "publishers" else "solutionid"
        rows = client.rows(entity_set, [key], f"uniquename eq {odata_string(step.name)}")
        if not rows:
            return False
        row_id = str(rows[0][key])
    return delete(row_id)


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
            return rollback_runs(
                con, client, run_id, all_runs, rollback_run_id or f"rollback-{uuid.uuid4()}", log
            )
    finally:
        client.close()


def rollback_runs(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    run_id: str | None,
    all_runs: bool,
    rollback_run_id: str,
    log: Callable[[str], None],
) -> RollbackReport:
    """Undo run `run_id` (or every run), recorded in the ledger as run `rollback_run_id`: the command's
    and the `rollback` job's common core."""
    lg.ensure_schema(con)
    runs = _select_runs(con, run_id, all_runs)
    return execute_rollback(con, client, None if all_runs else runs, rollback_run_id, log)
