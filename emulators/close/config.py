"""Configuration of the Close emulator: rate limits, fault injection, exports, paging limits.

Everything has a default that mirrors the real API (close_api.md §2.2, §3, §4.17, §6) so that
`CloseEmulatorConfig()` behaves like Close; tests shrink limits (e.g. `max_skip`) to hit them with tiny data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Per-resource maximum `_limit`, only where close_api.md §2.2 gives a maximum: events are "capped at and
# defaulting to 50" (documented), leads 200 (stated as the lead maximum), activities "probably exactly 100".
# The reference gives only lower bounds for every other resource (opportunities >= 250, tasks/users/custom
# fields/sequences >= 1000, contacts/statuses >= 100) and nothing at all for the rest (a public connector
# pages Smart Views with `_limit=600`), so the emulator does not invent a stricter cap there: "default" None
# accepts any page size. Tests that need the 400 set their own caps.
DEFAULT_MAX_LIMITS: dict[str, int | None] = {
    "default": None,
    "lead": 200,
    "activity": 100,
    "event": 50,
}

FAULT_KINDS = ("429", "429_ingress", "500", "502", "503", "504", "drop", "slow")


class EmulatorConfigError(ValueError):
    """Raised when a CloseEmulatorConfig holds a value the emulator cannot honour."""


@dataclass
class RateLimitConfig:
    """Fixed-window limits per endpoint group (method + normalised path), per API key and per org.

    `requests_per_second` is the per-key limit; the org limit is `org_multiplier` times it (Close: 3x).
    `group_overrides` maps an endpoint group such as "GET /lead/" or "POST /export/lead/" to its own
    per-key requests-per-second.
    """

    enabled: bool = True
    requests_per_second: float = 20.0
    org_multiplier: float = 3.0
    window_seconds: float = 1.0
    group_overrides: dict[str, float] = field(default_factory=dict)


@dataclass
class FaultConfig:
    """Seeded random faults plus deterministic hooks.

    Rates are per-request probabilities, drawn from `random.Random(seed)` in request order.
    `fail_nth` maps a 1-based ordinal of authenticated requests to a fault kind (one of FAULT_KINDS),
    e.g. {3: "503", 7: "drop"}; tests can also call `FaultInjector.inject(...)` at run time.
    """

    seed: int = 0
    rate_429: float = 0.0  # probability that a request starts a 429 storm
    storm_length: int = 3  # consecutive requests answered 429 once a storm starts
    # Share of storm 429s that come "from the ingress": no JSON body and no Retry-After (close_api.md §3.1).
    ingress_429_fraction: float = 0.5
    retry_after_seconds: int = 1
    rate_5xx: float = 0.0  # 502/503/504 chosen at random
    rate_drop: float = 0.0  # connection dropped mid-response
    rate_slow: float = 0.0
    slow_seconds: float = 2.0
    fail_nth: dict[int, str] = field(default_factory=dict)


@dataclass
class LatencyConfig:
    """How long each answer takes (emulators/close/latency.py): the network round trip, plus, on API calls,
    server time per request and per record served. All 0 (the default): answered as fast as it can."""

    round_trip_ms: float = 0.0
    per_request_ms: float = 0.0
    per_record_ms: float = 0.0


@dataclass
class CloseEmulatorConfig:
    """All knobs of the emulator.

    `clock` (seconds since the epoch, default `time.time`: the real UTC time) is the emulator's one "now":
    rate-limit windows, URL and upload expiry, export timing, and the `date_created` / `date_updated` of
    every write and event. Tests inject their own to move time without sleeping.
    """

    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    max_skip: int = 250_000
    default_limit: int = 100
    max_limits: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_MAX_LIMITS))
    # Export status advances one step per GET /export/{id}/ poll (created → started → in_progress → done)
    # unless `export_seconds_before_done` is set, in which case it is done that many seconds after creation.
    export_polls_before_done: int = 3
    export_seconds_before_done: float | None = None
    download_url_lifetime: float = 60.0  # seconds, like X-Amz-Expires=60
    extra_api_keys: tuple[str, ...] = ()  # more keys of the same org (to exercise the per-org limit)
    clock: Callable[[], float] = time.time

    def max_limit(self, resource: str) -> int | None:
        """The largest `_limit` this resource accepts (None: no cap known, any page size is accepted)."""
        return self.max_limits.get(resource, self.max_limits.get("default"))

    def validate(self) -> None:
        if self.max_skip < 0 or self.default_limit <= 0:
            raise EmulatorConfigError("max_skip must be >= 0 and default_limit > 0")
        if self.rate_limit.requests_per_second <= 0 or self.rate_limit.window_seconds <= 0:
            raise EmulatorConfigError("rate_limit.requests_per_second and window_seconds must be > 0")
        for name in ("round_trip_ms", "per_request_ms", "per_record_ms"):
            if getattr(self.latency, name) < 0:
                raise EmulatorConfigError(f"latency.{name} must be >= 0, got {getattr(self.latency, name)}")
        for n, kind in self.faults.fail_nth.items():
            if kind not in FAULT_KINDS:
                raise EmulatorConfigError(f"faults.fail_nth[{n}] = {kind!r}: expected one of {FAULT_KINDS}")
        for name in ("rate_429", "rate_5xx", "rate_drop", "rate_slow", "ingress_429_fraction"):
            value = getattr(self.faults, name)
            if not 0.0 <= value <= 1.0:
                raise EmulatorConfigError(
                    f"faults.{name} = {value}: a probability between 0 and 1 is required"
                )
