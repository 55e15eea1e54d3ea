"""staged/mapping: the reviewable mapping proposal, and the gate every loaded/* asset waits for.

`propose_mapping()` (called by `close2d365 propose-mapping`) proposes a column for every Close custom
field of leads, contacts and opportunities (`lib/proposal.py`: existing Dataverse column when the name
and type fit, else a new custom column sized from the data) and lists the custom activity types
(`lib/custom_activity_plan.py`). It writes `mappings/custom_fields.yaml` (every entry `confirmed: false`)
and `mappings/custom_activities.yaml`. The asset never touches `mappings/` (a reviewed file is never
overwritten by a run): it writes a fresh proposal to `$CLOSE2D365_HOME/reports/mapping_proposal/` for
review or diffing, and shows the state of the mapping; the blocking check `mapping_confirmed` fails until
a human has confirmed every entry and every Close custom field / activity type in the data has one.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from migration_assets.defs.staged._common import GROUP, TARGET_METADATA_KEY, close_key, markdown
from migration_assets.lib.custom_activity_plan import TYPES_FILE, load_types, render_types
from migration_assets.lib.mapping_config import load_mapping_config
from migration_assets.lib.proposal import parse_proposal, propose, render_proposal
from migration_assets.lib.staging_source import table_exists
from migration_assets.lib.yaml_loc import MappingError
from migration_assets.resources.warehouse import WarehouseResource, default_home

PROPOSAL_FILE = "custom_fields.yaml"
MAPPING_KEY = dg.AssetKey([GROUP, "mapping"])
OBJECT_TABLES = {"lead": "leads", "contact": "contacts", "opportunity": "opportunities"}


class ProposalError(RuntimeError):
    """The proposal cannot be written (missing extraction, reviewed file in the way)."""


def _raw(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    if not table_exists(con, "close", table):
        raise ProposalError(
            f"close.{table} is missing: run the extraction (close/*) before proposing a mapping"
        )
    return [json.loads(r[0]) for r in con.execute(f'SELECT raw FROM close."{table}"').fetchall()]


def close_custom_fields(con: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    rows = con.execute(
        'SELECT object_type, raw FROM close."custom_fields" ORDER BY object_type, id'
    ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, raw in rows:
        out.setdefault(str(kind), []).append(json.loads(raw))
    return out


def samples(con: duckdb.DuckDBPyConnection, fields: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """Values of each lead/contact/opportunity custom field seen in the data (size and type evidence)."""
    out: dict[str, list[Any]] = {}
    for kind, table in OBJECT_TABLES.items():
        for f in fields.get(kind, []):
            path = '$."custom.' + str(f["id"]) + '"'
            rows = con.execute(f"SELECT json_extract(raw, '{path}')::VARCHAR FROM close.\"{table}\" "
                               f"WHERE json_extract(raw, '{path}') IS NOT NULL").fetchall()  # fmt: skip
            out[str(f["id"])] = [json.loads(r[0]) for r in rows if r[0] is not None]
    return out


def target_attributes(
    con: duckdb.DuckDBPyConnection, dataverse: Any | None
) -> dict[str, list[dict[str, Any]]]:
    """Existing columns of lead/contact/opportunity: from the Dataverse client, else the metadata cache."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table in OBJECT_TABLES:
        # Options (value + label) let a Close choices field be matched to an existing choice column.
        if dataverse is not None:
            meta = dataverse.metadata(table)
            out[table] = [{"LogicalName": a.logical_name, "AttributeType": a.attribute_type, "MaxLength": a.max_length,
                           "Targets": a.targets, "DisplayName": None, "AttributeTypeName": a.type_name or None,
                           "Options": [{"Value": o.value, "Label": o.label} for o in a.options]}
                          for a in meta.attributes.values()]  # fmt: skip
        elif table_exists(con, "staged", "target_metadata"):
            rows = con.execute(
                "SELECT rules FROM staged.target_metadata WHERE table_name = ?", [table]
            ).fetchall()
            cols = json.loads(rows[0][0])["columns"] if rows else {}
            out[table] = [{"LogicalName": c["name"], "AttributeType": c["attribute_type"], "MaxLength": c["max_length"],
                           "Targets": c["targets"], "DisplayName": None, "AttributeTypeName": c.get("type_name") or None,
                           "Options": [{"Value": v, "Label": t} for v, t in c.get("option_labels") or []]}
                          for c in cols.values()]  # fmt: skip
    return out


def write_proposal(con: duckdb.DuckDBPyConnection, root: Path, prefix: str, dataverse: Any | None = None,
                   force: bool = False) -> list[Path]:  # fmt: skip
    """Write the proposal files that are missing (all of them with force); returns the files written."""
    written = []
    fields_path, types_path = root / PROPOSAL_FILE, root / TYPES_FILE
    if force or not fields_path.is_file():
        fields = close_custom_fields(con) if table_exists(con, "close", "custom_fields") else {}
        proposals = propose(fields, samples(con, fields), target_attributes(con, dataverse), prefix)
        fields_path.write_text(render_proposal(proposals), encoding="utf-8")
        written.append(fields_path)
    if force or not types_path.is_file():
        types_path.write_text(render_types(_raw(con, "custom_activity_types"), prefix), encoding="utf-8")
        written.append(types_path)
    return written


