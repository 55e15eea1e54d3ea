"""Proposed `custom_activities.yaml` (contract C) for a Close org's custom activity types (pure).

Each type gets its table (named by `custom_activities.activity_types`, as the schema step names it), its
fields as Close defines them (choices from the full field definitions in close.custom_fields: the type
listing carries none), and the fields its instances use but the type no longer defines (deleted in
Close). Those orphaned values need a decision (`orphaned_values`: halt, drop or column), and an archived
type is pointed out (its instances are migrated too): both get a `review:` item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migration_assets.mapping.custom_activities import activity_types
from migration_assets.mapping.normalise import fold_label
from migration_assets.mapping.yaml_loc import REVIEW_KEY

ORPHAN_REVIEW = (
    "instances of this type hold values of {n} field(s) the type no longer defines (deleted in "
    "Close): set orphaned_values to halt (stop this type until the data is fixed), drop (leave "
    "the values out; they are listed in a report file) or column (keep them in one column per field)"
)
ARCHIVED_REVIEW = (
    "the type is archived in Close; its {n} instance(s) are migrated like any other type's into "
    "the table below: remove this review line to confirm"
)


def _field(f: Any, defs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    full = {**dict(f.raw), **dict(defs.get(f.close_field_id) or {})}
    entry: dict[str, Any] = {
        "close_field_id": f.close_field_id,
        "name": f.close_name,
        "type": f.close_type,
        "multiple": f.multiple,
        "required": bool(full.get("required")),
        "column": f.column,
    }
    if f.close_type == "choices":
        entry["choices"] = [str(c) for c in full.get("choices") or []]
    return entry


def propose_types(
    types: Sequence[Mapping[str, Any]],
    prefix: str,
    field_defs: Mapping[str, Mapping[str, Any]] | None = None,
    instance_fields: Mapping[str, Mapping[str, int]] | None = None,
    instance_counts: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Contract C entries, in Close id order (the order `activity_types` names tables in).

    types:           GET /custom_activity/ objects
    field_defs:      {cf_id: GET /custom_field/activity/ object} (with `choices`)
    instance_fields: {type id: {cf_id: number of instances with a value}} over close.custom_activities
    instance_counts: {type id: number of instances}
    """
    defs, used, counts = field_defs or {}, instance_fields or {}, instance_counts or {}
    raw_by_id = {str(t["id"]): t for t in types}
    out = []
    for t in activity_types(list(types), prefix):
        defined = {f.close_field_id for f in t.fields}
        orphaned = [
            {"close_field_id": fid, "instances": n}
            for fid, n in sorted(used.get(t.close_type_id, {}).items())
            if fid not in defined and n
        ]
        archived = bool(
            raw_by_id[t.close_type_id].get("is_archived") or raw_by_id[t.close_type_id].get("archived")
        )
        entry: dict[str, Any] = {
            "name": t.close_name,
            "table": t.table,
            "close_id": t.close_type_id,
            "archived": archived,
            "orphaned_values": "halt",
        }
        if orphaned:
            entry["orphaned_fields"] = orphaned
        entry["fields"] = [_field(f, defs) for f in t.fields]
        reviews = []
        if orphaned:
            reviews.append(ORPHAN_REVIEW.format(n=len(orphaned)))
        if archived:
            reviews.append(ARCHIVED_REVIEW.format(n=counts.get(t.close_type_id, 0)))
        if reviews:
            entry[REVIEW_KEY] = "; ".join(reviews)
        out.append(entry)
    return out


def merge_types(
    existing: Mapping[str, Any] | None, proposed: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """The custom_activities.yaml body. A type already listed (by name, as the mapping matches types) keeps
    its decisions (orphaned_values, a pending or resolved review); what Close says about it (id, table,
    fields, orphaned fields, archived) is refreshed, and a new reason to decide (orphaned fields or archived
    where there were none) adds a review. New types are added; types gone from Close are dropped."""
    old = {
        fold_label(e.get("name")): e for e in (existing or {}).get("types") or [] if isinstance(e, Mapping)
    }
    out = []
    for entry in proposed:
        prev = old.pop(fold_label(entry["name"]), None)
        if prev is None:
            out.append(dict(entry))
            continue
        merged = {k: v for k, v in entry.items() if k != REVIEW_KEY}
        merged["orphaned_values"] = prev.get("orphaned_values", "halt")
        new_reason = (bool(entry.get("orphaned_fields")) and not prev.get("orphaned_fields")) or (
            bool(entry.get("archived")) and not prev.get("archived")
        )
        if REVIEW_KEY in prev:
            merged[REVIEW_KEY] = prev[REVIEW_KEY]
        elif new_reason and REVIEW_KEY in entry:
            merged[REVIEW_KEY] = entry[REVIEW_KEY]
        out.append(merged)
    notes = [
        f"custom activity type {e.get('name')!r} is no longer in Close: dropped from custom_activities.yaml"
        for e in old.values()
    ]
    return {"types": out}, notes


TYPES_HELP = """\
# Close custom activity types -> Dataverse custom activity tables: one staged/custom_activity_<table> and
# loaded/custom_activity_<table> asset per entry. Types are matched by name (ids differ between orgs).
# name, table and orphaned_values are the mapping; close_id, archived,
# fields and orphaned_fields are what Close says (refreshed by every propose-mapping run).
# orphaned_values: halt (default) | drop | column, for values of fields the type no longer defines.
"""
