"""The generic staging of a registry table (mapping/tables.py): each of its objects.yaml entries read from
close/*, mapped by its field file (custom fields included), validated against the target's metadata and
written to staged.<table>; small per-table steps adapt it (the lead's contacts joined in before mapping, the
opportunity's closing columns after it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.custom_fields import with_custom_fields
from migration_assets.mapping.delta_staging import (
    DeltaPlan,
    StatesBefore,
    affected_source_ids,
    has_column,
    index_groups,
    lead_of,
    lookup_paths,
    plan,
    record,
    register_ids,
    source_leads,
    staged_addresses,
    write_index,
)
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.mapping.staged_lookups import owner_context, target_lookup
from migration_assets.mapping.staging import StageResult, current_result, validate_and_write
from migration_assets.mapping.staging_source import lead_contacts
from migration_assets.mapping.tables import Table
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote
from migration_assets.target.metadata_cache import cached_rules, entity_sets


@dataclass(frozen=True)
class TableSteps:
    owners: bool = True  # its rows get owners from the owner map (a dependency on it)
    # Per object: the source frame before mapping (e.g. the lead's contacts joined in).
    prepare: Callable[[duckdb.DuckDBPyConnection, pl.DataFrame], pl.DataFrame] | None = None
    # The mapped frame before validation (e.g. the loader's `_close_*` columns of an opportunity).
    finish: Callable[[pl.DataFrame, MappingConfig], pl.DataFrame] | None = None
    # Each validated slice before it is written (see `validate_and_write`).
    post: Callable[[pl.DataFrame], pl.DataFrame] | None = None


def routed_objects(cfg: MappingConfig, table: Table) -> tuple[list[str], dict[str, str]]:
    """The table's objects that write to it in this mapping, and the others with the table they write to
    (activities.yaml may route the SMS elsewhere)."""
    here, elsewhere = [], {}
    for name in table.objects:
        target = cfg.object(name).table
        if target == table.name:
            here.append(name)
        else:
            elsewhere[name] = target
    return here, elsewhere


@dataclass(frozen=True)
class DeltaInputs:
    """What a staged table reads, for its incremental staging (mapping/delta_staging.py)."""

    reads: tuple[str, ...]  # close tables
    parents: tuple[str, ...]  # staged tables (objects.yaml stage_after)


def stage_records(
    warehouse: WarehouseResource,
    dataverse: Any | None,
    cfg: MappingConfig,
    table: str,
    names: list[str],
    steps: TableSteps,
    inputs: DeltaInputs | None = None,
) -> StageResult:
    """Map each object `names` of `table` (custom fields included), validate the rows and write
    staged.<table>; with `inputs`, only the affected rows when the close tables were extracted in delta
    mode (the plan says which, or why in full)."""
    for name in names:
        cfg = with_custom_fields(cfg, name)
    frames, rejections, notices = [], [], []
    with warehouse.connect() as con:
        rules = cached_rules(con, table, cfg)
        delta = None
        if inputs is not None:
            delta = plan(con, table, inputs.reads, inputs.parents, steps.owners, rules)
        keys = affected_keys(con, cfg, table, names, delta)
        if delta is not None and keys is not None and not keys:
            finish_delta(con, cfg, table, names, delta, keys, staged_addresses(con, table, ()))
            return current_result(con, table).planned(None, 0)
        ctx = None
        for n, name in enumerate(names):
            src = read_object_source(con, cfg, name, where=only_ids(con, cfg, name, keys, n))
            if steps.prepare is not None:
                src = steps.prepare(con, src)
            ctx = ctx or (owner_context(con, cfg) if steps.owners else cfg.context())
            mapped = map_object(src, cfg, name, ctx, entity_sets(con))
            frames.append(steps.finish(mapped.frame, cfg) if steps.finish is not None else mapped.frame)
            rejections.append(mapped.rejections)
            notices.append(mapped.notices)
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        before = staged_addresses(con, table, keys or ())
        states = StatesBefore.take(con, table, keys, rules.primary_id) if keys else None
        result = validate_and_write(
            warehouse,
            con,
            table,
            rules,
            frame,
            rejections,
            notices,
            post=steps.post,
            target_lookup=target_lookup(dataverse, con),
            replace_keys=keys,
        )
        if delta is None:
            return result
        finish_delta(con, cfg, table, names, delta, keys, before, states)
        return result.planned(delta.full_reason, None if keys is None else len(keys))


def affected_keys(
    con: duckdb.DuckDBPyConnection, cfg: MappingConfig, table: str, names: list[str], delta: DeltaPlan | None
) -> set[str] | None:
    """The `_close_id`s to re-stage (None: all, a full staging)."""
    if delta is None or not delta.incremental:
        return None
    if table == "lead":  # a lead takes its person fields from its first contact: their leads, old and new
        contacts = delta.changed.get("contacts", set())
        delta.dirty_leads |= lead_of(con, "contacts", contacts) | index_groups(
            con, "lead", "contacts", contacts
        )
    keys: set[str] = set()
    for name in names:
        obj = cfg.object(name)
        lookups = lookup_paths(cfg.field_map(name).fields)
        keys |= affected_source_ids(con, delta, obj.source, obj.key, lookups=lookups)
    return keys


def only_ids(
    con: duckdb.DuckDBPyConnection, cfg: MappingConfig, name: str, keys: set[str] | None, n: int
) -> str | None:
    """The WHERE clause reading only the rows `keys` of the object's source (None: every row)."""
    if keys is None:
        return None
    view = register_ids(con, f"__stage_ids_{n}", keys)
    return f"CAST({quote(cfg.object(name).key)} AS VARCHAR) IN (SELECT id FROM {view})"


