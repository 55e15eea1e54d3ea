"""reports/spot_check: sampled records read back from Dataverse and compared with Close, the source.

Per loaded table a deterministic sample (seeded by the run id) is read from Dataverse with formatted values
(`Prefer: odata.include-annotations="OData.Community.Display.V1.FormattedValue"`) and from Close (the API,
GET /lead/{id}/ ... per object; or, when the source is a JSON export file, the raw JSON kept in close.*).
Each mapped column is compared by the rules of lib/spot_compare (labels for choices, instants and dates,
units for money, Close ids for lookups), which never call the staging transforms: a mapping defect shows.
The asset's check `matches_close` fails on any mismatch.
"""

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import duckdb
from dagster import AssetExecutionContext

from migration_assets.audit import spot_compare as sc
from migration_assets.audit.files import markdown_table, write_report
from migration_assets.clients.close.client import CloseClient
from migration_assets.clients.close.http import CloseAPIError
from migration_assets.clients.dataverse.client import FORMATTED_VALUES, DataverseClient
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.defs.reports.reconciliation import AFTER_LOADS, GROUP, LOADED, target_tables
from migration_assets.mapping.config import MappingConfig, ObjectMap, load_mapping_config
from migration_assets.mapping.custom_fields import with_custom_fields
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource, quote, table_exists
from migration_assets.target.deploy import load_plan

SAMPLE = 30
READ_CHUNK = 25  # ids per Dataverse read (a $filter of `pk eq ... or ...` stays well under URL limits)
KEY = dg.AssetKey([GROUP, "spot_check"])
CHECK = "matches_close"
COLUMNS = ["table", "close_id", "record_id", "column", "status", "close", "dataverse", "why", "source"]
# Close object endpoints (close_api.md): GET <path>/<id>/ for one object of each extracted table.
CLOSE_PATHS = {
    "leads": "lead",
    "contacts": "contact",
    "opportunities": "opportunity",
    "tasks": "task",
    "calls": "activity/call",
    "emails": "activity/email",
    "sms": "activity/sms",
    "meetings": "activity/meeting",
    "notes": "activity/note",
    "custom_activities": "activity/custom",
    "lead_status_change": "activity/status_change/lead",
    "opportunity_status_change": "activity/status_change/opportunity",
}
_CF = re.compile(r"\((cf_[A-Za-z0-9]+)\)")
LOOKUP_TYPES = ("Lookup", "Customer", "Owner")
LOGICAL_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname"
# Formatted values (labels, names) and, for polymorphic lookups, which table the value points at.
ANNOTATIONS = f"{FORMATTED_VALUES},Microsoft.Dynamics.CRM.lookuplogicalname"


@dataclass
class CloseSource:
    """Where Close objects are read: the API (`client`) or the raw JSON in close.* (export file)."""

    con: duckdb.DuckDBPyConnection
    client: CloseClient | None
    cache: dict[tuple[str, str], dict[str, Any] | None]

    @property
    def name(self) -> str:
        return "Close API" if self.client is not None else "close.* raw JSON (JSON export file)"

    def raw(self, table: str, close_id: str) -> dict[str, Any] | None:
        if not table_exists(self.con, "close", table):
            return None
        cols = {r[0] for r in self.con.execute(f"DESCRIBE close.{quote(table)}").fetchall()}
        if "raw" not in cols:
            return None
        row = self.con.execute(
            f"SELECT raw FROM close.{quote(table)} WHERE id = ? LIMIT 1", [close_id]
        ).fetchall()
        if not row:
            return None
        obj = json.loads(row[0][0])
        if table == "leads" and "contacts" not in obj and table_exists(self.con, "close", "contacts"):
            # The extraction keeps a lead's contacts in close.contacts; Close lists them oldest first.
            contacts = self.con.execute(
                "SELECT raw FROM close.contacts WHERE lead_id = ? ORDER BY date_created NULLS LAST, id",
                [close_id],
            ).fetchall()
            obj["contacts"] = [json.loads(c[0]) for c in contacts]
        return obj

    def readable(self, table: str, object_name: str) -> bool:
        """Whether objects of this close.* table exist in Close on their own (not derived rows)."""
        if self.client is not None and (object_name in CLOSE_PATHS or table in CLOSE_PATHS):
            return True
        if not table_exists(self.con, "close", table):
            return False
        return "raw" in {r[0] for r in self.con.execute(f"DESCRIBE close.{quote(table)}").fetchall()}

    def get(self, table: str, close_id: str, object_name: str = "") -> dict[str, Any] | None:
        key = (table, close_id)
        if key not in self.cache:
            self.cache[key] = self._fetch(table, close_id, object_name)
        return self.cache[key]

    def _fetch(self, table: str, close_id: str, object_name: str) -> dict[str, Any] | None:
        path = CLOSE_PATHS.get(object_name) or CLOSE_PATHS.get(table)
        if self.client is None or path is None:
            return self.raw(table, close_id)
        try:
            return self.client.get(f"{path}/{close_id}/")
        except CloseAPIError as exc:
            if exc.status == 404:
                return None
            raise


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


