"""reports/reconciliation: per table, what Close held, what was staged, rejected, loaded and read back from
Dataverse, and an honest status (contract F): `ok`, `partial (N rejected, see <file>)` or
`halted (<reason>)` -- the halting check or step of THIS run, or a load that did not run.

`readback_table` (every staged column read back) serves the end-to-end tests; the report that compares
with Close, the source, is reports/spot_check."""

import json
import random
from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
from dagster import AssetExecutionContext, DagsterEventType

from migration_assets.audit.files import markdown_table, write_report
from migration_assets.audit.reconcile_status import Counts, status
from migration_assets.clients.dataverse.client import DataverseClient, DataverseError
from migration_assets.defs.loaded._common import loaded_key
from migration_assets.defs.loaded.tables import ORDER
from migration_assets.load import diff as ld
from migration_assets.load.file_body import OVERSIZE_CODE
from migration_assets.load.lookups import READ_CHUNK, resolve_key_bind
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.custom_activities import activity_types
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote, table_exists
from migration_assets.target.checks import EXCLUSIONS, KEPT_IN_TARGET
from migration_assets.target.deploy import load_plan

GROUP = "reports"
# Custom activity loads are not deps: one halted type (its phase check failed) must not hide the
# reconciliation of everything else. A low priority runs the reports after them in the same run (the
# in-process executor starts a step only when no higher-priority step is ready).
LOADED = [loaded_key(t) for t in ORDER]
REJECTED_COLUMNS = ["table", "close_id", "column", "value", "reason", "cascade"]
AFTER_LOADS = {"dagster/priority": "-10"}
RECON_COLUMNS = [
    "table",
    "close_objects",
    "staged",
    "rejected_at_staging",
    "excluded",
    "loaded",
    "rejected_at_load",
    "rejected",
    "read_back",
    "status",
]


def _count(con: duckdb.DuckDBPyConnection, schema: str, table: str, expr: str = "count(*)") -> int | None:
    if not table_exists(con, schema, table):
        return None
    row = con.execute(f"SELECT {expr} FROM {schema}.{quote(table)}").fetchall()
    return int(row[0][0]) if row else 0


def target_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(Dataverse table, staged table) of every table the migration loads."""
    out = [(t, t) for t in ORDER]
    try:
        plan = load_plan(con)
        out += [(t.logical_name, f"custom_activity_{t.logical_name}") for t in plan.tables]
    except Exception:  # noqa: BLE001 - no plan yet: standard tables only
        pass
    return out


def close_objects(con: duckdb.DuckDBPyConnection, config: MappingConfig, table: str) -> int | None:
    sources = sorted({o.source for o in config.objects if o.table == table})
    if not sources and table_exists(con, "close", "custom_activity_types"):
        raw = [
            json.loads(r[0]) for r in con.execute('SELECT raw FROM close."custom_activity_types"').fetchall()
        ]
        type_ids = [
            t.close_type_id for t in activity_types(raw, config.settings.publisher_prefix) if t.table == table
        ]
        if type_ids and table_exists(con, "close", "custom_activities"):
            rows = con.execute(
                'SELECT count(*) FROM close."custom_activities" WHERE custom_activity_type_id = ?',
                [type_ids[0]],
            ).fetchall()
            return int(rows[0][0])
    counts = [_count(con, "close", s) for s in sources]
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def read_back_ids(client: DataverseClient, table: str, closeid: str) -> set[str]:
    meta = client.metadata(table)
    flt = f"{closeid} ne null" if closeid in meta.attributes else None
    return {
        str(r[meta.primary_id]).lower() for r in client.query(table, select=[meta.primary_id], filter=flt)
    }


def last_migrate_run(con: duckdb.DuckDBPyConnection) -> str | None:
    if not table_exists(con, "ledger", "runs"):
        return None
    row = con.execute(
        "SELECT run_id FROM ledger.runs WHERE kind = 'migrate' ORDER BY started_at DESC LIMIT 1"
    ).fetchall()
    return row[0][0] if row else None


def derived(config: MappingConfig, table: str) -> bool:
    """Rows not one per Close object (an Account per distinct lead name): accounted from staged rows."""
    return any(o.table == table and "_id>" not in o.natural_key for o in config.objects)


def run_halts(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Asset key (`staged/contact`) -> why it halted in this run: a failed blocking check (its name and
    description), a failed step, or a planned materialization that did not happen."""
    types = {
        DagsterEventType.ASSET_CHECK_EVALUATION,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    }
    halts: dict[str, str] = {}
    planned: set[str] = set()
    done: set[str] = set()
    first_failure = ""
    for record in instance.all_logs(run_id, of_type=types):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.asset_check_evaluation_data
            # A failed check halts only at severity ERROR (a dry run records WARN and goes on).
            if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
                key = data.asset_key.to_user_string()
                why = f"check {data.check_name} failed: {data.description or 'see the check in the UI'}"
                halts.setdefault(key, why)
                first_failure = first_failure or f"{key} {why}"
        elif event.event_type == DagsterEventType.STEP_FAILURE and event.step_key:
            error = event.step_failure_data.error if event.step_failure_data else None
            message = error.message.strip().splitlines()[0] if error and error.message else "failed"
            key = event.step_key.replace("__", "/", 1)
            halts.setdefault(key, f"step failed: {message}")
            first_failure = first_failure or f"{key}: {message}"
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED and event.asset_key:
            planned.add(event.asset_key.to_user_string())
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION and event.asset_key:
            done.add(event.asset_key.to_user_string())
    for key in sorted(planned - done):
        if key.startswith("loaded/") and key not in halts:
            halts[key] = f"{key} did not run" + (
                f"; the run halted at {first_failure}" if first_failure else ""
            )
    return halts


