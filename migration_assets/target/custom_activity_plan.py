"""Close custom activity types -> Dataverse custom activity tables (the three phases of DESIGN §3).

Names are deterministic so that every stage agrees without a round trip: the table of type "Customer
Survey" is `<prefix>_customersurvey`, its field "Follow-up Date" the column `<prefix>_followupdate`;
column types come from `schema_types.column_type_for` with the instances' values as samples.

`mappings/custom_activities.yaml` (written by `close2d365 propose-mapping`, reviewed by a human) lists the
types to migrate; the staged/custom_activity_<table> assets are generated from it, so the Dagster
definitions stay static for a given mapping while the set of types is data-dependent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migration_assets.mapping.custom_activities import ORPHAN_MODES
from migration_assets.mapping.yaml_loc import MappingError, Section, load_located
from migration_assets.target.schema_plan import ColumnSpec, SchemaPlan

TYPES_FILE = "custom_activities.yaml"
# Keys of a type entry (contract C). Only name, table and orphaned_values route; close_id, archived, fields
# and orphaned_fields are informational (written by propose-mapping), `review` is a pending decision that
# the mapping_confirmed check reports.
ENTRY_KEYS = (
    "name",
    "table",
    "close_id",
    "archived",
    "orphaned_values",
    "orphaned_fields",
    "fields",
    "review",
)


@dataclass(frozen=True)
class RoutedActivityType:
    """A custom activity type as `mappings/custom_activities.yaml` routes it to its table (the staging and
    loading view); `lib.custom_activities.ActivityType` is the same type as Close defines it, with its
    fields (the schema view)."""

    name: str  # Close type name (the key matching the data: ids differ between orgs)
    table: str  # Dataverse logical name of the custom activity table
    orphaned_values: str = "halt"  # halt | drop | column (custom_activities.ORPHAN_MODES)


@dataclass(frozen=True)
class PlannedColumn:
    """A column of a custom activity table as the schema plan creates it, with the Close field it holds
    (None for the columns of orphaned values)."""

    close_field_id: str
    close_name: str
    close_type: str
    multiple: bool
    spec: ColumnSpec

    @property
    def logical_name(self) -> str:
        return self.spec.logical_name

    @property
    def choices(self) -> dict[str, int]:
        """Close label -> option value, as the plan numbered the column's options."""
        return {label: value for value, label in self.spec.options}


def entity_set_name(table: str) -> str:
    """Dataverse generates the set name (usually the plural): read back after creation (reference §6.3)."""
    return table + "s"


class PlanMismatchError(ValueError):
    """The saved schema plan does not cover a custom activity type as staged (a stale plan)."""


def plan_columns(activity_type: Any, plan: SchemaPlan) -> list[PlannedColumn]:
    """The columns the schema plan creates for each field defined on the type (the one source of their
    types and option values: staging must write what the plan deploys). Fields are matched by column name
    (`custom_activities.activity_types` names them the same way for both)."""
    specs = {c.logical_name: c for c in plan.columns if c.table == activity_type.table}
    out, missing = [], []
    for f in activity_type.fields:
        spec = specs.get(f.column)
        if spec is None:
            missing.append(f"{f.column} ({f.close_name})")
            continue
        out.append(PlannedColumn(f.close_field_id, f.close_name, f.close_type, f.multiple, spec))
    if missing:
        raise PlanMismatchError(
            f"the schema plan has no column {', '.join(missing)} on {activity_type.table}: the Close type changed "
            "since schema/plan was materialized; materialize schema/plan again"
        )
    return out


def orphan_plan_columns(plan: SchemaPlan, table: str, names: Mapping[str, str]) -> dict[str, ColumnSpec]:
    """Field id -> the planned column keeping its orphaned values; ids without a planned column are left out."""
    specs = {c.logical_name: c for c in plan.columns if c.table == table}
    return {fid: specs[name] for fid, name in names.items() if name in specs}


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
        s.only(*ENTRY_KEYS)
        table = s.get("table", str, required=True)
        if not table.replace("_", "").isalnum() or table != table.lower() or "_" not in table:
            raise s.error(
                "table", f"{table!r} is not a custom table logical name (<prefix>_<name>, lower case)"
            )
        if any(t.table == table for t in out):
            raise s.error("table", f"table {table!r} is used by two types")
        mode = s.get("orphaned_values", str, "halt")
        if mode not in ORPHAN_MODES:
            raise s.error("orphaned_values", f"must be one of {', '.join(ORPHAN_MODES)}, got {mode!r}")
        out.append(RoutedActivityType(s.get("name", str, required=True), table, mode))
    return out


__all__ = ["MappingError"]
