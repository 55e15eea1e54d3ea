"""Close custom field type -> Dataverse column type (DESIGN §4), and custom logical names.

text -> String (MaxLength from the data: rounded up to a multiple of 100, min 100, max 4000; longer
values -> Memo), textarea -> Memo, number -> Integer when every value is integral (and fits Int32) else
Decimal, date -> DateTime DateOnly, datetime -> DateTime DateAndTime, choices -> Picklist (or
MultiSelectPicklist when multiple), user -> Lookup systemuser, contact -> Lookup contact (multi-valued
user/contact fields -> String, a lookup holds one record), hidden -> String.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STRING_MIN, STRING_MAX, MEMO_MAX = 100, 4000, 1_048_576
MAX_LOGICAL_NAME = 50  # custom attribute schema names are limited to 50 characters
INT32 = (-2_147_483_648, 2_147_483_647)
DECIMAL_RANGE = 100_000_000_000.0  # Dataverse Decimal MinValue/MaxValue is ±100,000,000,000
CLOSE_TYPES = ("text", "textarea", "number", "date", "datetime", "choices", "user", "contact", "hidden")


class SchemaTypeError(ValueError):
    """A Close field cannot be given a Dataverse column type."""


@dataclass(frozen=True)
class ColumnType:
    attribute_type: (
        str  # String | Memo | Integer | Decimal | DateTime | Picklist | MultiSelectPicklist | Lookup
    )
    max_length: int | None = None
    format: str | None = None  # DateOnly | DateAndTime for DateTime columns
    lookup_target: str | None = None  # systemuser | contact
    options: tuple[str, ...] = ()
    precision: int | None = None  # Decimal places of a Decimal column
    notes: tuple[str, ...] = field(default_factory=tuple)


def _flatten(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list | tuple):
            out.extend(x for x in v if x is not None)
        elif v is not None:
            out.append(v)
    return out


def string_max_length(values: Iterable[Any]) -> int:
    """MaxLength for a String column from sample values: longest value rounded up to a multiple of 100,
    at least 100 (room to grow), at most 4000 (the String limit; callers switch to Memo beyond)."""
    longest = max((len(str(v)) for v in _flatten(values)), default=0)
    return min(STRING_MAX, max(STRING_MIN, math.ceil(longest / 100) * 100))


def _number_type(values: Sequence[Any]) -> ColumnType:
    numbers = []
    for v in values:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError) as exc:
            raise SchemaTypeError(f"number field has a non-numeric value {v!r}") from exc
    # Integer only when the data shows it: with no sample at all, Decimal cannot lose a fraction later.
    if numbers and all(n.is_integer() and INT32[0] <= n <= INT32[1] for n in numbers):
        return ColumnType("Integer")
    decimals = max((len(str(v).split(".")[1]) if "." in str(v) else 0 for v in values), default=2)
    notes = ("values exceed the Decimal range ±1e11",) if any(abs(n) > DECIMAL_RANGE for n in numbers) else ()
    return ColumnType("Decimal", precision=min(10, max(2, decimals)), notes=notes)


def column_type_for(close_field: dict[str, Any], values: Sequence[Any] = ()) -> ColumnType:
    """The Dataverse column for one Close custom field definition, sized by sample `values`."""
    kind = close_field.get("type")
    multiple = bool(close_field.get("accepts_multiple_values"))
    flat = _flatten(values)
    if kind in ("text", "hidden"):
        longest = max((len(str(v)) for v in flat), default=0)
        if longest > STRING_MAX:
            return ColumnType(
                "Memo", max_length=MEMO_MAX, notes=(f"longest value {longest} > {STRING_MAX}: Memo",)
            )
        return ColumnType("String", max_length=string_max_length(flat))
    if kind == "textarea":
        return ColumnType("Memo", max_length=MEMO_MAX if any(len(str(v)) > 4000 for v in flat) else 4000)
    if kind == "number":
        return _number_type(flat)
    if kind == "date":
        return ColumnType("DateTime", format="DateOnly")
    if kind == "datetime":
        return ColumnType("DateTime", format="DateAndTime")
    if kind == "choices":
        options = tuple(close_field.get("choices") or ())
        seen = list(
            dict.fromkeys([*options, *(str(v) for v in flat)])
        )  # values outside the list are kept too
        extra = tuple(v for v in seen if v not in options)
        notes = (f"values not in the Close choice list: {list(extra)}",) if extra else ()
        return ColumnType("MultiSelectPicklist" if multiple else "Picklist", options=tuple(seen), notes=notes)
    if kind in ("user", "contact"):
        target = "systemuser" if kind == "user" else "contact"
        if multiple:
            note = f"multi-valued {kind} field: a lookup holds one {target}, so the ids are kept as text"
            return ColumnType(
                "String",
                max_length=string_max_length([", ".join(map(str, v)) for v in values if v]),
                notes=(note,),
            )
        return ColumnType("Lookup", lookup_target=target)
    raise SchemaTypeError(
        f"unsupported Close custom field type {kind!r} (supported: {', '.join(CLOSE_TYPES)})"
    )


def option_values(
    labels: Sequence[str], option_value_prefix: int, existing: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Choice label -> option value of a choice column this project creates: `option_value_prefix * 10000 +
    position` in the order given (Close's order). THE one place option numbers are assigned: the schema plan
    numbers columns with it, and staging reads the values back from the plan.

    existing: label -> value of the options the column already has in the target; such a label keeps its
    value (matched ignoring case and surrounding spaces), the others take the lowest values still free."""
    have = {k.strip().casefold(): v for k, v in (existing or {}).items()}
    taken, out, n = set(have.values()), {}, option_value_prefix * 10000
    for label in dict.fromkeys(labels):
        value = have.get(label.strip().casefold())
        if value is None:
            while n in taken:
                n += 1
            value = n
            taken.add(value)
        out[label] = value
    return out


def sanitize_name(name: str) -> str:
    """Close label -> lower-case ASCII letters and digits (accents folded, other characters dropped)."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower())


def logical_name(
    name: str, prefix: str, taken: Iterable[str] = (), max_length: int = MAX_LOGICAL_NAME
) -> str:
    """`<prefix>_<sanitized name>`, at most `max_length` characters, unique among `taken` (a numeric suffix
    is added: c2d_industry, c2d_industry2, ...). Names with no ASCII letters (e.g. "産業") become `field`."""
    taken_set = {t.lower() for t in taken}
    stem = sanitize_name(name) or "field"
    if stem[0].isdigit():
        stem = "f" + stem  # logical names start with a letter after the prefix, by convention
    base = f"{prefix}_{stem}"[:max_length]
    candidate, n = base, 1
    while candidate in taken_set:
        n += 1
        suffix = str(n)
        candidate = base[: max_length - len(suffix)] + suffix
    return candidate


def schema_name(logical: str, label: str) -> str:
    """SchemaName for a logical name: prefix kept, the rest Pascal-cased from the label where it matches."""
    prefix, _, rest = logical.partition("_")
    words = re.findall(
        r"[A-Za-z0-9]+", unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    )
    pascal = "".join(w[:1].upper() + w[1:].lower() for w in words)
    return f"{prefix}_{pascal}" if pascal.lower() == rest else f"{prefix}_{rest[:1].upper()}{rest[1:]}"
