"""The transform registry: every transform a field map (`mappings/fields/*.yaml`) may name.

`TRANSFORMS` describes each one (number of sources, arguments) so the config loader can reject a
misspelt name or a missing argument with the file, line and key, before any data is touched. The
transforms themselves are vectorised Polars builders (`transform_exprs.py`, `text_exprs.py`), so that
staging 300k activities takes seconds, not minutes; the constants they share with other code (currency
exponents, yes/no words, choice sets) live here. Their row-at-a-time specification is a test oracle
(`tests/unit/transform_oracle.py`), against which unit tests check the builders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
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


@dataclass(frozen=True)
class ChoiceSet:
    """Labels of one Close vocabulary -> Dataverse option values (ints). Matching ignores case and
    surrounding whitespace (str.lower, identical to Polars to_lowercase); `default` (if set) is used for
    unknown labels instead of an error."""

    name: str
    options: Mapping[str, int]
    default: int | None = None
    _folded: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", {k.strip().lower(): v for k, v in self.options.items()})

    @property
    def folded(self) -> Mapping[str, int]:
        return self._folded


# Default words of the `boolean` transform (a field map may name its own).
TRUE_WORDS = ("true", "yes", "y", "1", "on")
FALSE_WORDS = ("false", "no", "n", "0", "off")


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
