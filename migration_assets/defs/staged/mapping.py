"""staged/mapping: the reviewable mapping proposal, and the gate every loaded/* asset waits for.

`close2d365 propose-mapping` (`migration_assets.target.propose`) writes every org-specific mapping file into the
mappings root in use. The asset never touches that root (a reviewed file is never overwritten by a run):
it writes a fresh proposal to `$CLOSE2D365_HOME/reports/mapping_proposal/` for review or diffing, and
shows the state of the mapping; the blocking check `mapping_confirmed` fails while an org file is missing,
any `review:` or `confirmed: false` is left (each listed by file:line and key), a Close custom field /
activity type in the data has no entry, or a field map targets a column that neither the target (the cached
metadata) nor the schema plan has (by file:line, with the fix). It stops every write, schema/* included.
"""

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import (
    GROUP,
    TARGET_METADATA_KEY,
    StagingError,
    close_key,
    load_rules,
    markdown,
    plan_columns,
)
from migration_assets.mapping.config import (
    ORG_FILES,
    MissingOrgFileError,
    load_mapping_config,
    load_settings,
    mappings_root,
)
from migration_assets.mapping.owners import OWNER_COLUMNS
from migration_assets.mapping.review_markers import open_decisions
from migration_assets.mapping.targets import unknown_targets
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.resources.warehouse import WarehouseResource, default_home, table_exists
from migration_assets.target.close_fields import OBJECT_TABLES, close_custom_fields, target_attributes
from migration_assets.target.custom_activity_plan import TYPES_FILE, load_types
from migration_assets.target.proposal import parse_proposal

PROPOSAL_FILE = "custom_fields.yaml"
MAPPING_KEY = dg.AssetKey([GROUP, "mapping"])
PROPOSAL_INPUTS = (
    "custom_fields",
    "custom_activity_types",
    "custom_activities",
    "users",
    "lead_statuses",
    "pipelines",
    *OBJECT_TABLES.values(),
)


def missing_org_file(display: str) -> str:
    return str(MissingOrgFileError(display))


def propose_mapping(
    warehouse: WarehouseResource | None = None,
    dataverse: Any | None = None,
    mappings_root: Path | None = None,
) -> list[Path]:
    """Every org file proposed into the mappings root (`propose.propose_all`, what the CLI runs); returns
    the files written or updated."""
    from migration_assets.target.propose import propose_all

    result = propose_all(mappings_root, warehouse, dataverse, use_env_dataverse=dataverse is None)
    return [f.path for f in result.files if f.status != "unchanged"]


def unknown_target_problems(con: duckdb.DuckDBPyConnection, root: Path) -> list[str]:
    """Field-map entries whose target column neither the target table (the cached metadata) nor the schema
    plan has, each by file:line with its fix. Checked here, at the gate every write waits for, so that a typo
    stops the run before the schema is deployed instead of rejecting every row of the table at staging."""
    if not table_exists(con, "staged", "target_metadata"):
        return []  # nothing to check against yet: staged/target_metadata runs before this check
    problems: list[str] = []
    try:
        cfg = load_mapping_config(root)
        for fmap in cfg.field_maps.values():
            try:
                rules = plan_columns(load_rules(con, fmap.table), cfg)
            except StagingError:
                continue  # a table the schema step creates (SMS as a custom activity): checked at its staging
            problems += [str(e) for e in unknown_targets(fmap, rules)]
    except MappingError as exc:
        problems.append(str(exc))
    return list(dict.fromkeys(problems))  # SMS and tasks share fields/task.yaml: each entry once


