"""Close custom activity types -> Dataverse custom activity tables (the three phases of DESIGN §3).

Names are deterministic so that every stage agrees without a round trip: the table of type "Demo
Feedback" is `<prefix>_demofeedback`, its field "Follow-up Date" the column `<prefix>_followupdate`;
column types come from `schema_types.column_type_for` with the instances' values as samples.

`mappings/custom_activities.yaml` (written by `close2d365 propose-mapping`, reviewed by a human) lists the
types to migrate; the staged/custom_activity_<table> assets are generated from it, so the Dagster
definitions stay static for a given mapping while the set of types is data-dependent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from migration_assets.lib.custom_activities import activity_types
from migration_assets.lib.schema_types import ColumnType, column_type_for
from migration_assets.lib.yaml_loc import MappingError, Section, load_located

TYPES_FILE = "custom_activities.yaml"


@dataclass(frozen=True)
class RoutedActivityType:
    """A custom activity type as `mappings/custom_activities.yaml` routes it to its table (the staging and
    loading view); `lib.custom_activities.ActivityType` is the same type as Close defines it, with its
    fields (the schema view)."""

    name: str  # Close type name (the key matching the data: ids differ between orgs)
    table: str  # Dataverse logical name of the custom activity table


@dataclass(frozen=True)
class PlannedColumn:
    close_field_id: str
    close_name: str
    close_type: str
    multiple: bool
    logical_name: str
    column: ColumnType


def entity_set_name(table: str) -> str:
    """Dataverse generates the set name (usually the plural): read back after creation (reference §6.3)."""
    return table + "s"


def plan_columns(activity_type: Any, samples: Mapping[str, Sequence[Any]]) -> list[PlannedColumn]:
    """One column per field defined on the type, named exactly as the schema step names them
    (`custom_activities.activity_types`), typed by `column_type_for` with the instances' values."""
    out = []
    for f in activity_type.fields:
        ctype = column_type_for(dict(f.raw), samples.get(f.close_field_id, ()))
        out.append(PlannedColumn(f.close_field_id, f.close_name, f.close_type, f.multiple, f.column, ctype))
    return out


def render_types(types: Iterable[Mapping[str, Any]], prefix: str) -> str:
    """The reviewable `custom_activities.yaml` for the Close types (GET /custom_activity/ objects)."""
    entries = [{"name": a.close_name, "table": a.table, "close_id": a.close_type_id, "fields": len(a.fields)}
               for a in activity_types(list(types), prefix)]  # fmt: skip
    header = ("# Close custom activity types -> Dataverse custom activity tables (close2d365 propose-mapping).\n"
              "# One staged/custom_activity_<table> and loaded/custom_activity_<table> asset per entry.\n"
              "# Types are matched by name (ids differ between orgs); remove an entry to leave a type out.\n")  # fmt: skip
    return header + yaml.safe_dump({"types": entries}, sort_keys=False, allow_unicode=True, width=110)


def load_types(root: Path) -> list[RoutedActivityType]:
    """Entries of `<root>/custom_activities.yaml`; [] when the file does not exist yet."""
    path = root / TYPES_FILE
    if not path.is_file():
        return []
    display = f"{root.name}/{TYPES_FILE}"
    top = Section(load_located(path, display), display, "")
    top.only("types")
    out: list[RoutedActivityType] = []
    for n, (item, line) in enumerate(top.items_of("types", required=True)):
        s = Section(item, display, f"types[{n}]", line)
        s.only("name", "table", "close_id", "fields")
        table = s.get("table", str, required=True)
        if not table.replace("_", "").isalnum() or table != table.lower() or "_" not in table:
            raise s.error(
                "table", f"{table!r} is not a custom table logical name (<prefix>_<name>, lower case)"
            )
        if any(t.table == table for t in out):
            raise s.error("table", f"table {table!r} is used by two types")
        out.append(RoutedActivityType(s.get("name", str, required=True), table))
    return out


__all__ = ["MappingError"]
