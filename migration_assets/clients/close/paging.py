"""Pure helpers for talking to the Close API: rate-limit headers, date windows, timestamps.

Everything here is side-effect free so it can be unit-tested without a server; the HTTP client in
`migration_assets.clients.close.client` composes these pieces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

# Close answers 429 without a body when the limit is hit at the ingress layer (closeio-api #120), and the
# official client falls back to 2 s in that case; we do the same.
DEFAULT_RATE_LIMIT_DELAY = 2.0

# Lower bound used when a date window is open-ended below: Close was founded in 2013, so nothing can be
# older, but records imported with historical dates may be; 1990 leaves ample margin.
WINDOW_FLOOR = datetime(1990, 1, 1, tzinfo=UTC)

_RATELIMIT_PART = re.compile(r"\s*(limit|remaining|reset)\s*=\s*([0-9.]+)\s*", re.IGNORECASE)
_MAX_SKIP = re.compile(r"max_skip\s*=\s*(\d+)")
_MAX_LIMIT = re.compile(r"max_limit\s*=\s*(\d+)")


@dataclass(frozen=True)
class RateLimit:
    """One `RateLimit: limit=L, remaining=R, reset=S` header (reset in seconds, may be fractional)."""

    limit: float
    remaining: float
    reset: float


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimit | None:
    """Read the rate-limit state from response headers.

    Prefers the RFC-style structured `RateLimit` header Close sends today; falls back to the split
    `RateLimit-*` and legacy `X-Rate-Limit-*` headers seen in older responses. Returns None when the
    response carries no usable rate-limit information.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    structured = lowered.get("ratelimit")
    if structured:
        parts = {}
        for chunk in structured.split(","):
            m = _RATELIMIT_PART.fullmatch(chunk)
            if m:
                parts[m.group(1).lower()] = float(m.group(2))
        if {"limit", "remaining", "reset"} <= parts.keys():
            return RateLimit(parts["limit"], parts["remaining"], parts["reset"])
    for prefix in ("ratelimit-", "x-rate-limit-"):
        try:
            return RateLimit(
                float(lowered[prefix + "limit"]),
                float(lowered[prefix + "remaining"]),
                float(lowered[prefix + "reset"]),
            )
        except (KeyError, ValueError):
            continue
    return None


def _as_seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def rate_limit_delay(
    headers: Mapping[str, str], body: Any, default: float = DEFAULT_RATE_LIMIT_DELAY
) -> float:
    """Seconds to wait after a 429, in the order the official client uses.

    `RateLimit` reset → `Retry-After` → `RateLimit-Reset` → legacy body `rate_reset` (top level or under
    `error`) → `default` when the response says nothing (ingress-level 429).
    """
    rl = parse_ratelimit(headers)
    if rl is not None:
        return max(rl.reset, 0.0)
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after", "ratelimit-reset", "x-rate-limit-reset"):
        seconds = _as_seconds(lowered.get(name))
        if seconds is not None:
            return seconds
    if isinstance(body, dict):
        candidates = [body.get("rate_reset")]
        if isinstance(body.get("error"), dict):
            candidates.append(body["error"].get("rate_reset"))
        for candidate in candidates:
            seconds = _as_seconds(candidate)
            if seconds is not None:
                return seconds
    return default


def max_skip_from_error(message: str) -> int | None:
    """The max_skip value from Close's 400 "... (max_skip = 250000). Please refine ..." message."""
    m = _MAX_SKIP.search(message or "")
    return int(m.group(1)) if m else None


def max_limit_from_error(message: str) -> int | None:
    """The max_limit value from Close's 400 "... larger than the maximum limit ... (max_limit = N)." message."""
    m = _MAX_LIMIT.search(message or "")
    return int(m.group(1)) if m else None


# --- timestamps -------------------------------------------------------------------------------------


def parse_close_datetime(value: Any) -> datetime | None:
    """Parse a Close timestamp into an aware UTC datetime.

    Close emits `2021-07-13T11:39:05.012000+00:00`, the same without fraction, and *naive* timestamps on
    newer resources (pipelines, sequences, custom activity types, events) which are UTC. Pure dates
    (`2021-07-16`) become midnight UTC. Anything else returns None rather than guessing.

    The one parser of Close (and Dataverse) timestamps: the vectorised `extract.tables.parse_timestamps`
    falls back to it, and the spot check (`audit.spot_compare.parse_instant`) reads both sides with it.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # UTC designator; Python's parser accepts only the upper-case one
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_filter_datetime(value: datetime) -> str:
    """Format a datetime for `date_created__gte=` style filters: ISO 8601, UTC, microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def lead_window_query(field: str, start: datetime | None, end: datetime | None, sort: str = "created") -> str:
    """A legacy lead-search `query=` selecting `start <= field < end`, e.g.
    `sort:created date_created >= "2021-01-01T00:00:00" date_created < "2021-02-01T00:00:00"`.

    The lead search language has minute precision for date_updated (TAP) and accepts quoted
    date-times; we send seconds so window edges never overlap and never leave a gap.
    """
    parts = [f"sort:{sort}"]
    if start is not None:
        parts.append(f'{field} >= "{start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")}"')
    if end is not None:
        parts.append(f'{field} < "{end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")}"')
    return " ".join(parts)


# --- date windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) on a date field; None means unbounded on that side."""

    start: datetime | None
    end: datetime | None

    def params(self, field: str) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.start is not None:
            out[f"{field}__gte"] = format_filter_datetime(self.start)
        if self.end is not None:
            out[f"{field}__lt"] = format_filter_datetime(self.end)
        return out

    def __str__(self) -> str:
        s = self.start.isoformat() if self.start else "-inf"
        e = self.end.isoformat() if self.end else "+inf"
        return f"[{s}, {e})"


class WindowTooNarrow(Exception):
    """A window cannot be split further (more records than max_skip share nearly the same timestamp)."""


def split_window(
    window: Window, now: datetime, granularity: timedelta = timedelta(seconds=1)
) -> tuple[Window, Window]:
    """Split a window in two halves by time, keeping open bounds open on the outer halves.

    Open bounds are replaced by WINDOW_FLOOR / `now` only to compute the midpoint, so a record dated
    before the floor or after `now` still falls in exactly one half. The midpoint is rounded down to
    `granularity` (filters have second precision; the lead query language only minute precision for
    some fields), so the two halves meet exactly at a value the server can represent. A window that
    cannot be split at that granularity raises WindowTooNarrow.
    """
    lo = window.start or min(WINDOW_FLOOR, (window.end or now) - timedelta(days=365))
    hi = window.end or max(now, lo + timedelta(days=1))
    step = granularity.total_seconds()
    mid_ts = (lo.timestamp() + hi.timestamp()) / 2
    mid = datetime.fromtimestamp(mid_ts - (mid_ts % step), tz=UTC)
    if not (lo < mid < hi):
        raise WindowTooNarrow(str(window))
    return Window(window.start, mid), Window(mid, window.end)