def finish_delta(
    con: duckdb.DuckDBPyConnection,
    cfg: MappingConfig,
    table: str,
    names: list[str],
    delta: DeltaPlan,
    keys: set[str] | None,
    before: pl.DataFrame,
    states_before: StatesBefore | None = None,
) -> None:
    """Record the staging (and, incremental, the rows it replaced with their leads and addresses; given what
    the later tables read of them before, `states_before`, only those where that changed); the lead keeps
    its index of contacts -> lead for the next run."""
    restaged, rewritten = None, keys
    if keys is not None:
        if states_before is not None:
            keys = states_before.changed(con, keys)
            before = before.filter(pl.col("close_id").is_in(sorted(keys)))
        leads = [source_leads(con, cfg.object(n).source, cfg.object(n).key, keys) for n in names]
        known = pl.concat(leads, how="vertical_relaxed") if leads else pl.DataFrame()
        ids = pl.DataFrame({"close_id": sorted(keys)}, schema={"close_id": pl.String})
        rows = ids.join(known.unique("close_id"), on="close_id", how="left") if known.height else ids
        if "lead_id" not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=pl.String).alias("lead_id"))
        refs = pl.concat([before, staged_addresses(con, table, keys)]).select(
            "close_id", pl.lit(None, dtype=pl.String).alias("lead_id"), "ref"
        )
        restaged = pl.concat(
            [rows.select("close_id", "lead_id", pl.lit(None, dtype=pl.String).alias("ref")), refs]
        )
    record(con, delta, restaged, rewritten)
    if table == "lead" and has_column(con, "contacts", "lead_id"):
        write_index(
            con, "lead", "contacts", fetch_polars(con, "SELECT id, lead_id AS group_key FROM close.contacts")
        )


def with_contacts(con: duckdb.DuckDBPyConnection, src: pl.DataFrame) -> pl.DataFrame:
    """Close embeds contacts in the lead; the extraction keeps them in close.contacts."""
    return src.drop("contacts", strict=False).join(
        lead_contacts(con, src["id"]), left_on="id", right_on="lead_id", how="left"
    )


def closing_columns(frame: pl.DataFrame, date_lost_column: str) -> pl.DataFrame:
    """Won/lost deals are closed by action, not by state PATCH: `_close_*` tell the loader how."""
    state = pl.col("statecode")
    lost = pl.col(date_lost_column) if date_lost_column in frame.columns else pl.lit(None, dtype=pl.String)
    return frame.with_columns(
        pl.when(state == 1).then(pl.lit("win")).when(state == 2).then(pl.lit("lose")).alias("_close_action"),
        pl.when(state.is_in([1, 2])).then(pl.col("statuscode")).alias("_close_statuscode"),
        pl.when(state == 1)
        .then(pl.col("estimatedclosedate"))
        .when(state == 2)
        .then(lost)
        .alias("_close_date"),
        pl.when(state == 1).then(pl.col("estimatedvalue").cast(pl.Float64)).alias("_actual_revenue"),
        pl.col("estimatedvalue").cast(pl.Float64),
    )


def no_state_patch(frame: pl.DataFrame) -> pl.DataFrame:
    """Opportunities are closed through `_close_action`; a state PATCH would be rejected by Dataverse."""
    return frame.with_columns(
        pl.lit(None, dtype=pl.Int64).alias("_statecode"), pl.lit(None, dtype=pl.Int64).alias("_statuscode")
    )


def closing(frame: pl.DataFrame, cfg: MappingConfig) -> pl.DataFrame:
    return closing_columns(frame, f"{cfg.settings.publisher_prefix}_closedatelost")
