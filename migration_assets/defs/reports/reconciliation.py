"""reports/reconciliation and reports/spot_check: what went in, what came out, read back from Dataverse."""

import json
import random
from typing import Any

import dagster as dg
import duckdb
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import loaded_key, table_exists
from migration_assets.defs.loaded._lookups import READ_CHUNK, resolve_key_bind
from migration_assets.defs.loaded.tables import ORDER
from migration_assets.defs.reports._files import markdown_table, write_report
from migration_assets.defs.schema._deploy import load_plan
from migration_assets.lib import load_diff as ld
from migration_assets.lib.custom_activities import activity_types
from migration_assets.lib.mapping_config import MappingConfig, load_mapping_config
from migration_assets.resources.dataverse import DataverseClient, DataverseResource
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars

GROUP = "reports"
# Custom activity loads are not deps: one halted type (its phase check failed) must not hide the
# reconciliation of everything else. A low priority runs the reports after them in the same run.
LOADED = [loaded_key(t) for t in ORDER]
AFTER_LOADS = {"dagster/priority": "-10"}
RECON_COLUMNS = [
    "table",
    "close_objects",
    "staged",
    "rejected_at_staging",
    "loaded",
    "rejected_at_load",
    "read_back",
    "status",
]
SPOT_COLUMNS = ["table", "close_id", "record_id", "column", "staged", "dataverse"]
SPOT_SAMPLE = 40


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count(con: duckdb.DuckDBPyConnection, schema: str, table: str, expr: str = "count(*)") -> int | None:
    if not table_exists(con, schema, table):
        return None
    row = con.execute(f"SELECT {expr} FROM {schema}.{_q(table)}").fetchall()
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


def reconcile(
    con: duckdb.DuckDBPyConnection, client: DataverseClient, config: MappingConfig
) -> list[dict[str, Any]]:
    closeid = f"{config.settings.publisher_prefix}_closeid"
    run = last_migrate_run(con)
    rows: list[dict[str, Any]] = []
    for table, staged in target_tables(con):
        pk = client.metadata(table).primary_id
        staged_ids: set[str] = set()
        if table_exists(con, "staged", staged):
            staged_ids = {
                str(r[0]).lower() for r in con.execute(f"SELECT {_q(pk)} FROM staged.{_q(staged)}").fetchall()
            }
        back = read_back_ids(client, table, closeid)
        rejected_load = 0
        if run is not None:
            row = con.execute(
                "SELECT count(DISTINCT coalesce(record_id, close_id)) FROM ledger.rejected WHERE run_id = ? AND table_name = ?",
                [run, table],
            ).fetchall()
            rejected_load = int(row[0][0]) if row else 0
        loaded = len(staged_ids & back)
        entry = {
            "table": table,
            "close_objects": close_objects(con, config, table),
            "staged": len(staged_ids) if table_exists(con, "staged", staged) else None,
            "rejected_at_staging": _count(con, "staged", f"{staged}_rejected", "count(DISTINCT _close_id)"),
            "loaded": loaded,
            "rejected_at_load": rejected_load,
            "read_back": len(back),
        }
        entry["status"] = "ok" if entry["staged"] is not None and loaded == entry["staged"] else "CHECK"
        rows.append(entry)
    return rows


@dg.asset(
    key=dg.AssetKey([GROUP, "reconciliation"]),
    group_name=GROUP,
    deps=LOADED,
    op_tags=AFTER_LOADS,
    pool="dataverse_api",
    description="Per table: Close objects, staged, rejected at staging, loaded, rejected at load, read back "
    "from Dataverse (count of records carrying a Close id).",
)
def reconciliation(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    config = load_mapping_config()
    with warehouse.connect() as con:
        rows = reconcile(con, dataverse.get_client(), config)
    md = "# Reconciliation\n\n" + markdown_table(rows, RECON_COLUMNS)
    md_path, csv_path = write_report(context.run.run_id, "reconciliation", md, rows, RECON_COLUMNS)
    return dg.MaterializeResult(metadata={
        "reconciliation": dg.MetadataValue.md(md), "report": str(md_path), "csv": str(csv_path),
        "tables_not_ok": sum(1 for r in rows if r["status"] != "ok"), "dagster/row_count": len(rows),
    })  # fmt: skip


def spot_check_table(
    con: duckdb.DuckDBPyConnection, client: DataverseClient, table: str, staged: str, sample: int, seed: int
) -> tuple[int, list[dict[str, Any]]]:
    """Compare `sample` random staged rows with what Dataverse returns, column by column."""
    if not table_exists(con, "staged", staged):
        return 0, []
    frame = fetch_polars(con, f"SELECT * FROM staged.{_q(staged)}")
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


@dg.asset(
    key=dg.AssetKey([GROUP, "spot_check"]),
    group_name=GROUP,
    deps=LOADED,
    op_tags=AFTER_LOADS,
    pool="dataverse_api",
    description=f"{SPOT_SAMPLE} random records per table read back from Dataverse and compared column by column with staged.",
)
def spot_check(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    client = dataverse.get_client()
    summary: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    with warehouse.connect() as con:
        for table, staged in target_tables(con):
            checked, bad = spot_check_table(con, client, table, staged, SPOT_SAMPLE, seed=1)
            summary.append({"table": table, "checked": checked, "mismatches": len(bad)})
            mismatches += bad
    md = ("# Spot check\n\n" + markdown_table(summary, ["table", "checked", "mismatches"]) + "\n\n## Mismatches\n\n"
          + (markdown_table(mismatches, SPOT_COLUMNS) if mismatches else "None: every sampled record matches its staged row."))  # fmt: skip
    md_path, _ = write_report(context.run.run_id, "spot_check", md, mismatches, SPOT_COLUMNS)
    write_report(context.run.run_id, "spot_check_summary", md, summary, ["table", "checked", "mismatches"])
    return dg.MaterializeResult(metadata={
        "spot_check": dg.MetadataValue.md(md), "report": str(md_path), "mismatches": len(mismatches),
        "checked": sum(s["checked"] for s in summary),
    })  # fmt: skip
