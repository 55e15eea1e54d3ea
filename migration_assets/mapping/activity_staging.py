"""Staging of the activity tables (phonecall, email, task, appointment, and the custom activity tables): one
or more Close objects per table, owners from the owner map, regarding the lead, parties for deep insert,
state applied after create.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.delta_staging import affected_source_ids, lookup_paths, plan, staged_addresses
from migration_assets.mapping.frame import Mapped, map_object, object_chunks, read_object_source
from migration_assets.mapping.parties import (
    PartyIndex,
    appointment_parties,
    email_parties,
    party_index,
    phonecall_parties,
)
from migration_assets.mapping.staged_lookups import owner_context, target_lookup
from migration_assets.mapping.staging import StageResult, current_result, validate_and_write
from migration_assets.mapping.table_staging import DeltaInputs, finish_delta, only_ids
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.metadata_cache import cached_rules, entity_sets
from migration_assets.target.rules import TableRules

PartiesFn = Callable[[pl.DataFrame, PartyIndex], pl.Series]


@dataclass(frozen=True)
class ActivitySource:
    object_name: str  # objects.yaml name (call, email, sms, task, meeting)
    extra: Sequence[str] = field(default_factory=tuple)  # source columns the parties need
    parties: PartiesFn | None = None


def _call_parties(src: pl.DataFrame, idx: PartyIndex) -> pl.Series:
    return phonecall_parties(src["direction"], src["user_id"], src["contact_id"], idx)


def _email_parties(src: pl.DataFrame, idx: PartyIndex) -> pl.Series:
    return email_parties(src["envelope"], idx)


def _meeting_parties(src: pl.DataFrame, idx: PartyIndex) -> pl.Series:
    return appointment_parties(src["attendees"], idx)


# objects.yaml name -> how its activities get their parties (the other activities have none).
ACTIVITY_SOURCES = {
    "call": ActivitySource("call", ("direction", "user_id", "contact_id"), _call_parties),
    "email": ActivitySource("email", ("envelope",), _email_parties),
    "meeting": ActivitySource("meeting", ("attendees",), _meeting_parties),
}


def stage_activity(
    warehouse: WarehouseResource,
    dataverse: Any | None,
    table: str,
    sources: Sequence[ActivitySource],
    rules_for: Callable[[Any, Any], TableRules] | None = None,
    staged_table: str | None = None,
    inputs: DeltaInputs | None = None,
) -> tuple[StageResult, dict[str, int]]:
    """Map, validate and write the activity table `table` (as staged.<staged_table or table>); returns the
    result and the rows read per object. rules_for(con, cfg): the table's rules when it is not in the target
    yet (a planned custom table). inputs: stage only the affected rows of a delta extraction
    (mapping/delta_staging.py); the activities naming a re-staged contact (parties) are affected too."""
    cfg = load_mapping_config()
    staged = staged_table or table
    names = [s.object_name for s in sources]
    frames, rejections, notices, counts = [], [], [], {}
    with warehouse.connect() as con:
        rules = rules_for(con, cfg) if rules_for else cached_rules(con, table, cfg)
        delta = plan(con, staged, inputs.reads, inputs.parents, True, rules) if inputs is not None else None
        keys = None
        if delta is not None and delta.incremental:
            keys = set()
            for s in sources:
                obj = cfg.object(s.object_name)
                lookups = lookup_paths(cfg.field_map(s.object_name).fields)
                parties = s.parties is not None
                keys |= affected_source_ids(con, delta, obj.source, obj.key, parties, lookups)
            if not keys:
                finish_delta(con, cfg, staged, names, delta, keys, staged_addresses(con, staged, ()))
                return current_result(con, staged).planned(None, 0), {n: 0 for n in names}
        ctx, sets = owner_context(con, cfg), entity_sets(con)
        idx = party_index(con, sets) if any(s.parties for s in sources) else None
        for n, s in enumerate(sources):
            counts[s.object_name] = 0
            if keys is None:
                chunks = object_chunks(con, cfg, s.object_name, s.extra)
            else:
                where = only_ids(con, cfg, s.object_name, keys, n)
                chunks = iter([read_object_source(con, cfg, s.object_name, s.extra, where=where)])
            for src in chunks:
                counts[s.object_name] += src.height
                mapped: Mapped = map_object(src, cfg, s.object_name, ctx, sets)
                frame = mapped.frame
                if s.parties is not None and idx is not None:
                    frame = frame.with_columns(s.parties(src, idx))
                del src
                frames.append(frame)
                rejections.append(mapped.rejections)
                notices.append(mapped.notices)
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        result = validate_and_write(
            warehouse,
            con,
            staged,
            rules,
            frame,
            rejections,
            notices,
            target_lookup=target_lookup(dataverse, con),
            replace_keys=keys,
        )
        if delta is not None:
            finish_delta(con, cfg, staged, names, delta, keys, staged_addresses(con, staged, ()))
            result = result.planned(delta.full_reason, None if keys is None else len(keys))
    return result, counts
