"""Names of the Dataverse custom activity table and columns for each Close Custom Activity type (pure).

The schema assets create them and the staging transforms write `staged.custom_activity_<table>` with the
same names, so both must call these functions: a table name is `<prefix>_<sanitized type name>` and a
field's column `<prefix>_<sanitized field name>` (unique within the table), as `schema_types.logical_name`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migration_assets.mapping.tables import table_registry
from migration_assets.target.schema_types import logical_name, schema_name

# What to do with values of fields the instances carry but the type no longer defines (deleted in Close):
# halt the type (default), drop the values (listed in a report), or keep them in one column per field.
ORPHAN_MODES = ("halt", "drop", "column")

# Tables a custom activity table must never collide with: the platform's below and every table of the
# table registry (mappings/objects.yaml).
PLATFORM_TABLES = ("systemuser", "activitypointer", "activityparty")
# Columns every activity has.
ACTIVITY_COLUMNS = (
    "subject",
    "description",
    "scheduledstart",
    "scheduledend",
    "actualstart",
    "actualend",
    "regardingobjectid",
    "statecode",
    "statuscode",
    "ownerid",
    "activityid",
)


@dataclass(frozen=True)
class ActivityField:
    close_field_id: str
    close_name: str
    close_type: str
    multiple: bool
    column: str  # logical name on the custom activity table
    schema: str
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class ActivityType:
    close_type_id: str
    close_name: str
    description: str | None
    table: str  # logical name of the custom activity table
    schema: str
    fields: tuple[ActivityField, ...]

    @property
    def staged_table(self) -> str:
        return f"custom_activity_{self.table}"


def activity_types(
    types: Sequence[Mapping[str, Any]], prefix: str, closeid_column: str | None = None
) -> list[ActivityType]:
    """Table and column names for Close custom activity type objects (as /custom_activity/ returns them),
    in a stable order (by Close id) so that names never depend on extraction order."""
    taken: list[str] = [*table_registry().names, *PLATFORM_TABLES]
    out: list[ActivityType] = []
    for t in sorted(types, key=lambda x: str(x.get("id"))):
        table = logical_name(str(t.get("name") or "activity"), prefix, taken)
        taken.append(table)
        cols_taken: list[str] = list(ACTIVITY_COLUMNS) + [closeid_column or f"{prefix}_closeid"]
        fields: list[ActivityField] = []
        for f in sorted(t.get("fields") or [], key=lambda x: str(x.get("id"))):
            column = logical_name(str(f.get("name") or "field"), prefix, cols_taken)
            cols_taken.append(column)
            fields.append(
                ActivityField(
                    close_field_id=str(f["id"]),
                    close_name=str(f.get("name") or ""),
                    close_type=str(f.get("type") or ""),
                    multiple=bool(f.get("accepts_multiple_values")),
                    column=column,
                    schema=schema_name(column, str(f.get("name") or "")),
                    raw=f,
                )
            )
        out.append(
            ActivityType(
                close_type_id=str(t["id"]),
                close_name=str(t.get("name") or ""),
                description=t.get("description"),
                table=table,
                schema=schema_name(table, str(t.get("name") or "")),
                fields=tuple(fields),
            )
        )
    return out


def field_values(instances: Iterable[Mapping[str, Any]], field_id: str) -> list[Any]:
    """Sample values of one custom field over activity instances (`custom.<cf_id>` keys), for sizing."""
    key = f"custom.{field_id}"
    return [i[key] for i in instances if i.get(key) is not None]


def orphaned_field_ids(activity_type: ActivityType, used_keys: Iterable[str]) -> list[str]:
    """Field ids the instances use (`custom.<cf_id>` keys with a value) that the type does not define."""
    defined = {f.close_field_id for f in activity_type.fields}
    ids = {k.removeprefix("custom.") for k in used_keys if k.startswith("custom.")}
    return sorted(ids - defined)


def orphan_columns(
    activity_type: ActivityType, field_ids: Iterable[str], prefix: str, closeid_column: str | None = None
) -> dict[str, str]:
    """Field id -> logical name of the column that keeps its values (`orphaned_values: column`): named from
    the field id (its name is gone with the field), never colliding with the type's own columns."""
    taken = [
        *ACTIVITY_COLUMNS,
        closeid_column or f"{prefix}_closeid",
        *(f.column for f in activity_type.fields),
    ]
    out: dict[str, str] = {}
    for fid in sorted(set(field_ids)):
        out[fid] = logical_name(fid, prefix, taken)
        taken.append(out[fid])
    return out


def orphan_display_name(field_id: str) -> str:
    return f"Close field {field_id} (deleted in Close)"


def joined_text(value: Any) -> str | None:
    """A custom field value as text: lists joined with ', ' (how orphaned values are kept and reported)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = [str(v) for v in value if v is not None]
        return ", ".join(items) if items else None
    return str(value)
