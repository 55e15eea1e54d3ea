"""The transform registry: every transform a field map (`mappings/fields/*.yaml`) may name.

Each transform is a pure, named function with two faces:
- a scalar function here (the specification, easy to test and to call from other code), and
- a vectorised Polars builder in `transform_exprs.py`, which the mapping engine uses so that staging
  300k activities takes seconds, not minutes.

`TRANSFORMS` describes each one (number of sources, arguments) so the config loader can reject a
misspelt name or a missing argument with the file, line and key, before any data is touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# ISO 4217 minor-unit exponents that differ from 2. Close stores money as an integer in minor units.
MINOR_UNIT_EXPONENTS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}
MONEY_LIMIT = Decimal("1000000000000")  # Dataverse Money range is ±1e12 (dataverse_api.md §7.4)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class TransformError(ValueError):
    """A value cannot be transformed; the message is the reason shown in the rejected table."""


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str


def cents_to_money(
    minor_units: int | str | None, currency: str | None, default_currency: str = "USD"
) -> Money | None:
    """Close money (integer minor units + ISO code) -> Money in currency units: 50000 USD -> 500.00 USD."""
    if minor_units is None:
        return None
    code = (currency or default_currency).strip().upper()
    if not _CURRENCY.match(code):
        raise TransformError(f"unknown currency code {currency!r}")
    try:
        units = Decimal(str(minor_units))
    except InvalidOperation as exc:
        raise TransformError(f"money value {minor_units!r} is not a number") from exc
    if units != units.to_integral_value():
        raise TransformError(f"money value {minor_units!r} is not an integer number of minor units")
    amount = units.scaleb(-MINOR_UNIT_EXPONENTS.get(code, 2))
    if abs(amount) > MONEY_LIMIT:
        raise TransformError(f"amount {amount} {code} is outside the Dataverse money range ±1e12")
    return Money(amount, code)


_DT_FORMATS = (
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d",  # a bare date (task due dates) means midnight UTC
)


def parse_close_datetime(value: str | datetime | None) -> datetime | None:
    """Parse any Close timestamp: with offset, without fraction, or naive (newer resources; naive means
    UTC per close_api.md §1.5). Returns an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        for fmt in _DT_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise TransformError(f"unparseable timestamp {value!r}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_utc_iso(value: str | datetime | None) -> str | None:
    """Dataverse wire form of a DateTime (UserLocal/TimeZoneIndependent): "2021-07-13T11:39:05Z"."""
    parsed = parse_close_datetime(value)
    # isoformat, not strftime: strftime does not zero-pad years < 1000 ("0001-01-01" roles) on Linux.
    return None if parsed is None else parsed.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def to_date_iso(value: str | date | None) -> str | None:
    """Dataverse DateOnly wire form "YYYY-MM-DD" from a Close date or datetime (the UTC date)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo is None else value.astimezone(UTC)).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return str(to_utc_iso(text))[:10]
    except ValueError as exc:
        raise TransformError(f"unparseable date {value!r}") from exc


@dataclass(frozen=True)
class ChoiceSet:
    """Labels of one Close vocabulary -> Dataverse option values (ints). Matching ignores case and
    surrounding whitespace (str.lower, identical to Polars to_lowercase); `default` (if set) is used for unknown labels instead of an error."""

    name: str
    options: Mapping[str, int]
    default: int | None = None
    _folded: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", {k.strip().lower(): v for k, v in self.options.items()})

    @property
    def folded(self) -> Mapping[str, int]:
        return self._folded


@dataclass(frozen=True)
class ChoiceResult:
    """Outcome of a choice lookup: `value` when known, else `reason` says why (never a silent None)."""

    value: int | None
    reason: str | None = None

    @property
    def known(self) -> bool:
        return self.reason is None


def map_choice(label: str | None, choices: ChoiceSet) -> ChoiceResult:
    if label is None or not str(label).strip():
        return ChoiceResult(None)
    value = choices.folded.get(str(label).strip().lower())
    if value is not None:
        return ChoiceResult(value)
    if choices.default is not None:
        return ChoiceResult(choices.default)
    known = ", ".join(repr(k) for k in choices.options)
    return ChoiceResult(None, f"unknown choice {label!r} for {choices.name} (known: {known})")


@dataclass(frozen=True)
class Truncated:
    kept: str | None
    cut: str  # "" when nothing was cut

    @property
    def was_truncated(self) -> bool:
        return bool(self.cut)


def truncate(text: str | None, max_length: int) -> Truncated:
    """Explicit truncation: returns what was kept AND what was cut, so the caller can report the loss."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if text is None or len(text) <= max_length:
        return Truncated(text, "")
    return Truncated(text[:max_length], text[max_length:])


TRUE_WORDS = ("true", "yes", "y", "1", "on")
FALSE_WORDS = ("false", "no", "n", "0", "off")


def parse_bool(
    value: object, true_values: Sequence[str] = TRUE_WORDS, false_values: Sequence[str] = FALSE_WORDS
) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if not text:
        return None
    if text in {t.casefold() for t in true_values}:
        return True
    if text in {f.casefold() for f in false_values}:
        return False
    raise TransformError(
        f"{value!r} is not a yes/no value (true: {list(true_values)}, false: {list(false_values)})"
    )


def check_range(
    value: float | int | str | None,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float | int | None:
    """Number within [minimum, maximum]; with integer=True the value must be integral and is returned as int."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise TransformError(f"{value!r} is not a number") from exc
    if integer and not number.is_integer():
        raise TransformError(f"{value!r} is not a whole number")
    if minimum is not None and number < minimum:
        raise TransformError(f"{value!r} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise TransformError(f"{value!r} is above the maximum {maximum}")
    return int(number) if integer else number


def seconds_to_minutes(seconds: int | None) -> int | None:
    """Call duration for `actualdurationminutes`: rounded UP so a 20-second call is not shown as 0 minutes
    (the exact seconds are kept in a custom column)."""
    if seconds is None:
        return None
    if seconds < 0:
        raise TransformError(f"negative duration {seconds}")
    return -(-int(seconds) // 60)


@dataclass(frozen=True)
class ArgSpec:
    type: type | tuple[type, ...]
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class TransformSpec:
    """What the config loader validates a field entry against."""

    name: str
    doc: str
    min_sources: int = 1
    max_sources: int | None = 1
    args: Mapping[str, ArgSpec] = field(default_factory=dict)


def _spec(name: str, doc: str, lo: int = 1, hi: int | None = 1, **args: ArgSpec) -> TransformSpec:
    return TransformSpec(name, doc, lo, hi, args)


_S, _I, _L, _D = str, int, list, dict
TRANSFORMS: dict[str, TransformSpec] = {
    s.name: s
    for s in (
        _spec("copy", "value unchanged"),
        _spec("text", "string, trimmed; blank -> null"),
        _spec("html_to_text", "HTML -> readable plain text"),
        _spec("const", "a constant", 0, 0, value=ArgSpec((str, int, float, bool), required=True)),
        _spec("coalesce", "first non-blank of several sources", 1, None),
        _spec(
            "template",
            "format sources into text; '{}' placeholders, null -> ''",
            1,
            None,
            format=ArgSpec(_S, True),
        ),
        _spec(
            "cents_to_money",
            "minor units (+ currency source) -> Decimal amount",
            1,
            2,
            default_currency=ArgSpec(_S, default="USD"),
        ),
        _spec("datetime_utc", "Close timestamp (any format, naive = UTC) -> 'YYYY-MM-DDTHH:MM:SSZ'"),
        _spec("date_only", "Close date or timestamp -> 'YYYY-MM-DD'"),
        _spec(
            "choice",
            "label -> option value from a named choice set or an inline map",
            1,
            1,
            set=ArgSpec(_S),
            map=ArgSpec(_D),
            default=ArgSpec(_I),
            column=ArgSpec(_S),
            fix=ArgSpec(_S),
        ),
        _spec(
            "multi_choice",
            "list of labels -> '727000000,727000001'",
            1,
            1,
            set=ArgSpec(_S),
            map=ArgSpec(_D),
            column=ArgSpec(_S),
            fix=ArgSpec(_S),
        ),
        _spec("boolean", "yes/no words -> bool", 1, 1, true=ArgSpec(_L), false=ArgSpec(_L)),
        _spec(
            "number",
            "number with range check",
            1,
            1,
            min=ArgSpec((int, float)),
            max=ArgSpec((int, float)),
            integer=ArgSpec(bool, default=False),
        ),
        _spec("seconds_to_minutes", "seconds -> whole minutes, rounded up"),
        _spec("email", "validated, normalised address (invalid -> problem with reason)"),
        _spec("phone", "E.164 where possible, raw text otherwise", 1, 1, default_country_code=ArgSpec(_S)),
        _spec("url", "web address with scheme; not a URL -> problem"),
        _spec("first_name", "first name from a full name"),
        _spec("last_name", "last name from a full name"),
        _spec(
            "pick",
            "one field of the n-th list element, optionally filtered by type",
            1,
            1,
            field=ArgSpec(_S, True),
            types=ArgSpec(_L),
            exclude_types=ArgSpec(_L),
            index=ArgSpec(_I, default=0),
        ),
        _spec(
            "join_list",
            "list elements from index `skip` joined into text",
            1,
            1,
            field=ArgSpec(_S),
            skip=ArgSpec(_I, default=0),
            separator=ArgSpec(_S, default="; "),
        ),
        _spec(
            "record_id",
            "deterministic Dataverse id of `kind:<close id>`; null id -> problem",
            1,
            1,
            kind=ArgSpec(_S, True),
            required=ArgSpec(bool, default=True),
        ),
        _spec("account_id", "deterministic Account id from a lead name (blank -> placeholder Account)"),
        _spec("account_name", "trimmed lead name, or the placeholder Account name when blank"),
        _spec(
            "annotation_id",
            "deterministic id of annotation:<kind>:<sources...>",
            1,
            None,
            kind=ArgSpec(_S, True),
        ),
        _spec("is_blank", "true when the source is null or blank"),
        _spec("owner", "Close user id -> Dataverse systemuserid (owner map, then owners.yaml fallback)"),
        _spec(
            "equals", "true when the source equals `value` (case-insensitive)", 1, 1, value=ArgSpec(_S, True)
        ),
    )
}
