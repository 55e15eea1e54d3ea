"""Names of the Dataverse custom activity table and columns for each Close Custom Activity type (pure).

The schema assets create them and the staging transforms write `staged.custom_activity_<table>` with the
same names, so both must call these functions: a table name is `<prefix>_<sanitized type name>` and a
field's column `<prefix>_<sanitized field name>` (unique within the table), as `schema_types.logical_name`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migration_assets.lib.schema_types import logical_name, schema_name

# Standard tables a custom activity table must never collide with, and columns every activity has.
RESERVED_TABLES = ("account", "contact", "lead", "opportunity", "phonecall", "email", "task", "appointment",
                   "annotation", "systemuser", "activitypointer", "activityparty")  # fmt: skip
ACTIVITY_COLUMNS = ("subject", "description", "scheduledstart", "scheduledend", "actualstart", "actualend",
                    "regardingobjectid", "statecode", "statuscode", "ownerid", "activityid")  # fmt: skip


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
    taken: list[str] = list(RESERVED_TABLES)
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


def option_values(options: Sequence[str], option_value_prefix: int) -> dict[str, int]:
    """Choice label -> option value, as `proposal.field_entries` numbers them (prefix * 10000 + position)."""
    return {label: option_value_prefix * 10000 + i for i, label in enumerate(options)}