def propose_mapping(warehouse: WarehouseResource | None = None, dataverse: Any | None = None,
                    mappings_root: Path | None = None, force: bool = False) -> Path:  # fmt: skip
    """`close2d365 propose-mapping`: write `mappings/custom_fields.yaml` (+ custom_activities.yaml) from the
    extracted Close data and the target's columns; returns the custom_fields.yaml path.

    dataverse: a DataverseClient (or None: the cached target metadata, else every field becomes a new column).
    force: overwrite reviewed files (their confirmations are lost), else refuse."""
    cfg = load_mapping_config(mappings_root)
    path = cfg.root / PROPOSAL_FILE
    if path.is_file() and not force:
        raise ProposalError(
            f"{path} exists (it may hold reviewed confirmations); use --force to overwrite it"
        )
    with (warehouse or WarehouseResource()).connect() as con:
        write_proposal(con, cfg.root, cfg.settings.publisher_prefix, dataverse, force=True)
    return path


def mapping_status(con: duckdb.DuckDBPyConnection, root: Path, prefix: str) -> tuple[list[str], pl.DataFrame]:
    """(problems, entries table) of the mapping files against the data."""
    problems: list[str] = []
    entries = pl.DataFrame()
    if not (root / PROPOSAL_FILE).is_file():
        return [
            f"mappings/{PROPOSAL_FILE} is missing: run close2d365 propose-mapping, review, confirm"
        ], entries
    try:
        proposals = parse_proposal(root / PROPOSAL_FILE, f"{root.name}/{PROPOSAL_FILE}", prefix)
    except MappingError as exc:
        return [str(exc)], entries
    entries = pl.DataFrame([{"table": p.table, "close_name": p.close_name, "action": p.action, "target": p.target,
                             "type": p.column.attribute_type, "confidence": p.confidence, "confirmed": p.confirmed}
                            for p in proposals])  # fmt: skip
    open_ = [p for p in proposals if not p.confirmed]
    if open_:
        problems.append(f"{len(open_)} of {len(proposals)} custom field mappings are not confirmed yet "
                        f"(set confirmed: true in mappings/{PROPOSAL_FILE} after review)")  # fmt: skip
    known = {p.close_field_id for p in proposals}
    if table_exists(con, "close", "custom_fields"):
        data = close_custom_fields(con)
        missing = [f["name"] for k in OBJECT_TABLES for f in data.get(k, []) if str(f["id"]) not in known]
        if missing:
            problems.append(
                f"Close custom fields without a mapping entry: {', '.join(missing)} (re-run propose-mapping)"
            )
    try:
        listed = {t.name.casefold() for t in load_types(root)}
        if not (root / TYPES_FILE).is_file():
            problems.append(f"mappings/{TYPES_FILE} is missing (run close2d365 propose-mapping)")
        elif table_exists(con, "close", "custom_activity_types"):
            names = [r[0] for r in con.execute('SELECT name FROM close."custom_activity_types"').fetchall()]
            absent = [n for n in names if str(n).casefold() not in listed]
            if absent:
                problems.append(f"custom activity types not in mappings/{TYPES_FILE}: {', '.join(absent)} "
                                "(their instances would not migrate; re-run propose-mapping or add them)")  # fmt: skip
    except MappingError as exc:
        problems.append(str(exc))
    return problems, entries


@dg.asset(
    key=MAPPING_KEY,
    group_name=GROUP,
    deps=[
        close_key("custom_fields"),
        close_key("custom_activity_types"),
        *(close_key(t) for t in OBJECT_TABLES.values()),
        TARGET_METADATA_KEY,
    ],  # fmt: skip
    description="The custom field / custom activity mapping proposal (written when missing) and its review state.",
)
def mapping(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    out = default_home() / "reports" / "mapping_proposal"
    out.mkdir(parents=True, exist_ok=True)
    with warehouse.connect() as con:
        written = write_proposal(con, out, cfg.settings.publisher_prefix, force=True)
        problems, entries = mapping_status(con, cfg.root, cfg.settings.publisher_prefix)
    context.log.info(f"fresh proposal in {out}; the mapping in use is {cfg.root}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": entries.height,
        "fresh_proposal": ", ".join(str(p) for p in written),
        "mapping_in_use": str(cfg.root),
        "open_problems": len(problems),
        "entries": dg.MetadataValue.md(markdown(entries, max_rows=100)),
    })  # fmt: skip


@dg.asset_check(
    asset=MAPPING_KEY,
    name="mapping_confirmed",
    blocking=True,
    description="Every custom field mapping is confirmed and every Close custom field / activity type is mapped.",
)
def mapping_confirmed(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    cfg = load_mapping_config()
    with warehouse.connect() as con:
        problems, entries = mapping_status(con, cfg.root, cfg.settings.publisher_prefix)
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or "the mapping is confirmed",
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "unconfirmed": dg.MetadataValue.md(markdown(entries.filter(~pl.col("confirmed")), max_rows=50))
            if entries.height
            else "none",
        },  # fmt: skip
    )
