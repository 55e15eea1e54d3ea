"""Column value validation and normalisation for writes, with the real error codes and messages (§2.6).

`converter(entity, attr)` returns a function `value -> stored value` pre-bound to the column's limits, so the
hot path of a bulk load does no metadata lookups.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import Attribute
from emulators.dataverse.odata import GUID_RE

Converter = Callable[[Any], Any]
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def type_error(entity: str, value: Any, edm: str) -> DataverseError:
    return DataverseError(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{entity}'  ---->  InnerException : "
        f"Microsoft.OData.ODataException: Cannot convert the literal '{value}' to the expected type '{edm}'.",
    )


def format_datetime(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_last_now: tuple[int, str] = (0, "")


def now_iso() -> str:
    """The current time as stored (whole seconds, UTC). Within one second it is the same str object: a bulk
    load stamps thousands of rows a second, and each would otherwise keep its own copy of the text."""
    global _last_now
    now = datetime.now(UTC)
    second = int(now.timestamp())
    last = _last_now
    if last[0] == second:
        return last[1]
    text = format_datetime(now)
    _last_now = (second, text)
    return text


def parse_datetime(value: Any, date_only: bool, entity: str = "") -> str:
    """ISO 8601 -> 'YYYY-MM-DDTHH:MM:SSZ' (UTC), or 'YYYY-MM-DD' for DateOnly columns (reference §7.13)."""
    if not isinstance(value, str):
        raise type_error(entity, value, "Edm.Date" if date_only else "Edm.DateTimeOffset")
    text = value.strip()
    m = _DATE_RE.match(text)
    try:
        if m:
            dt = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
    except ValueError:
        raise type_error(entity, value, "Edm.Date" if date_only else "Edm.DateTimeOffset") from None
    if dt.astimezone(UTC).year < 1753:  # SQL datetime lower bound used by Dataverse
        raise DataverseError(
            400,
            "0x80040203",
            f"The date-time format for {value} is invalid, or value is outside the supported range.",
        )
    if date_only:
        return dt.strftime("%Y-%m-%d") if m else dt.astimezone(UTC).strftime("%Y-%m-%d")
    return format_datetime(dt)


def converter(entity: str, attr: Attribute) -> Converter:
    kind, name = attr.kind, attr.logical_name
    if kind in ("String", "Memo"):
        limit = attr.max_length or 4000

        def conv_str(v: Any) -> Any:
            if v is None:
                return None
            if not isinstance(v, str):
                raise type_error(entity, v, "Edm.String")
            if len(v) > limit:
                raise DataverseError(
                    400,
                    "0x80044331",
                    f"A validation error occurred.  The length of the '{name}' attribute of the '{entity}' entity "
                    f"exceeded the maximum allowed length of '{limit}'.",
                )
            return v

        return conv_str
    if kind in ("Integer", "BigInt"):
        lo, hi = attr.min_value, attr.max_value

        def conv_int(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                else:
                    raise type_error(entity, v, "Edm.Int32" if kind == "Integer" else "Edm.Int64")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise DataverseError(
                    400,
                    "0x80044330",
                    f"A validation error occurred. The value {v} of '{name}' on record of type '{entity}' is outside "
                    f"the valid range. Accepted Values: {lo:g} to {hi:g}",
                )
            return v

        return conv_int
    if kind in ("Decimal", "Double", "Money"):
        lo, hi, prec = attr.min_value, attr.max_value, attr.precision

        def conv_num(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise type_error(entity, v, "Edm.Decimal" if kind != "Double" else "Edm.Double")
            if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
                raise DataverseError(
                    400,
                    "0x80044330",
                    "A validation error occurred. A decimal value provided is outside of the allowed values for "
                    f"this attribute. ('{name}' of '{entity}' accepts {lo:g} to {hi:g}; got {v})",
                )
            return round(float(v), prec) if prec is not None else float(v)

        return conv_num
    if kind == "Boolean":

        def conv_bool(v: Any) -> Any:
            if v is None or isinstance(v, bool):
                return v
            raise type_error(entity, v, "Edm.Boolean")

        return conv_bool
    if kind == "DateTime":
        date_only = attr.format == "DateOnly" or attr.behavior == "DateOnly"
        return lambda v: None if v is None else parse_datetime(v, date_only, entity)
    if kind in ("Picklist", "State", "Status"):
        return _choice_converter(entity, attr)
    if kind == "MultiSelectPicklist":
        return _multi_choice_converter(entity, attr)
    if kind == "Uniqueidentifier":

        def conv_guid(v: Any) -> Any:
            if v is None:
                return None
            if not isinstance(v, str) or not GUID_RE.match(v):
                raise type_error(entity, v, "Edm.Guid")
            return v.lower()

        return conv_guid
    return lambda v: v


def out_of_range(
    entity: str, name: str, value: Any, accepted: list[int], code: str = "0x8004431A"
) -> DataverseError:
    return DataverseError(
        400,
        code,
        f"A validation error occurred. The value {value} of '{name}' on record of type '{entity}' is outside the "
        f"valid range. Accepted Values: {','.join(str(a) for a in accepted)}",
    )


def _choice_converter(entity: str, attr: Attribute) -> Converter:
    name = attr.logical_name

    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise type_error(entity, v, "Edm.Int32")
        accepted = attr.option_values  # read live: InsertOptionValue may have added options
        if v not in accepted:
            raise out_of_range(entity, name, v, accepted)
        return v

    return conv


def _multi_choice_converter(entity: str, attr: Attribute) -> Converter:
    name = attr.logical_name

    def conv(v: Any) -> Any:
        if v is None or v == "":
            return None
        if isinstance(v, list):
            items = v
        elif isinstance(v, str):
            try:
                items = [int(x) for x in v.split(",") if x.strip()]
            except ValueError:
                raise type_error(entity, v, "Edm.String") from None
        else:
            raise type_error(entity, v, "Edm.String")
        accepted = attr.option_values
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int) or item not in accepted:
                raise out_of_range(entity, name, item, accepted, code="0x80061005")
        return ",".join(str(i) for i in items)

    return conv
