"""Instance annotations on record reads: which ones a request asked for, and the formatted values.

`Prefer: odata.include-annotations="<filter>"` takes `*`, one annotation name, or a comma-separated list
whose items may end in `*` (a namespace) or start with `-` (exclude); the response echoes the filter in
`Preference-Applied` (powerapps-docs webapi/compose-http-requests-handle-errors.md "Request annotations",
query/select-columns.md "Formatted values"). Formatted values (select-columns.md): labels of choice,
choices (joined by "; ", multi-select-picklist.md), yes/no, status and status reason columns; the primary
name of a lookup's record; money with its currency symbol; numbers with group separators; dates and times
in the user's time zone (en-US formats such as "4/7/2023 2:59 PM").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from emulators.dataverse.metadata import Attribute

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION_PROPERTY = "Microsoft.Dynamics.CRM.associatednavigationproperty"


@dataclass(frozen=True)
class AnnotationFilter:
    """The parsed `odata.include-annotations` value (the text between the quotes)."""

    text: str

    @classmethod
    def parse(cls, value: str) -> AnnotationFilter:
        return cls(value.strip().strip('"').strip())

    def _terms(self) -> list[str]:
        return [t.strip() for t in self.text.split(",") if t.strip()]

    def wants(self, name: str) -> bool:
        """Whether annotation `name` is included: the most specific matching term decides."""
        best: tuple[int, bool] | None = None
        for term in self._terms():
            exclude = term.startswith("-")
            pattern = term[1:] if exclude else term
            if pattern.endswith("*"):
                stem = pattern[:-1].rstrip(".")
                hit = not stem or name.casefold().startswith(stem.casefold())
                rank = len(stem)
            else:
                hit, rank = name.casefold() == pattern.casefold(), 10_000
            if hit and (best is None or rank > best[0] or (rank == best[0] and exclude)):
                best = (rank, not exclude)
        return best is not None and best[1]

    def __bool__(self) -> bool:
        return any(not t.startswith("-") for t in self._terms())

    @property
    def applied(self) -> str:
        return f'odata.include-annotations="{self.text}"'


ALL = AnnotationFilter("*")
NONE = AnnotationFilter("")


def as_filter(annotations: bool | AnnotationFilter | None) -> AnnotationFilter:
    if isinstance(annotations, AnnotationFilter):
        return annotations
    return ALL if annotations else NONE


def format_number(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def format_datetime(attr: Attribute, value: str, time_zone: str) -> str:
    """en-US short date (DateOnly) or short date and time (in the user's zone for UserLocal columns)."""
    date_only = attr.format == "DateOnly" or attr.behavior == "DateOnly"
    if date_only:
        year, month, day = (int(p) for p in value[:10].split("-"))
        return f"{month}/{day}/{year}"
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if attr.behavior != "TimeZoneIndependent":
        dt = dt.astimezone(ZoneInfo(time_zone))
    hour = dt.hour % 12 or 12
    return f"{dt.month}/{dt.day}/{dt.year} {hour}:{dt.minute:02d} {'AM' if dt.hour < 12 else 'PM'}"


def formatted_value(attr: Attribute, value: Any, currency_symbol: str, time_zone: str) -> str | None:
    """The FormattedValue annotation of a non-lookup column, None where Dataverse gives none (text, ids)."""
    kind = attr.kind
    if kind in ("Picklist", "State", "Status"):
        return attr.option_label(value)
    if kind == "MultiSelectPicklist":
        labels = [attr.option_label(int(v)) for v in str(value).split(",") if v.strip()]
        return "; ".join(label for label in labels if label is not None)
    if kind == "Boolean":
        return attr.true_label if value else attr.false_label
    if kind == "Money":
        decimals = attr.precision if attr.precision is not None else 2
        sign = "-" if value < 0 else ""
        return f"{sign}{currency_symbol}{format_number(abs(value), decimals)}"
    if kind in ("Integer", "BigInt"):
        return format_number(value, 0)
    if kind in ("Decimal", "Double"):
        return format_number(value, attr.precision if attr.precision is not None else 2)
    if kind == "DateTime" and isinstance(value, str):
        return format_datetime(attr, value, time_zone)
    return None
