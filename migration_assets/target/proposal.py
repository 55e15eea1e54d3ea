"""The mapping proposal: Close custom fields -> existing Dataverse columns or new custom columns.

Pure logic behind `close2d365 propose-mapping`: the caller passes the Close field definitions (with
sample values) and the target's attribute metadata; this module proposes, renders a reviewable YAML
(`mappings/custom_fields.yaml`, every entry `confirmed: false` until a human says otherwise) and parses
it back, validating it with file/line/key errors.

A Close choices field goes to an existing Picklist / MultiSelectPicklist column only when every Close
choice matches one of that column's options by label: the entry then lists the option value each choice
is written as (`column.values`). Otherwise a new column is proposed, and `reason` names the existing
column and the choices it lacks, so no value is ever written as a number the column does not have.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from migration_assets.mapping.yaml_loc import MappingError, Section, load_located
from migration_assets.target.proposal_choices import ChoiceMatch, match_choices
from migration_assets.target.schema_types import (
    ColumnType,
    column_type_for,
    logical_name,
    option_values,
    sanitize_name,
)

# Close object kind -> Dataverse table its custom fields land on.
OBJECT_TABLES = {"lead": "lead", "contact": "contact", "opportunity": "opportunity"}
# Which existing Dataverse attribute types can hold each Close type.
COMPATIBLE = {
    "text": {"String", "Memo"},
    "hidden": {"String", "Memo"},
    "textarea": {"Memo", "String"},
    "number": {"Integer", "Decimal", "Double", "Money", "BigInt"},
    "date": {"DateTime"},
    "datetime": {"DateTime"},
    "choices": {"Picklist", "Virtual", "MultiSelectPicklist"},
    "user": {"Lookup", "Owner"},
    "contact": {"Lookup", "Customer"},
}
NOT_PROPOSABLE = {
    "Uniqueidentifier",
    "State",
    "Status",
    "EntityName",
    "PartyList",
    "CalendarRules",
    "ManagedProperty",
}
MATCH_THRESHOLD = 0.8
CHOICE_TYPES = ("Picklist", "MultiSelectPicklist")


@dataclass(frozen=True)
class FieldProposal:
    close_object: str
    close_field_id: str
    close_name: str
    close_type: str
    multiple: bool
    table: str
    action: str  # "existing" (map to a column that exists) | "new" (create a custom column)
    target: str  # logical name
    column: ColumnType
    confidence: float  # 0..1; 1.0 for a new column derived purely from the data
    reason: str
    confirmed: bool = False
    # action existing + choice column: (Close label, option value of the existing column) for every label
    # of column.options. Empty otherwise (a new column numbers its options from option_value_prefix).
    values: tuple[tuple[str, int], ...] = ()


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def name_similarity(close_name: str, attribute: Mapping[str, Any]) -> float:
    """Best of display-name and logical-name similarity (0..1), ignoring case and punctuation."""
    label = _words(str(attribute.get("DisplayName") or ""))
    a = _words(close_name)
    by_label = difflib.SequenceMatcher(None, a, label).ratio() if label else 0.0
    logical = str(attribute.get("LogicalName") or "").split("_", 1)[-1]
    by_logical = difflib.SequenceMatcher(None, sanitize_name(close_name), sanitize_name(logical)).ratio()
    # Every word of the Close name inside the column label ("Employees" ~ "No. of Employees"): likely the
    # same thing, but less certain than an exact match, so capped below 0.9.
    words = set(a.split())
    contained = 0.85 if words and label and words <= set(label.split()) else 0.0
    return max(by_label, by_logical, contained)


def _fits(close_field: dict[str, Any], attribute: Mapping[str, Any], column: ColumnType) -> bool:
    kind = attribute.get("AttributeType")
    if kind not in COMPATIBLE.get(str(close_field.get("type")), set()):
        return False
    if column.attribute_type in CHOICE_TYPES:
        # One choice per record -> a Picklist; several -> a multi-select column (Virtual in the metadata,
        # told apart from other Virtual columns by its type name when the caller knows it).
        if column.attribute_type == "Picklist":
            return kind == "Picklist"
        return kind == "MultiSelectPicklist" or (
            kind == "Virtual" and attribute.get("AttributeTypeName") in (None, "MultiSelectPicklistType")
        )
    if column.attribute_type == "String" and column.max_length and kind == "String":
        return (attribute.get("MaxLength") or 0) >= column.max_length
    return not (
        column.lookup_target
        and kind == "Lookup"
        and attribute.get("Targets")
        and column.lookup_target not in attribute["Targets"]
    )


def propose_field(
    close_object: str,
    close_field: dict[str, Any],
    samples: Sequence[Any],
    attributes: Sequence[Mapping[str, Any]],
    prefix: str,
    taken: set[str],
) -> FieldProposal:
    column = column_type_for(close_field, samples)
    table = OBJECT_TABLES.get(close_object, close_object)
    best, best_score, best_match = None, 0.0, ChoiceMatch((), ())
    near: tuple[str, ChoiceMatch, float] | None = None  # best name match refused: choices missing
    for attr in attributes:
        if attr.get("AttributeType") in NOT_PROPOSABLE or str(attr.get("LogicalName", "")) in taken:
            continue
        score = name_similarity(str(close_field.get("name", "")), attr)
        if score <= best_score or not _fits(close_field, attr, column):
            continue
        match = ChoiceMatch((), ())
        if column.attribute_type in CHOICE_TYPES:
            match = match_choices(column.options, attr)
            if not match.complete:
                if score >= MATCH_THRESHOLD and (near is None or score > near[2]):
                    near = (str(attr["LogicalName"]), match, score)
                continue
        best, best_score, best_match = attr, score, match
    base = dict(
        close_object=close_object,
        close_field_id=str(close_field["id"]),
        close_name=str(close_field["name"]),
        close_type=str(close_field["type"]),
        multiple=bool(close_field.get("accepts_multiple_values")),
        table=table,
        column=column,
    )
    if best is not None and best_score >= MATCH_THRESHOLD:
        target = str(best["LogicalName"])
        taken.add(target)
        reason = f"name {best_score:.0%} similar to {best.get('DisplayName') or target!r}, type {best['AttributeType']} fits"
        if column.attribute_type in CHOICE_TYPES:
            reason += f", every choice matches one of its options by label ({len(best_match.values)})"
        return FieldProposal(
            **base,
            action="existing",
            target=target,
            confidence=round(best_score, 2),
            reason=reason,
            values=best_match.values,
        )
    target = logical_name(
        str(close_field["name"]), prefix, taken | {str(a.get("LogicalName")) for a in attributes}
    )
    taken.add(target)
    reason = "no existing column with a similar name and a compatible type"
    if near is not None:
        reason = (
            f"{near[1].describe(near[0])}, so a new column keeps every Close choice; to use {near[0]} "
            f"instead set action: existing, target: {near[0]} and map each choice to one of its option "
            "values under column.values"
        )
    return FieldProposal(**base, action="new", target=target, confidence=1.0, reason=reason)


def propose(
    custom_fields: Mapping[str, Sequence[dict[str, Any]]],
    samples: Mapping[str, Sequence[Any]],
    target_attributes: Mapping[str, Sequence[Mapping[str, Any]]],
    prefix: str,
    taken: Mapping[str, set[str]] | None = None,
) -> list[FieldProposal]:
    """Propose a column for every lead/contact/opportunity custom field.

    custom_fields:     {"lead": [GET /custom_field/lead/ objects], "contact": [...], "opportunity": [...]}
    samples:           {cf_id: [values seen in the data]} (sizes String columns, finds integral numbers)
    target_attributes: {table: [{"LogicalName", "DisplayName", "AttributeType", "MaxLength", ...}]}; choice
                       columns also "Options": [{"Value", "Label"}] (and "AttributeTypeName"), without which
                       no existing choice column is proposed (its option values would be unknown)
    """
    out: list[FieldProposal] = []
    for close_object, fields in custom_fields.items():
        if close_object not in OBJECT_TABLES:
            continue  # activity fields become columns of their custom activity tables (schema/*)
        # Targets already used (by reviewed entries a re-run keeps) are never proposed twice.
        used: set[str] = set((taken or {}).get(OBJECT_TABLES[close_object], ()))
        attrs = target_attributes.get(OBJECT_TABLES[close_object], ())
        for f in fields:
            out.append(propose_field(close_object, f, samples.get(str(f["id"]), ()), attrs, prefix, used))
    return out


HEADER = """\
# Proposed mapping of Close custom fields (generated by `close2d365 propose-mapping`).
# Review every entry: change `target`/`type` if needed, then set `confirmed: true`.
# Loading is blocked (check mapping_confirmed) while any entry is `confirmed: false`.
#   action: existing -> values go to a column that already exists in Dataverse
#   action: new      -> the column is created (schema/*) with the type below
# Choice fields (Picklist / MultiSelectPicklist): `existing` is proposed only when EVERY Close choice matches
# an option of that column by label (case-insensitive, trimmed); `column.values` then gives the column's own
# option value each choice is written as. When some choice has no such option, a new column is proposed
# instead and `reason` names the existing column and the missing choices. To load into the existing column
# anyway, set action: existing and target, and map EVERY choice under `column.values` to an option value
# the column has (several choices may share one); the staging check rejects values it does not have.
"""


def render_proposal(proposals: Sequence[FieldProposal]) -> str:
    entries = []
    for p in proposals:
        col = {"type": p.column.attribute_type}
        for key, value in (
            ("max_length", p.column.max_length),
            ("format", p.column.format),
            ("lookup_target", p.column.lookup_target),
            ("precision", p.column.precision),
        ):
            if value is not None:
                col[key] = value
        if p.column.options:
            col["options"] = list(p.column.options)
        if p.values:
            col["values"] = dict(p.values)
        entry = {
            "close_object": p.close_object,
            "close_field_id": p.close_field_id,
            "close_name": p.close_name,
            "close_type": p.close_type,
            "multiple": p.multiple,
            "table": p.table,
            "action": p.action,
            "target": p.target,
            "column": col,
            "confidence": p.confidence,
            "reason": p.reason,
            "confirmed": p.confirmed,
        }
        if p.column.notes:
            entry["notes"] = list(p.column.notes)
        entries.append(entry)
    body = yaml.safe_dump({"fields": entries}, sort_keys=False, allow_unicode=True, width=110)
    return HEADER + body


_ENTRY_KEYS = (
    "close_object",
    "close_field_id",
    "close_name",
    "close_type",
    "multiple",
    "table",
    "action",
    "target",
    "column",
    "confidence",
    "reason",
    "confirmed",
    "notes",
)
_COLUMN_KEYS = ("type", "max_length", "format", "lookup_target", "precision", "options", "values")
COLUMN_TYPES = (
    "String",
    "Memo",
    "Integer",
    "Decimal",
    "DateTime",
    "Picklist",
    "MultiSelectPicklist",
    "Lookup",
)


def parse_proposal(path: Path, display: str | None = None, prefix: str | None = None) -> list[FieldProposal]:
    """Read a (possibly human-edited) proposal file back; any mistake names the file, line and key."""
    display = display or str(path)
    top = Section(load_located(path, display), display, "")
    top.only("fields")
    out: list[FieldProposal] = []
    seen: dict[tuple[str, str], int] = {}
    for n, (item, line) in enumerate(top.items_of("fields", required=True)):
        s = Section(item, display, f"fields[{n}]", line)
        s.only(*_ENTRY_KEYS)
        action = s.get("action", str, required=True)
        if action not in ("existing", "new"):
            raise s.error("action", "must be 'existing' or 'new'")
        target, table = s.get("target", str, required=True), s.get("table", str, required=True)
        if action == "new" and prefix and not target.startswith(prefix + "_"):
            raise s.error("target", f"a new column must start with the publisher prefix '{prefix}_'")
        if (table, target) in seen:
            raise s.error("target", f"{table}.{target} is also the target of fields[{seen[(table, target)]}]")
        seen[(table, target)] = n
        c = s.section("column")
        c.only(*_COLUMN_KEYS)
        ctype = c.get("type", str, required=True)
        if ctype not in COLUMN_TYPES:
            raise c.error("type", f"unknown column type {ctype!r} (known: {', '.join(COLUMN_TYPES)})")
        column = ColumnType(
            ctype,
            c.get("max_length", int),
            c.get("format", str),
            c.get("lookup_target", str),
            tuple(str(o) for o in c.get("options", list, [])),
            c.get("precision", int),
            tuple(s.get("notes", list, [])),
        )
        values = _parse_values(c, action, target, column)
        confidence = float(s.get("confidence", (int, float), 0.0))
        out.append(
            FieldProposal(
                s.get("close_object", str, required=True),
                s.get("close_field_id", str, required=True),
                s.get("close_name", str, required=True),
                s.get("close_type", str, required=True),
                bool(s.get("multiple", bool, False)),
                table,
                action,
                target,
                column,
                confidence,
                s.get("reason", str, ""),
                s.get("confirmed", bool, required=True),
                values,
            )
        )
    return out


def _parse_values(c: Section, action: str, target: str, column: ColumnType) -> tuple[tuple[str, int], ...]:
    """`column.values` (Close label -> option value of an existing choice column), checked complete."""
    raw = c.get("values", dict)
    if column.attribute_type not in CHOICE_TYPES or action != "existing":
        if raw is not None:
            raise c.error(
                "values",
                "only for action: existing on a choice column (a new column numbers its "
                "options from option_value_prefix); remove it",
            )
        return ()
    raw = raw or {}
    bad = {k: v for k, v in raw.items() if isinstance(v, bool) or not isinstance(v, int)}
    if bad:
        raise c.error("values", f"option values must be whole numbers, got {bad}")
    labels = {str(k) for k in raw}
    missing = [o for o in column.options if o not in labels]
    if missing:
        raise c.error(
            "values",
            f"no option value of {target} for the choices {missing}: map each to an "
            f"option value {target} has, or set action: new",
        )
    extra = sorted(labels - set(column.options))
    if extra:
        raise c.error("values", f"labels {extra} are not in options {list(column.options)}")
    return tuple((o, int(raw[o])) for o in column.options)


def unconfirmed(proposals: Sequence[FieldProposal]) -> list[FieldProposal]:
    return [p for p in proposals if not p.confirmed]


def confirm_all(proposals: Sequence[FieldProposal]) -> list[FieldProposal]:
    """For the demo and tests only: a real migration has a human set `confirmed: true` per entry."""
    return [replace(p, confirmed=True) for p in proposals]


_TRANSFORM = {
    "text": "text",
    "hidden": "text",
    "textarea": "text",
    "date": "date_only",
    "datetime": "datetime_utc",
}


def field_entries(
    proposals: Sequence[FieldProposal], option_value_prefix: int
) -> dict[str, list[dict[str, Any]]]:
    """Confirmed proposals as field-map entries ({table: [entry]}) in the shape of mappings/fields/*.yaml,
    so the one mapping engine applies them. Choice options of a new column get the values the schema step
    gives them (`schema_types.option_values`, as `schema_build.build_plan` numbers the column); those of an
    existing column its own values (`values`). A label outside them is rejected, the reason naming the
    label, the column and the fix."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in proposals:
        if not p.confirmed:
            raise MappingError("custom_fields.yaml", None, p.close_field_id, "not confirmed; review it first")
        entry: dict[str, Any] = {"target": p.target, "source": f"custom.{p.close_field_id}"}
        kind = p.column.attribute_type
        if kind in CHOICE_TYPES:
            options = _choice_values(p, option_value_prefix)
            fix = (
                f"map it to an option value of {p.target} under column.values"
                if p.action == "existing"
                else "add it to column.options (the column is created with those options)"
            )
            entry.update(
                transform="multi_choice" if kind == "MultiSelectPicklist" else "choice",
                args={
                    "map": options,
                    "column": f"{p.table}.{p.target}",
                    "fix": f"in custom_fields.yaml ({p.close_field_id}) {fix}, then stage again",
                },
            )
        elif kind == "Lookup":
            is_user = p.column.lookup_target == "systemuser"
            entry.update(transform="owner" if is_user else "record_id", lookup=p.column.lookup_target)
            if not is_user:
                entry["args"] = {"kind": "contact", "required": False}
        elif kind in ("Integer", "Decimal"):
            entry.update(transform="number", args={"integer": kind == "Integer"})
        elif p.close_type in ("user", "contact"):  # multi-valued lookups kept as text
            entry.update(transform="join_list", args={"separator": ", "})
        else:
            entry["transform"] = _TRANSFORM.get(p.close_type, "text")
        if kind in ("String", "Memo") and p.column.max_length:
            entry["max_length"] = p.column.max_length
        out.setdefault(p.table, []).append(entry)
    return out


def _choice_values(p: FieldProposal, option_value_prefix: int) -> dict[str, int]:
    if p.action != "existing":
        return option_values(p.column.options, option_value_prefix)
    values = dict(p.values)
    missing = [o for o in p.column.options if o not in values]
    if missing:
        # The prefix numbers do not exist on someone else's column: never fall back to them.
        raise MappingError(
            "custom_fields.yaml",
            None,
            p.close_field_id,
            f"existing choice column {p.table}.{p.target} has no option value for {missing} "
            "(column.values); re-run propose-mapping or map them by hand",
        )
    return values
