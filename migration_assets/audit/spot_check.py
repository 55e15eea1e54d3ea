"""The spot check: sampled records read back from Dataverse and compared with Close, the source.

Per loaded table a deterministic sample (seeded by the run id) is read from Dataverse with formatted values
and from Close (audit/spot_sources). Each mapped column is compared by the rules of audit/spot_compare
(labels for choices, instants and dates, units for money, Close ids for lookups), which never call the
staging transforms: a mapping defect shows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import duckdb

from migration_assets.audit import spot_compare as sc
from migration_assets.audit.reconciliation import target_tables
from migration_assets.audit.spot_sources import CloseSource, dv_column, read_dataverse, view_of
from migration_assets.clients.close.client import CloseClient
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.mapping.config import MappingConfig, ObjectMap, load_mapping_config
from migration_assets.mapping.custom_fields import with_custom_fields
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import quote, table_exists
from migration_assets.target.deploy import load_plan

SAMPLE = 30
COLUMNS = ["table", "close_id", "record_id", "column", "status", "close", "dataverse", "why", "source"]
_CF = re.compile(r"\((cf_[A-Za-z0-9]+)\)")


def sample(
    con: duckdb.DuckDBPyConnection, staged: str, pk: str, run_id: str, size: int
) -> list[dict[str, Any]]:
    """`size` staged rows (all when fewer), the same for the same run id."""
    if not table_exists(con, "staged", staged):
        return []
    cur = con.execute(f"SELECT * FROM staged.{quote(staged)} ORDER BY {quote(pk)}")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    picked = random.Random(f"{run_id}:{staged}").sample(range(len(rows)), min(size, len(rows)))
    return [rows[i] for i in sorted(picked)]


def _object_for(config: MappingConfig, table: str, close_object: str | None) -> ObjectMap | None:
    objs = [o for o in config.objects if o.table == table and o.name in config.field_maps]
    if len(objs) == 1:
        return objs[0]
    return next((o for o in objs if o.name == close_object), None) or next(
        (o for o in objs if close_object and close_object.endswith(o.name)), None
    )


def _activity_rules(con: duckdb.DuckDBPyConnection, table: str, prefix: str) -> list[sc.Rule]:
    """Custom activity columns: the standard ones this project writes, then one per planned Close field."""
    rules = [
        sc.Rule(f"{prefix}_closeid", "text", ("id",), {"final": "text", "core": ()}),
        sc.Rule("ownerid", "owner", ("user_id",)),
        sc.Rule("regardingobjectid", "record_id", ("lead_id",), {"kind": "lead"}),
        sc.Rule("overriddencreatedon", "datetime", ("date_created",)),
    ]
    for col in load_plan(con).columns:
        m = _CF.search(col.description or "")
        if col.table == table and m:
            rules.append(
                sc.rule_for_column(
                    col.logical_name,
                    col.type,
                    f"custom.{m.group(1)}",
                    col.format,
                    col.max_length,
                    col.lookup_target,
                )
            )
    return rules


def _joined(source: CloseSource, obj: ObjectMap, close_obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for join in obj.joins:
        parent_id = close_obj.get(join.left_on)
        parent = source.get(join.source, str(parent_id)) if parent_id else None
        out[join.prefix] = parent or {}
    return out


def check_table(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    source: CloseSource,
    config: MappingConfig,
    ctx: sc.Context,
    table: str,
    staged: str,
    run_id: str,
    size: int = SAMPLE,
) -> tuple[list[str], list[dict[str, Any]]]:
    """(sampled Close ids, one outcome row per compared or not-compared column) for one table."""
    meta = client.metadata(table)
    prefix = config.settings.publisher_prefix
    rows = sample(con, staged, meta.primary_id, run_id, size)
    closeid = f"{prefix}_closeid"
    custom_activity = staged.startswith("custom_activity_")
    plans: dict[str, tuple[ObjectMap | None, list[sc.Rule]]] = {}
    for row in rows:
        name = row.get("_close_object") or ""
        if name in plans:
            continue
        if custom_activity:
            plans[name] = (None, _activity_rules(con, table, prefix))
            continue
        obj = _object_for(config, table, name)
        if obj is None:
            plans[name] = (None, [])
            continue
        fmap = with_custom_fields(config, obj.name).field_map(obj.name)
        plans[name] = (obj, [sc.rule_for(spec, meta.primary_id) for spec in fmap.fields])
    wanted = {c for _, rules in plans.values() for r in rules if (c := dv_column(meta, r.column))}
    ids = [str(r[meta.primary_id]).lower() for r in rows]
    found = read_dataverse(client, meta, ids, wanted)
    out: list[dict[str, Any]] = []
    sampled: list[str] = []
    for row, rid in zip(rows, ids, strict=True):
        close_id = str(row.get(closeid) or row.get("_close_id"))
        sampled.append(close_id)
        obj, rules = plans[row.get("_close_object") or ""]
        base = {"table": table, "close_id": close_id, "record_id": rid, "source": source.name}
        src_table = "custom_activities" if custom_activity else (obj.source if obj else "")
        if rules and not source.readable(src_table, row.get("_close_object") or ""):
            why = (
                f"derived by the extraction ({src_table}): no Close object of its own; its parent is checked"
            )
            out.append({**base, "column": "(record)", "status": sc.NOT_COMPARED, "why": why})
            continue
        close_obj = source.get(src_table, close_id, row.get("_close_object") or "") if src_table else None
        record = found.get(rid)
        if not rules or close_obj is None or record is None:
            why = (
                "the record is missing in Dataverse"
                if record is None and close_obj is not None
                else f"no Close object {src_table}/{close_id} ({source.name})"
                if rules
                else f"no field map for Close object {row.get('_close_object')!r}"
            )
            status = sc.MISMATCH if rules else sc.NOT_COMPARED
            out.append({**base, "column": "(record)", "status": status, "why": why})
            continue
        joined = _joined(source, obj, close_obj) if obj else {}
        view = view_of(meta, record, [r.column for r in rules])
        for rule in rules:
            column = dv_column(meta, rule.column)
            if column is None:
                out.append(
                    {
                        **base,
                        "column": rule.column,
                        "status": sc.NOT_COMPARED,
                        "why": "not a Dataverse column",
                    }
                )
                continue
            res = sc.evaluate(rule, close_obj, joined, view, rule.column, ctx)
            out.append(
                {
                    **base,
                    "column": rule.column,
                    "status": res.status,
                    "close": res.close,
                    "dataverse": res.dataverse,
                    "why": res.why,
                }
            )
    return sampled, out


def _context(con: duckdb.DuckDBPyConnection, client: DataverseClient, config: MappingConfig) -> sc.Context:
    owners: dict[str, str] = {}
    if table_exists(con, "staged", "owner_map"):
        owners = {
            str(u): str(s).lower()
            for u, s in con.execute("SELECT close_user_id, systemuserid FROM staged.owner_map").fetchall()
            if s is not None
        }
    keys: dict[tuple[str, str, str], Any] = {}

    def lookup_key(table: str, record_id: str, column: str) -> Any:
        if (table, record_id, column) not in keys:
            rec = client.get(table, record_id, [column]) or {}
            keys[(table, record_id, column)] = rec.get(column)
        return keys[(table, record_id, column)]

    fallback = None  # owners.yaml fallback_owner (an email): records of unknown or missing users go there
    if config.owners.fallback_owner and table_exists(con, "staged", "target_systemusers"):
        row = con.execute(
            "SELECT systemuserid FROM staged.target_systemusers WHERE lower(internalemailaddress) = lower(?)",
            [config.owners.fallback_owner],
        ).fetchall()
        fallback = str(row[0][0]).lower() if row else None
    owner_for: Callable[[str | None], str | None] = lambda uid: owners.get(uid or "", fallback)  # noqa: E731
    present: dict[tuple[str, str], bool] = {}

    def exists(table: str, record_id: str) -> bool:
        if (table, record_id) not in present:
            meta = client.metadata(table)
            present[(table, record_id)] = client.get(table, record_id, [meta.primary_id]) is not None
        return present[(table, record_id)]

    return sc.Context(owner_for, lookup_key, exists, config.choice_sets, config.accounts.placeholder_name)


def run_spot_check(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    close: CloseClient | None,
    run_id: str,
    size: int = SAMPLE,
) -> tuple[dict[str, list[str]], list[dict[str, Any]], str]:
    """Sampled Close ids per table, outcome rows, and the Close source used."""
    config = load_mapping_config()
    source = CloseSource(con, close, {})
    ctx = _context(con, client, config)
    sampled: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    for table, staged in target_tables(con):
        ids, outcome = check_table(con, client, source, config, ctx, table, staged, run_id, size)
        sampled[table] = ids
        rows += outcome
    return sampled, rows, source.name


def summary_rows(sampled: Mapping[str, list[str]], rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for table, ids in sampled.items():
        mine = [r for r in rows if r["table"] == table]
        yield {
            "table": table,
            "sampled": len(ids),
            "compared": sum(1 for r in mine if r["status"] != sc.NOT_COMPARED),
            "mismatches": sum(1 for r in mine if r["status"] == sc.MISMATCH),
            "not_compared": sum(1 for r in mine if r["status"] == sc.NOT_COMPARED),
        }


def render(sampled: Mapping[str, list[str]], rows: list[dict[str, Any]], source: str) -> str:
    bad = [r for r in rows if r["status"] == sc.MISMATCH]
    skipped = {}
    for r in rows:
        if r["status"] == sc.NOT_COMPARED:
            skipped.setdefault((r["table"], r["column"], r.get("why") or ""), 0)
            skipped[(r["table"], r["column"], r.get("why") or "")] += 1
    summary = list(summary_rows(sampled, rows))
    not_compared = [
        {"table": t, "column": c, "why": w, "records": n} for (t, c, w), n in sorted(skipped.items())
    ]
    return (
        f"# Spot check against Close\n\nClose values read from: {source}. Dataverse values read with formatted "
        "values (labels of choices, lookup names). The sampled Close ids: spot_check_sampled.csv.\n\n"
        + markdown_table(summary, ["table", "sampled", "compared", "mismatches", "not_compared"])
        + "\n\n## Mismatches\n\n"
        + (markdown_table(bad, COLUMNS[:-1]) if bad else "None: every compared value equals its Close value.")
        + "\n\n## Not compared\n\n"
        + (markdown_table(not_compared, ["table", "column", "why", "records"]) if not_compared else "(none)")
    )