def halt_reason(halts: dict[str, str], staged: str) -> str | None:
    for key in (f"staged/{staged}", f"loaded/{staged}"):
        if key in halts:
            return f"{key}: {halts[key]}"
    return None


def _rejections(
    con: duckdb.DuckDBPyConnection, table: str, staged: str, run: str | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if table_exists(con, "staged", f"{staged}_rejected"):
        cur = con.execute(
            f'SELECT _close_id, "column", value, reason, check_name FROM staged.{quote(staged + "_rejected")}'
        )
        for cid, column, value, reason, check in cur.fetchall():
            cascade = reason if check == "cascade" or str(reason or "").startswith("because ") else ""
            rows.append(
                {
                    "table": table,
                    "close_id": cid,
                    "column": column,
                    "value": value,
                    "reason": reason,
                    "cascade": cascade,
                    "excluded": check in EXCLUSIONS,
                    "kept": check == KEPT_IN_TARGET,
                }
            )
    if run is not None and table_exists(con, "ledger", "rejected"):
        cur = con.execute(
            "SELECT close_id, record_id, code, message FROM ledger.rejected WHERE run_id = ? AND table_name = ?",
            [run, table],
        )
        for cid, rid, code, message in cur.fetchall():
            if code == OVERSIZE_CODE:  # a file above the upload limit: listed for the admin, not an error
                rows.append(
                    {
                        "table": table,
                        "close_id": cid or rid,
                        "column": "_file_size",
                        "value": code,
                        "reason": message,
                        "cascade": "",
                        "excluded": True,
                        "at_load": True,
                    }
                )
                continue
            rows.append(
                {
                    "table": table,
                    "close_id": cid or rid,
                    "column": "(record)",
                    "value": code,
                    "reason": f"rejected by Dataverse: {message}",
                    "cascade": "",
                    "excluded": False,
                }
            )
    return rows


def reconcile(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    config: MappingConfig,
    halts: dict[str, str] | None = None,
    rejected_file: Callable[[str, list[dict[str, Any]]], str] | None = None,
) -> list[dict[str, Any]]:
    """One row per target table. `halts` (from `run_halts`) name what stopped in this run; `rejected_file`
    writes a table's rejected rows and returns the file name the status points to."""
    closeid = f"{config.settings.publisher_prefix}_closeid"
    run = last_migrate_run(con)
    rows: list[dict[str, Any]] = []
    for table, staged in target_tables(con):
        try:
            pk: str | None = client.metadata(table).primary_id
        except DataverseError as exc:
            if "does not exist" not in str(exc):
                raise
            pk = None  # a custom table the run never created: a gate stopped it before schema/*
        staged_ids: set[str] | None = None
        if table_exists(con, "staged", staged):
            key = pk or "activityid"  # a custom table not created yet: custom activities key on activityid
            staged_ids = {
                str(r[0]).lower()
                for r in con.execute(f"SELECT {quote(key)} FROM staged.{quote(staged)}").fetchall()
            }
        back = read_back_ids(client, table, closeid) if pk is not None else set()
        missing = (
            None if pk is not None else "the table is not in the target: the run stopped before creating it"
        )
        rejections = _rejections(con, table, staged, run)
        at_staging = {r["close_id"] for r in rejections if r["column"] != "(record)" and not r["excluded"]}
        excluded = {r["close_id"] for r in rejections if r["excluded"] and not r.get("at_load")} - at_staging
        excluded_at_load = {r["close_id"] for r in rejections if r.get("at_load")} - excluded
        at_load = {r["close_id"] for r in rejections if r["column"] == "(record)"}
        loaded = len((staged_ids or set()) & back)
        counts = Counts(
            None if derived(config, table) else close_objects(con, config, table),
            None if staged_ids is None else len(staged_ids),
            len(at_staging),
            len(excluded),
            loaded,
            len(at_load),
            len(excluded_at_load),
            len({r["close_id"] for r in rejections if r.get("kept")} & excluded),
        )
        listed = [r for r in rejections if not r["excluded"] or r.get("kept")]
        name = rejected_file(table, listed) if rejected_file and listed else f"rejected_{table}.csv"
        rows.append(
            {
                "table": table,
                "close_objects": close_objects(con, config, table),
                "staged": counts.staged,
                "rejected_at_staging": counts.rejected_at_staging,
                "loaded": loaded,
                "excluded": counts.excluded + counts.excluded_at_load,
                "rejected_at_load": counts.rejected_at_load,
                "rejected": counts.rejected_at_staging + counts.rejected_at_load,
                "read_back": len(back),
                "status": status(counts, halt_reason(halts or {}, staged) or missing, name),
            }
        )
    return rows


@dg.asset(
    key=dg.AssetKey([GROUP, "reconciliation"]),
    group_name=GROUP,
    op_tags=AFTER_LOADS,
    pool="dataverse_api",
    description="Per table: Close objects, staged, rejected at staging, excluded, loaded, rejected at load, "
    "read back from Dataverse, and the status: ok, partial (N rejected, see <file>) or halted (<reason>).",
)
@reports_api_calls
def reconciliation(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    # No deps on loaded/*: a failed load would skip this step, and the failure is what it must report.
    # Its priority (AFTER_LOADS) runs it after every load of the run; the dry run leaves it out (jobs.py).
    config = load_mapping_config()
    run_id = context.run.run_id
    halts = run_halts(context.instance, run_id)

    def rejected_file(table: str, rows: list[dict[str, Any]]) -> str:
        _, path = write_report(run_id, f"rejected_{table}", "", rows, REJECTED_COLUMNS)
        path.with_suffix(".md").unlink(missing_ok=True)
        return path.name

    with warehouse.connect() as con:
        rows = reconcile(con, dataverse.get_client(), config, halts, rejected_file)
    md = "# Reconciliation\n\n" + markdown_table(rows, RECON_COLUMNS)
    md_path, csv_path = write_report(run_id, "reconciliation", md, rows, RECON_COLUMNS)
    return dg.MaterializeResult(
        metadata={
            "reconciliation": dg.MetadataValue.md(md),
            "report": str(md_path),
            "csv": str(csv_path),
            "tables_not_ok": sum(1 for r in rows if r["status"] != "ok"),
            "dagster/row_count": len(rows),
            "halted": sum(1 for r in rows if str(r["status"]).startswith("halted")),
        }
    )


def readback_table(
    con: duckdb.DuckDBPyConnection, client: DataverseClient, table: str, staged: str, sample: int, seed: int
) -> tuple[int, list[dict[str, Any]]]:
    """Compare `sample` random staged rows with what Dataverse returns, column by column (staged vs loaded:
    the end-to-end tests' exactness check; it cannot see a mapping error, reports/spot_check can)."""
    if not table_exists(con, "staged", staged):
        return 0, []
    frame = fetch_polars(con, f"SELECT * FROM staged.{quote(staged)}")
    if frame.height == 0:
        return 0, []
    picked = random.Random(f"{seed}:{table}").sample(range(frame.height), min(sample, frame.height))
    rows = [frame.row(i, named=True) for i in sorted(picked)]
    meta = client.metadata(table)
    lookups_nav = {c[: -len(ld.BIND)] for c in frame.columns if c.endswith(ld.BIND)}
    lookups = {}
    for nav in lookups_nav:
        rel = next((r for r in meta.many_to_one if r.navigation_property == nav), None)
        if rel is not None:
            lookups[nav] = ld.Lookup(
                nav,
                rel.referencing_attribute,
                rel.referenced_entity,
                client.entity_set(rel.referenced_entity),
            )
    plain = [
        c
        for c in frame.columns
        if not c.startswith("_")
        and not c.endswith(ld.BIND)
        and c in meta.attributes
        and c not in ld.NOT_COMPARED
    ]
    select = sorted(
        {meta.primary_id, *plain, *(f"_{lk.attribute}_value" for lk in lookups.values())}
        | ({"statecode", "statuscode"} & set(meta.attributes))
    )
    ids = [str(r[meta.primary_id]).lower() for r in rows]
    sets = {lk.target: lk.entity_set for lk in lookups.values()}
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), READ_CHUNK):
        values = ",".join(f"'{i}'" for i in ids[start : start + READ_CHUNK])
        flt = f"Microsoft.Dynamics.CRM.In(PropertyName='{meta.primary_id}',PropertyValues=[{values}])"
        for r in client.query(table, select=select, filter=flt, annotations=True):
            found[str(r[meta.primary_id]).lower()] = ld.current_payload(r, lookups, sets)
    mismatches: list[dict[str, Any]] = []
    key_cache: dict[tuple[str, str, str], str | None] = {}
    for row, rid in zip(rows, ids, strict=True):
        split = ld.split_row(row)
        base = {"table": table, "close_id": split.meta.get("_close_id"), "record_id": rid}
        current = found.get(rid)
        if current is None:
            mismatches.append({**base, "column": "(record)", "staged": "present", "dataverse": "missing"})
            continue
        for col, want in split.payload.items():
            nav = col[: -len(ld.BIND)] if col.endswith(ld.BIND) else None
            if nav in lookups and isinstance(want, str):
                want = resolve_key_bind(client, lookups[nav], want, key_cache) or want
            if (
                col in ld.NOT_COMPARED
                or (col not in meta.attributes and not col.endswith(ld.BIND))
                or col == meta.primary_id
            ):
                continue
            if not ld.same_value(want, current.get(col)):
                mismatches.append({**base, "column": col, "staged": want, "dataverse": current.get(col)})
        for col in sorted(split.nulls):  # emptied in Close: the loader clears these, so they must read empty
            attr = meta.attributes.get(col)
            if (
                attr is None
                or not attr.valid_for_update
                or col in ld.NOT_COMPARED
                or not ld.clearable(attr.attribute_type, attr.type_name, attr.is_custom, attr.required_level)
            ):
                continue
            if current.get(col) not in (None, ""):
                mismatches.append({**base, "column": col, "staged": None, "dataverse": current.get(col)})
        state = ld.desired_state(split.meta, table)
        if (
            state is not None
            and (current.get("statecode"), current.get("statuscode") if state[1] != -1 else -1) != state
        ):
            mismatches.append(
                {
                    **base,
                    "column": "statecode/statuscode",
                    "staged": str(state),
                    "dataverse": str((current.get("statecode"), current.get("statuscode"))),
                }
            )
    return len(rows), mismatches
