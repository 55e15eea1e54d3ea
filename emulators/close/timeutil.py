"""Timestamps as sortable integers (µs since the epoch, UTC) and parsing of filter values."""

from __future__ import annotations

from datetime import UTC, date, datetime

from .errors import field_error

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_key(value: object) -> int | None:
    """µs since epoch for an ISO date/datetime string from the data; naive values are UTC; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _dt_key(dt)


def _dt_key(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_filter_value(param: str, raw: str) -> int:
    """A date or date-time filter value → key. A bare date means midnight UTC. Bad values → 400."""
    text = raw.strip().strip('"').strip("'")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return _dt_key(datetime(d.year, d.month, d.day, tzinfo=UTC))
        if "T" in text and " " in text:
            # An unencoded "+00:00" in a query string arrives as " 00:00" (form decoding turns + into space).
            head, _, tail = text.rpartition(" ")
            text = head + "+" + tail
        else:
            text = text.replace(" ", "T", 1)
        return _dt_key(datetime.fromisoformat(text))
    except ValueError:
        raise field_error(
            param,
            f"Invalid date or datetime value {raw!r} (expected e.g. 2024-01-31 or 2024-01-31T12:00:00+00:00).",
        ) from None


def iso_us(us: int) -> str:
    """A classic-resource timestamp: UTC with µs and an explicit +00:00 (close_api.md §1.5)."""
    return (
        datetime.fromtimestamp(us // 1_000_000, tz=UTC)
        .replace(microsecond=us % 1_000_000)
        .isoformat(timespec="microseconds")
    )


def iso_naive_us(us: int) -> str:
    """The naive (offset-less) timestamp newer resources such as events use (close_api.md §1.5)."""
    return iso_us(us)[: -len("+00:00")]
