"""The Dataverse schema this migration needs, and its diff against the target's metadata (pure).

A plan lists custom activity tables, columns (with choice options), and one alternate key on the Close id
column per loaded table. `diff` compares it with metadata already read from the target (`EntityMeta`, or
None for a table that does not exist) and returns only what is missing, so deploying twice changes
nothing. Columns that exist with an incompatible type are conflicts: they stop the deployment with a
message, never a silent change of someone else's column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from migration_assets.clients.dataverse.metadata import EntityMeta, label

# Plan type -> (OData metadata type, AttributeType, AttributeTypeName) (reference §6.2).
_TYPES = {
    "String": ("StringAttributeMetadata", "String", "StringType"),
    "Memo": ("MemoAttributeMetadata", "Memo", "MemoType"),
    "Integer": ("IntegerAttributeMetadata", "Integer", "IntegerType"),
    "Decimal": ("DecimalAttributeMetadata", "Decimal", "DecimalType"),
    "Money": ("MoneyAttributeMetadata", "Money", "MoneyType"),
    "DateTime": ("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
    "Boolean": ("BooleanAttributeMetadata", "Boolean", "BooleanType"),
    "Picklist": ("PicklistAttributeMetadata", "Picklist", "PicklistType"),
    "MultiSelectPicklist": ("MultiSelectPicklistAttributeMetadata", "Virtual", "MultiSelectPicklistType"),
}
# An existing column of one of these AttributeTypes can take the planned type's values.
_COMPATIBLE = {
    "String": {"String", "Memo"},
    "Memo": {"Memo", "String"},
    "Integer": {"Integer", "BigInt", "Decimal", "Double", "Money"},
    "Decimal": {"Decimal", "Double", "Money"},
    "Money": {"Money", "Decimal"},
    "DateTime": {"DateTime"},
    "Boolean": {"Boolean"},
    "Picklist": {"Picklist"},
    "MultiSelectPicklist": {"Virtual", "MultiSelectPicklist"},
    "Lookup": {"Lookup"},
}
REQUIRED_NONE = {
    "Value": "None",
    "CanBeChanged": True,
    "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
}


class SchemaPlanError(ValueError):
    """The plan cannot be built or applied as asked (conflicting column, unknown type)."""


@dataclass(frozen=True)
class ColumnSpec:
    table: str
    logical_name: str
    schema_name: str
    type: str  # String | Memo | Integer | Decimal | Money | DateTime | Boolean | Picklist | MultiSelectPicklist | Lookup
    display_name: str
    description: str = ""
    max_length: int | None = None
    format: str | None = None  # DateTime: DateOnly | DateAndTime
    precision: int | None = None
    options: tuple[tuple[int, str], ...] = ()
    lookup_target: str | None = None

    def body(self) -> dict[str, Any]:
        """POST EntityDefinitions(...)/Attributes body (lookups: see `relationship_body`)."""
        if self.type not in _TYPES:
            raise SchemaPlanError(
                f"{self.table}.{self.logical_name}: no attribute body for type {self.type!r}"
            )
        odata, attr_type, type_name = _TYPES[self.type]
        body: dict[str, Any] = {
            "@odata.type": f"Microsoft.Dynamics.CRM.{odata}",
            "AttributeType": attr_type,
            "AttributeTypeName": {"Value": type_name},
            "SchemaName": self.schema_name,
            "RequiredLevel": dict(REQUIRED_NONE),
            "DisplayName": label(self.display_name),
            "Description": label(self.description or self.display_name),
        }
        if self.type == "String":
            body.update(MaxLength=self.max_length or 100, FormatName={"Value": "Text"})
        elif self.type == "Memo":
            body.update(
                MaxLength=self.max_length or 4000, Format="TextArea", ImeMode="Disabled", IsLocalizable=False
            )
        elif self.type == "Integer":
            body.update(MinValue=-2_147_483_648, MaxValue=2_147_483_647, Format="None", SourceTypeMask=0)
        elif self.type == "Decimal":
            body.update(
                MinValue=-100_000_000_000.0, MaxValue=100_000_000_000.0, Precision=self.precision or 2
            )
        elif self.type == "Money":
            body.update(PrecisionSource=2)
        elif self.type == "DateTime":
            fmt = self.format or "DateAndTime"
            body.update(
                Format=fmt, DateTimeBehavior={"Value": "DateOnly" if fmt == "DateOnly" else "UserLocal"}
            )
        elif self.type == "Boolean":
            body.update(
                DefaultValue=False,
                OptionSet={
                    "TrueOption": {"Value": 1, "Label": label("Yes")},
                    "FalseOption": {"Value": 0, "Label": label("No")},
                    "OptionSetType": "Boolean",
                },
            )
        else:
            body.update(
                SourceTypeMask=0,
                OptionSet={
                    "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
                    "IsGlobal": False,
                    "OptionSetType": "Picklist",
                    "Options": [{"Value": v, "Label": label(t)} for v, t in self.options],
                },
            )
        return body

    def relationship_body(self) -> dict[str, Any]:
        """POST RelationshipDefinitions body for a lookup column. The navigation property is the logical
        name, so staged rows can bind it as `<logical_name>@odata.bind` without knowing SchemaName casing."""
        rel = f"{self.schema_name.split('_', 1)[0]}_{self.lookup_target}_{self.table}_{self.logical_name.split('_', 1)[-1]}"
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "SchemaName": rel,
            "ReferencedEntity": self.lookup_target,
            "ReferencingEntity": self.table,
            "ReferencingEntityNavigationPropertyName": self.logical_name,
            "Lookup": {
                "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
                "AttributeType": "Lookup",
                "AttributeTypeName": {"Value": "LookupType"},
                "SchemaName": self.schema_name,
                "DisplayName": label(self.display_name),
                "Description": label(self.description or self.display_name),
                "RequiredLevel": dict(REQUIRED_NONE),
            },
        }


@dataclass(frozen=True)
class TableSpec:
    logical_name: str
    schema_name: str
    display_name: str
    description: str = ""

    def body(self) -> dict[str, Any]:
        """A custom activity table (reference §6.3): primary name `Subject`, user owned, notes on."""
        plural = self.display_name if self.display_name.endswith("s") else self.display_name + "s"
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
            "SchemaName": self.schema_name,
            "DisplayName": label(self.display_name),
            "DisplayCollectionName": label(plural),
            "Description": label(self.description or self.display_name),
            "OwnershipType": "UserOwned",
            "IsActivity": True,
            "HasActivities": False,
            "HasNotes": True,
            "IsAvailableOffline": True,
            "IsMailMergeEnabled": False,
            "ActivityTypeMask": 1,
            "Attributes": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                    "AttributeType": "String",
                    "AttributeTypeName": {"Value": "StringType"},
                    "SchemaName": "Subject",
                    "IsPrimaryName": True,
                    "MaxLength": 200,
                    "FormatName": {"Value": "Text"},
                    "RequiredLevel": dict(REQUIRED_NONE),
                    "DisplayName": label("Subject"),
                    "Description": label("Subject"),
                }
            ],
        }


@dataclass(frozen=True)
class KeySpec:
    table: str
    schema_name: str
    columns: tuple[str, ...]
    display_name: str


@dataclass
class SchemaPlan:
    tables: list[TableSpec] = field(default_factory=list)
    columns: list[ColumnSpec] = field(default_factory=list)
    keys: list[KeySpec] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> SchemaPlan:
        data = json.loads(text)
        cols = [
            ColumnSpec(**{**c, "options": tuple(tuple(o) for o in c["options"])}) for c in data["columns"]
        ]
        keys = [KeySpec(**{**k, "columns": tuple(k["columns"])}) for k in data["keys"]]
        return SchemaPlan([TableSpec(**t) for t in data["tables"]], cols, keys)

    def touched_tables(self) -> list[str]:
        names = (
            [t.logical_name for t in self.tables]
            + [c.table for c in self.columns]
            + [k.table for k in self.keys]
        )
        return sorted(set(names))


@dataclass
class SchemaDiff:
    create_tables: list[TableSpec] = field(default_factory=list)
    create_columns: list[ColumnSpec] = field(default_factory=list)
    add_options: list[tuple[ColumnSpec, int, str]] = field(default_factory=list)
    create_keys: list[KeySpec] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create_tables or self.create_columns or self.add_options or self.create_keys)

    def summary(self) -> dict[str, int]:
        return {
            "tables": len(self.create_tables),
            "columns": len(self.create_columns),
            "options": len(self.add_options),
            "keys": len(self.create_keys),
            "conflicts": len(self.conflicts),
        }

    def markdown(self) -> str:
        lines = ["| change | table | name | detail |", "|---|---|---|---|"]
        lines += [
            f"| create table | {t.logical_name} | {t.schema_name} | custom activity |"
            for t in self.create_tables
        ]
        lines += [
            f"| create column | {c.table} | {c.logical_name} | {c.type}{_detail(c)} |"
            for c in self.create_columns
        ]
        lines += [f"| add option | {c.table} | {c.logical_name} | {v} {t} |" for c, v, t in self.add_options]
        lines += [
            f"| create key | {k.table} | {k.schema_name} | {', '.join(k.columns)} |" for k in self.create_keys
        ]
        lines += [f"| CONFLICT | | | {c} |" for c in self.conflicts]
        return (
            "\n".join(lines)
            if len(lines) > 2
            else "No change: the target already has every planned table, column and key."
        )


def _detail(c: ColumnSpec) -> str:
    if c.max_length:
        return f" ({c.max_length})"
    if c.options:
        return f" ({len(c.options)} options)"
    if c.lookup_target:
        return f" → {c.lookup_target}"
    if c.format:
        return f" ({c.format})"
    return ""


def _compatible(spec: ColumnSpec, attribute_type: str, type_name: str) -> bool:
    if spec.type == "MultiSelectPicklist":
        return type_name == "MultiSelectPicklistType"
    if spec.type == "Picklist" and type_name == "MultiSelectPicklistType":
        return False
    return attribute_type in _COMPATIBLE.get(spec.type, {spec.type})


def diff(plan: SchemaPlan, existing: Mapping[str, EntityMeta | None]) -> SchemaDiff:
    """What to create so the target holds `plan`. `existing` has an entry for every table of the plan
    (None: the table does not exist yet; planned tables then count as created for columns and keys)."""
    out = SchemaDiff()
    planned_tables = {t.logical_name for t in plan.tables}
    for t in plan.tables:
        if existing.get(t.logical_name) is None:
            out.create_tables.append(t)
    for c in plan.columns:
        meta = existing.get(c.table)
        if meta is None:
            if c.table not in planned_tables:
                out.conflicts.append(
                    f"table '{c.table}' does not exist in the target, column {c.logical_name} cannot be created"
                )
            else:
                out.create_columns.append(c)
            continue
        attr = meta.attributes.get(c.logical_name)
        if attr is None:
            out.create_columns.append(c)
            continue
        if not _compatible(c, attr.attribute_type, attr.type_name):
            out.conflicts.append(
                f"{c.table}.{c.logical_name} exists as {attr.type_name or attr.attribute_type}, the plan needs {c.type}"
            )
            continue
        if (
            c.type == "String"
            and attr.max_length is not None
            and c.max_length
            and attr.max_length < c.max_length
        ):
            out.conflicts.append(
                f"{c.table}.{c.logical_name} has MaxLength {attr.max_length}, the data needs {c.max_length}"
            )
        if c.type == "Lookup" and c.lookup_target and attr.targets and c.lookup_target not in attr.targets:
            out.conflicts.append(
                f"{c.table}.{c.logical_name} is a lookup to {attr.targets}, the plan needs {c.lookup_target}"
            )
        if c.options:
            have = attr.option_values
            out.add_options += [(c, v, t) for v, t in c.options if v not in have]
            out.conflicts += _relabelled(c, {o.value: o.label for o in attr.options if o.label})
    for k in plan.keys:
        meta = existing.get(k.table)
        if meta is not None and any(set(x.key_attributes) == set(k.columns) for x in meta.keys):
            continue
        out.create_keys.append(k)
    return out


def _relabelled(c: ColumnSpec, labels: Mapping[int, str]) -> list[str]:
    """Options the target has under another label than the plan's: staging writes each Close label as the
    plan's value, so such a value would show another label in Dynamics (e.g. a column created by an older
    plan that numbered the options in another order)."""
    return [
        f"{c.table}.{c.logical_name}: option {v} is labelled {labels[v]!r} in the target, but the plan writes "
        f"{t!r} as {v}; relabel the option in Dataverse, or delete the column so that it is created again"
        for v, t in c.options
        if v in labels and labels[v].strip().casefold() != t.strip().casefold()
    ]


def key_for(table: str, column: str, prefix: str) -> KeySpec:
    return KeySpec(table, f"{prefix}_{table}_closeid_key"[:100], (column,), "Close id key")


def missing_from(plan_columns: Sequence[ColumnSpec], meta: EntityMeta | None) -> list[str]:
    """Planned columns of one table that the target does not have (for phase checks)."""
    if meta is None:
        return [c.logical_name for c in plan_columns]
    return [c.logical_name for c in plan_columns if c.logical_name not in meta.attributes]
