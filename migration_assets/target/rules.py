"""Validation rules of a Dataverse table, derived from its metadata (plus the columns the schema plan will
create), in a plain JSON-serialisable form so they can be cached in DuckDB (`staged.target_metadata`).

`TableRules` is what the Pandera schema builder (`target_checks.py`) consumes; unit tests build it from a
hand-made dict, the staging assets from `DataverseClient.metadata()` (reference §6.5).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Columns a create may omit although SystemRequired: the platform fills them (owner = caller, state = Open).
PLATFORM_DEFAULTED = frozenset({"ownerid", "statecode", "statuscode", "activitytypecode", "isdocument"})
# Option values of a planned Picklist column that has no choice set yet are not known; it is not checked.
NUMERIC = frozenset({"Integer", "BigInt", "Decimal", "Double", "Money"})
# Lookup targets that are configuration, not migrated records: an unresolved one is an owner-map or currency
# problem of the row itself, so the row is rejected (never silently loaded without its owner/currency).
CONFIG_TARGETS = frozenset({"systemuser", "team", "transactioncurrency"})


@dataclass
class ColumnRule:
    name: str
    attribute_type: str  # String, Memo, Integer, Decimal, Money, Boolean, DateTime, Picklist, Lookup, ...
    type_name: str = ""  # AttributeTypeName, tells MultiSelectPicklistType from other Virtual columns
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    required: bool = False  # SystemRequired and not filled by the platform
    format: str | None = None  # Email | Url | Phone | TextArea | DateOnly | DateAndTime ...
    options: list[int] | None = None  # None: values not known (not checked)
    targets: list[str] = field(default_factory=list)
    valid_for_create: bool = True
    planned: bool = False  # not in the target yet: created by schema/* before loading
    # [value, label] of each labelled option: lets propose-mapping match Close choices to an existing
    # choice column from the cache, without a target connection.
    option_labels: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class TableRules:
    table: str
    entity_set: str
    primary_id: str
    columns: dict[str, ColumnRule] = field(default_factory=dict)
    navigation: dict[str, list[str]] = field(default_factory=dict)  # "<nav property>" -> target tables
    planned_table: bool = False  # the whole table is created by schema/* (custom activity tables)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> TableRules:
        cols = {k: ColumnRule(**v) for k, v in dict(data.get("columns") or {}).items()}
        return TableRules(
            table=str(data["table"]),
            entity_set=str(data["entity_set"]),
            primary_id=str(data["primary_id"]),
            columns=cols,
            navigation={
                k: list(v) if isinstance(v, list) else [v]
                for k, v in dict(data.get("navigation") or {}).items()
            },
            planned_table=bool(data.get("planned_table", False)),
        )

    def lookup_targets(self, nav: str) -> list[str]:
        """Target tables of a `<nav>@odata.bind` column (ownerid: systemuser and team), [] if none."""
        if nav in self.navigation:
            return list(self.navigation[nav])
        col = self.columns.get(nav)
        if col is not None and col.attribute_type in ("Lookup", "Owner", "Customer") and col.targets:
            return list(col.targets)
        return []


def rules_from_metadata(meta: Any) -> TableRules:
    """TableRules from a `dataverse_metadata.EntityMeta` (duck-typed: tests may pass a look-alike)."""
    rules = TableRules(meta.logical_name, meta.entity_set_name, meta.primary_id)
    for name, a in meta.attributes.items():
        options = sorted(a.option_values) if a.options else None
        rules.columns[name] = ColumnRule(
            name=name,
            attribute_type=a.attribute_type,
            type_name=a.type_name,
            max_length=a.max_length,
            min_value=a.min_value,
            max_value=a.max_value,
            required=a.required_level == "SystemRequired" and name not in PLATFORM_DEFAULTED,
            format=a.format,
            options=options,
            targets=list(a.targets),
            valid_for_create=a.valid_for_create,
            option_labels=[(o.value, o.label) for o in a.options if o.label],
        )
    for rel in meta.many_to_one:
        targets = rules.navigation.setdefault(rel.navigation_property, [])
        if rel.referenced_entity not in targets:
            targets.append(rel.referenced_entity)
    return rules


def add_planned_column(
    rules: TableRules,
    name: str,
    attribute_type: str,
    max_length: int | None = None,
    options: Iterable[int] | None = None,
    fmt: str | None = None,
    lookup_target: str | None = None,
) -> None:
    """Add a column the schema plan creates before loading (unless the target already has it)."""
    if name in rules.columns:
        return
    kind, type_name = attribute_type, ""
    if attribute_type == "MultiSelectPicklist":
        kind, type_name = "Virtual", "MultiSelectPicklistType"
    if attribute_type == "DateOnly":
        kind, fmt = "DateTime", "DateOnly"
    lo_hi: tuple[float | None, float | None] = (None, None)
    if attribute_type == "Integer":
        lo_hi = (-2_147_483_648, 2_147_483_647)
    elif attribute_type == "Decimal":
        lo_hi = (-100_000_000_000.0, 100_000_000_000.0)
    rules.columns[name] = ColumnRule(
        name=name,
        attribute_type=kind,
        type_name=type_name,
        max_length=max_length if kind in ("String", "Memo") else None,
        min_value=lo_hi[0],
        max_value=lo_hi[1],
        format=fmt,
        options=sorted(options) if options is not None else None,
        targets=[lookup_target] if lookup_target else [],
        planned=True,
    )
    if lookup_target:
        rules.navigation[name] = [lookup_target]


def planned_activity_table(table: str, entity_set: str) -> TableRules:
    """Rules of a custom activity table that schema/custom_activity_tables will create (reference §6.3):
    the activitypointer columns every activity table has, before its own columns are added."""
    rules = TableRules(table, entity_set, "activityid", planned_table=True)
    base: list[tuple[str, str, int | None]] = [
        ("activityid", "Uniqueidentifier", None),
        ("subject", "String", 200),
        ("description", "Memo", 2000),
        ("scheduledstart", "DateTime", None),
        ("scheduledend", "DateTime", None),
        ("actualstart", "DateTime", None),
        ("actualend", "DateTime", None),
        ("overriddencreatedon", "DateTime", None),
    ]
    for name, kind, length in base:
        rules.columns[name] = ColumnRule(name, kind, max_length=length, planned=True)
    rules.columns["activityid"].required = True
    rules.columns["statecode"] = ColumnRule("statecode", "State", options=[0, 1, 2], planned=True)
    rules.columns["statuscode"] = ColumnRule("statuscode", "Status", options=[1, 2, 3], planned=True)
    rules.columns["ownerid"] = ColumnRule("ownerid", "Owner", targets=["systemuser", "team"], planned=True)
    for target in ("lead", "contact", "account", "opportunity"):
        rules.navigation[f"regardingobjectid_{target}_{table}"] = [target]
    return rules


def required_relationship(rules: TableRules, nav: str, required: Collection[str] = ()) -> bool:
    """Whether a row must be rejected when its lookup `nav` does not resolve (its parent was rejected, or is
    nowhere): the relationships a record cannot exist without (an activity's regarding record, a contact's
    account, a note's object), a column the target requires, a lookup the field map marks `required`, and
    configuration targets. Any other lookup is optional: it is left empty and reported, the row loads."""
    col = rules.columns.get(nav)
    if nav in required or (col is not None and col.required):
        return True
    if nav.startswith("regardingobjectid"):
        return True
    if (rules.table, nav.split("_")[0]) in (("contact", "parentcustomerid"), ("annotation", "objectid")):
        return True
    targets = rules.lookup_targets(nav)
    return not targets or any(t in CONFIG_TARGETS for t in targets)
