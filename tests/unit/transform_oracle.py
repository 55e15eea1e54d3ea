"""Row-at-a-time specification of the mapping transforms: the oracle the vectorised builders
(`migration_assets.mapping.transform_exprs`, `text_exprs`) are checked against.

The product stages with the Polars builders only; these scalar functions exist so that each rule can be
read (and tested) one value at a time, and so that unit tests can compare both on the same inputs.
Timestamps are read with the product's one parser (`clients.close.paging.parse_close_datetime`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from migration_assets.clients.close.paging import parse_close_datetime
from migration_assets.mapping.normalise import collapse_ws
from migration_assets.mapping.transforms import (
    FALSE_WORDS,
    MINOR_UNIT_EXPONENTS,
    MONEY_LIMIT,
    TRUE_WORDS,
    ChoiceSet,
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Scripts whose names are conventionally written family-name first ("山田 太郎" = Yamada Taro).
_FAMILY_FIRST = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


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


def to_utc_iso(value: str | datetime | None) -> str | None:
    """Dataverse wire form of a DateTime (UserLocal/TimeZoneIndependent): "2021-07-13T11:39:05Z"."""
    if value is None:
        return None
    parsed = parse_close_datetime(value)
    if parsed is None:
        raise TransformError(f"unparseable timestamp {value!r}")
    # isoformat, not strftime: strftime does not zero-pad years < 1000 ("0001-01-01" roles) on Linux.
    return parsed.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


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


def split_person_name(name: str | None) -> tuple[str | None, str | None]:
    """Split a Close contact `name` into (firstname, lastname) for Dataverse.

    Rules, chosen so that "first + ' ' + last" always gives the original words back:
    - blank or None -> (None, None)
    - "Last, First" (exactly one comma) -> ("First", "Last")
    - one word -> (None, word): Dataverse's required-ish column is lastname, not firstname
    - CJK/Hangul with spaces -> family name first: "山田 太郎" -> ("太郎", "山田")
    - otherwise first word is the first name, the rest the last name ("Jan van der Berg" -> "Jan", "van der Berg")
    """
    if name is None:
        return None, None
    text = collapse_ws(name)
    if not text:
        return None, None
    if text.count(",") == 1:
        last, first = (collapse_ws(p) for p in text.split(","))
        if last and first:
            return first, last
        text = last or first
    if " " not in text:
        return None, text
    head, rest = text.split(" ", 1)
    if _FAMILY_FIRST.search(text):
        return rest, head
    return head, rest


@dataclass(frozen=True)
class EmailCheck:
    """Result of validating one address: `email` is the normalised form when valid, else None."""

    email: str | None
    reason: str | None

    @property
    def valid(self) -> bool:
        return self.reason is None


_LOCAL_OK = re.compile(r"^[\w.!#$%&'*+/=?^`{|}~-]+$")
_DOMAIN_OK = re.compile(r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}$")


def email_problem(raw: str) -> str | None:
    """Why `raw` (already trimmed) is not a usable address, or None. Reasons are stable strings."""
    if re.search(r"\s", raw):
        return "contains whitespace"
    if raw.count("@") != 1:
        return "must contain exactly one '@'"
    local, domain = raw.split("@")
    if not local:
        return "empty local part"
    if len(local) > 64:
        return "local part longer than 64 characters"
    if len(raw) > 254:
        return "longer than 254 characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "misplaced dot in local part"
    if not _LOCAL_OK.match(local):
        return "invalid character in local part"
    if not _DOMAIN_OK.match(domain):
        return "invalid domain"
    return None


def normalise_email(raw: str | None) -> EmailCheck:
    """Validate and normalise an address: trimmed, domain lower-cased (the local part keeps its case,
    as RFC 5321 allows case-sensitive mailboxes; matching elsewhere is case-insensitive)."""
    if raw is None or not raw.strip():
        return EmailCheck(None, "empty")
    text = raw.strip()
    reason = email_problem(text)
    if reason is not None:
        return EmailCheck(None, reason)
    local, domain = text.split("@")
    return EmailCheck(f"{local}@{domain.lower()}", None)


_PHONE_JUNK = re.compile(r"[\s().\-/]")


def normalise_phone(raw: str | None, default_country_code: str | None = None) -> str | None:
    """E.164 where the number allows it, else the trimmed raw text (never dropped).

    "+1 650-333-4444" -> "+16503334444"; "0049 30 1234567" -> "+49301234567";
    "(650) 333-4444" with default_country_code "1" -> "+16503334444"; "ext. 12" stays "ext. 12".
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    compact = _PHONE_JUNK.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if re.fullmatch(r"\+[0-9]{8,15}", compact):
        return compact
    if default_country_code and re.fullmatch(r"[0-9]+", compact):
        national = compact[1:] if compact.startswith("0") else compact
        full = default_country_code + national
        if 8 <= len(full) <= 15 and not (default_country_code == "1" and len(national) != 10):
            return "+" + full
    return text


_BLOCK_END = re.compile(r"(?i)<\s*(br\s*/?|/p|/div|/li|/h[1-6]|/tr)\s*>")
_TAG = re.compile(r"<[^>]*>")
_HEAD = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def html_to_text(markup: str | None) -> str | None:
    """Readable plain text from Close `note_html`/`body_html`: line breaks for block ends, tags removed,
    entities decoded, runs of blank lines squeezed. None and blank input give None."""
    if markup is None:
        return None
    text = _HEAD.sub("", markup)
    text = _BLOCK_END.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    text = _BLANK_LINES.sub("\n\n", text).strip()
    return text or None


_URL = re.compile(r"^(?i:https?)://[^\s/?#.]+(?:\.[^\s/?#.]+)+(?::\d{1,5})?(?:[/?#]\S*)?$")


def url_problem(raw: str | None) -> str | None:
    """None if `raw` looks like a web address (scheme optional), else a reason."""
    if raw is None or not raw.strip():
        return None
    return (
        None
        if _URL.match(with_scheme(raw.strip()))
        else "not a web address (expected e.g. https://example.com)"
    )


def with_scheme(url: str) -> str:
    """Prefix "https://" when a URL has no scheme, so Dataverse renders it as a link."""
    return url if re.match(r"(?i)^[a-z][a-z0-9+.-]*://", url) else "https://" + url