def dv_column(meta: EntityMeta, target: str) -> str | None:
    """The property a field map target reads back as: `_x_value` for lookups (also when the map names
    the navigation property, e.g. customerid_account), the column itself otherwise."""
    if target == "overriddencreatedon" and "createdon" in meta.attributes:
        return "createdon"  # the record's creation date IS the overridden date (the override is write-only)
    attr = meta.attributes.get(target)
    if attr is not None:
        return f"_{target}_value" if attr.attribute_type in LOOKUP_TYPES else target
    for rel in meta.many_to_one:
        if rel.navigation_property == target:
            return f"_{rel.referencing_attribute}_value"
    return None


def view_of(meta: EntityMeta, record: Mapping[str, Any], targets: Iterable[str]) -> dict[str, Any]:
    """The record keyed by field-map target. A polymorphic lookup (objectid, regardingobjectid, customerid)
    reads as one `_x_value` for all its targets: a target sees it only when it points at its own table."""
    view: dict[str, Any] = {}
    for target in targets:
        prop = dv_column(meta, target)
        if prop is None:
            continue
        value, formatted = record.get(prop), record.get(f"{prop}{sc.FORMATTED}")
        rel = next((r for r in meta.many_to_one if r.navigation_property == target), None)
        pointed = record.get(f"{prop}{LOGICAL_NAME}")
        if rel is not None and pointed is not None and pointed != rel.referenced_entity:
            value = formatted = None
        view[target], view[f"{target}{sc.FORMATTED}"] = value, formatted
    return view


def read_dataverse(
    client: DataverseClient, meta: EntityMeta, ids: list[str], columns: set[str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    select = sorted(columns | {meta.primary_id})
    for start in range(0, len(ids), READ_CHUNK):
        flt = " or ".join(f"{meta.primary_id} eq {i}" for i in ids[start : start + READ_CHUNK])
        for rec in client.query(meta.logical_name, select=select, filter=flt, annotations=ANNOTATIONS):
            found[str(rec[meta.primary_id]).lower()] = rec
    return found


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
        "values (labels of choices, lookup names).\n\n"
        + markdown_table(summary, ["table", "sampled", "compared", "mismatches", "not_compared"])
        + "\n\n## Mismatches\n\n"
        + (markdown_table(bad, COLUMNS[:-1]) if bad else "None: every compared value equals its Close value.")
        + "\n\n## Not compared\n\n"
        + (markdown_table(not_compared, ["table", "column", "why", "records"]) if not_compared else "(none)")
    )


@dg.asset(
    key=KEY,
    group_name=GROUP,
    deps=LOADED,
    op_tags=AFTER_LOADS,
    pool="dataverse_api",
    check_specs=[
        # Blocking: a difference fails the step, so the run (and `close2d365 run`) reports it as failed.
        dg.AssetCheckSpec(
            CHECK, asset=KEY, blocking=True, description="Every sampled value equals its Close value."
        )
    ],
    description=f"Up to {SAMPLE} records per table read back from Dataverse (formatted values) and compared "
    "column by column with the same records read from Close.",
)
@reports_api_calls
def spot_check(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
    close: CloseResource,
) -> dg.MaterializeResult:
    api = None if close.source == "file" else close.get_client()
    with warehouse.connect() as con:
        sampled, rows, source = run_spot_check(con, dataverse.get_client(), api, context.run.run_id)
    md = render(sampled, rows, source)
    kept = [r for r in rows if r["status"] != sc.MATCH]
    md_path, csv_path = write_report(context.run.run_id, "spot_check", md, kept, COLUMNS)
    ids = [{"table": t, "close_id": i} for t, lst in sampled.items() for i in lst]
    listing = f"# Spot check sample\n\n{len(ids)} Close ids, seeded by run {context.run.run_id}: see the CSV."
    _, ids_path = write_report(context.run.run_id, "spot_check_sampled", listing, ids, ["table", "close_id"])
    bad = [r for r in rows if r["status"] == sc.MISMATCH]
    return dg.MaterializeResult(
        metadata={
            "spot_check": dg.MetadataValue.md(md),
            "report": str(md_path),
            "csv": str(csv_path),
            "sampled_ids": dg.MetadataValue.json(sampled),
            "sampled_csv": str(ids_path),
            "close_source": source,
            "mismatches": len(bad),
            "compared": sum(1 for r in rows if r["status"] != sc.NOT_COMPARED),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK,
                passed=not bad,
                description=(
                    f"{len(bad)} values differ from Close (see {csv_path})"
                    if bad
                    else "every compared value equals its Close value"
                ),
                metadata={
                    "mismatches": len(bad),
                    "first": dg.MetadataValue.md(markdown_table(bad[:20], COLUMNS)),
                },
            )
        ],
    )
