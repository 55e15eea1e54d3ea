"""The review state of the mapping in use, against the data: every org file present, every open decision
(`review:` / `confirmed: false`, by file:line and key), every Close custom field and custom activity type
mapped, every field-map target a column of the target or of the schema plan. Also the fresh proposal of
every org file, written apart from the mapping in use for review or diffing (a reviewed file is never
overwritten by a run)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from migration_assets.mapping.config import ORG_FILES, MissingOrgFileError, load_mapping_config
from migration_assets.mapping.delta_staging import table_digests
from migration_assets.mapping.files import Settings
from migration_assets.mapping.review_markers import open_decisions
from migration_assets.mapping.targets import unknown_targets
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.resources.warehouse import WarehouseResource, default_home, table_exists
from migration_assets.target.close_fields import OBJECT_TABLES, close_custom_fields, target_attributes
from migration_assets.target.custom_activity_plan import TYPES_FILE, load_types
from migration_assets.target.metadata_cache import StagingError, cached_rules
from migration_assets.target.proposal import parse_proposal

PROPOSAL_FILE = "custom_fields.yaml"


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


# What a fresh proposal is made from besides the records: Close's configuration objects, the target's users and
# metadata, the settings. While none of them changed since the last proposal, a run keeps it (`reusable`): a
# delta then spares the proposal's read of every lead's, contact's and opportunity's custom values. Its
# figures read from the records (value sizes, record counts per owner) stay those of that proposal until then.
PROPOSAL_TABLES = (
    ("close", "custom_fields"),
    ("close", "custom_activity_types"),
    ("close", "users"),
    ("close", "roles"),
    ("close", "lead_statuses"),
    ("close", "pipelines"),
    ("close", "opportunity_statuses"),
    ("staged", "target_systemusers"),
    ("staged", "target_metadata"),
)


def proposal_inputs(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
    """A digest of what a proposal is made from besides the records (PROPOSAL_TABLES, the settings)."""
    parts = {f"{s}.{t}": d for (s, t), d in table_digests(con, PROPOSAL_TABLES).items()}
    parts["settings"] = repr(settings)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def reusable(previous_inputs: str | None, previous_files: Sequence[str], inputs: str) -> bool:
    """Whether the last proposal (made from `previous_inputs`, written to `previous_files`) is still the one
    these `inputs` give: the same inputs, every file still there."""
    return (
        previous_inputs == inputs and bool(previous_files) and all(Path(f).is_file() for f in previous_files)
    )


def fresh_proposal(con: duckdb.DuckDBPyConnection, settings: Settings) -> tuple[Path, list[Path]]:
    """A fresh proposal of every org file in `$CLOSE2D365_HOME/reports/mapping_proposal/`, not merged with
    an older one (for diffing with the mapping in use); returns the folder and the files."""
    from migration_assets.target.propose import _systemusers, propose_files, read_snapshot

    out = default_home() / "reports" / "mapping_proposal"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fresh = propose_files(
        out, settings, read_snapshot(con), target_attributes(con, None), _systemusers(con, None)
    )
    return out, [f.path for f in fresh.files]


def unknown_target_problems(con: duckdb.DuckDBPyConnection, root: Path) -> list[str]:
    """Field-map entries whose target column neither the target table (the cached metadata) nor the schema
    plan has, each by file:line with its fix. Checked at the gate every write waits for, so that a typo
    stops the run before the schema is deployed instead of rejecting every row of the table at staging."""
    if not table_exists(con, "staged", "target_metadata"):
        return []  # nothing to check against yet: staged/target_metadata runs before this check
    problems: list[str] = []
    try:
        cfg = load_mapping_config(root)
        for fmap in cfg.field_maps.values():
            try:
                rules = cached_rules(con, fmap.table, cfg)
            except StagingError:
                continue  # a table the schema step creates (SMS as a custom activity): checked at its staging
            problems += [str(e) for e in unknown_targets(fmap, rules)]
    except MappingError as exc:
        problems.append(str(exc))
    return list(dict.fromkeys(problems))  # SMS and tasks share fields/task.yaml: each entry once


def mapping_status(con: duckdb.DuckDBPyConnection, root: Path, prefix: str) -> tuple[list[str], pl.DataFrame]:
    """(problems, entries table) of the mapping files against the data (see the module's docstring)."""
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