def mapping_status(con: duckdb.DuckDBPyConnection, root: Path, prefix: str) -> tuple[list[str], pl.DataFrame]:
    """(problems, entries table) of the mapping files against the data: every org file present, every open
    decision (`review:` / `confirmed: false`, by file:line and key), every Close custom field and custom
    activity type mapped, every field-map target a column of the target or of the schema plan."""
    problems = [missing_org_file(f"{root.name}/{name}") for name in ORG_FILES if not (root / name).is_file()]
    if not problems:  # a missing org file is the one thing to fix first (the mapping cannot load without it)
        problems += unknown_target_problems(con, root)
    entries = pl.DataFrame()
    try:
        problems += [f"open decision: {d}" for d in open_decisions(root)]
    except MappingError as exc:
        problems.append(str(exc))
    if not (root / PROPOSAL_FILE).is_file():
        return problems, entries
    try:
        proposals = parse_proposal(root / PROPOSAL_FILE, f"{root.name}/{PROPOSAL_FILE}", prefix)
    except MappingError as exc:
        return [*problems, str(exc)], entries
    entries = pl.DataFrame(
        [
            {
                "table": p.table,
                "close_name": p.close_name,
                "action": p.action,
                "target": p.target,
                "type": p.column.attribute_type,
                "confidence": p.confidence,
                "confirmed": p.confirmed,
            }
            for p in proposals
        ]
    )
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
        if (root / TYPES_FILE).is_file() and table_exists(con, "close", "custom_activity_types"):
            names = [r[0] for r in con.execute('SELECT name FROM close."custom_activity_types"').fetchall()]
            absent = [n for n in names if str(n).casefold() not in listed]
            if absent:
                problems.append(
                    f"custom activity types not in {root.name}/{TYPES_FILE}: {', '.join(absent)} "
                    "(their instances would not migrate; re-run propose-mapping)"
                )
    except MappingError as exc:
        problems.append(str(exc))
    return problems, entries


@dg.asset(
    key=MAPPING_KEY,
    group_name=GROUP,
    # Everything propose-mapping reads: the org's configuration, the custom fields' data, the activity
    # instances (orphaned fields) and the record owners (the owner map), plus the target's metadata.
    deps=[*(close_key(t) for t in sorted({*PROPOSAL_INPUTS, *OWNER_COLUMNS})), TARGET_METADATA_KEY],
    description="A fresh proposal of every org mapping file (for diffing) and the review state of the one in use.",
)
def mapping(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from migration_assets.target.propose import _systemusers, propose_files, read_snapshot

    root = mappings_root()
    settings = load_settings(root)
    out = default_home() / "reports" / "mapping_proposal"
    if out.exists():
        shutil.rmtree(out)  # a fresh proposal, not merged with an older one: for diffing with the one in use
    out.mkdir(parents=True)
    with warehouse.connect() as con:
        fresh = propose_files(
            out, settings, read_snapshot(con), target_attributes(con, None), _systemusers(con, None)
        )
        problems, entries = mapping_status(con, root, settings.publisher_prefix)
    context.log.info(f"fresh proposal in {out}; the mapping in use is {root}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": entries.height,
            "fresh_proposal": ", ".join(str(f.path) for f in fresh.files),
            "mapping_in_use": str(root),
            "open_problems": len(problems),
            "entries": dg.MetadataValue.md(markdown(entries, max_rows=100)),
        }
    )


@dg.asset_check(
    asset=MAPPING_KEY,
    name="mapping_confirmed",
    blocking=True,
    description="Every org mapping file is there, no `review:` / `confirmed: false` is left, every Close "
    "custom field / activity type is mapped, and every field-map target is a column of the target or of the "
    "schema plan.",
)
def mapping_confirmed(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    root = mappings_root()
    with warehouse.connect() as con:
        problems, entries = mapping_status(con, root, load_settings(root).publisher_prefix)
    return dg.AssetCheckResult(
        passed=not problems,
        severity=gate_severity(context),  # WARN in the dry run: staging goes on to show every problem
        description="; ".join(problems) or "the mapping is confirmed",
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "unconfirmed": dg.MetadataValue.md(markdown(entries.filter(~pl.col("confirmed")), max_rows=50))
            if entries.height
            else "none",
        },
    )
