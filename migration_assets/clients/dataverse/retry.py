"""Pure retry arithmetic for the Dataverse client: Retry-After parsing, the 429 pause, and the
AIMD (additive-increase / multiplicative-decrease) concurrency window of one application user.

Kept free of I/O so the policy can be unit-tested without a server or a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Statuses worth retrying with backoff: the service is momentarily unable, not the request wrong
# (reference §13.3: 502/503/504; 500 is included because a transient platform fault also answers 500).
RETRYABLE_5XX = frozenset({500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header value, or None when absent/unparseable.

    Dataverse sends a number of seconds ("12", sometimes with a fraction, reference §5.1); RFC 9110 also
    allows an HTTP-date, which we accept so a proxy in front of the service cannot confuse us.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def throttle_delay(retry_after: float | None, consecutive: int, cap: float = 300.0) -> float:
    """How long one application user pauses after a 429.

    The server's Retry-After wins; without one (a proxy may strip it) fall back to 2**n seconds, the
    documented fallback of Microsoft's Polly sample (reference §5.1).
    """
    if retry_after is not None:
        return min(cap, retry_after)
    return min(cap, float(2 ** max(0, min(consecutive, 16))))


@dataclass
class AimdWindow:
    """Concurrency window of one application user.

    429 → halve the window (never below 1); each success grows it by 1/window, i.e. +1 per full window
    of successes, up to `ceiling`. This is TCP's AIMD, which converges on the rate the server tolerates
    ("let the server tell you how much it can handle", reference §5.1).
    """

    ceiling: int
    floor: int = 1
    current: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.ceiling < 1:
            raise ValueError(f"max in-flight requests must be >= 1, got {self.ceiling}")
        self.floor = max(1, min(self.floor, self.ceiling))
        if self.current <= 0:
            self.current = float(self.ceiling)

    @property
    def limit(self) -> int:
        return max(self.floor, min(self.ceiling, int(self.current)))

    def on_success(self) -> None:
        self.current = min(float(self.ceiling), self.current + 1.0 / max(1.0, self.current))

    def on_throttle(self) -> None:
        self.current = max(float(self.floor), self.current / 2.0)
