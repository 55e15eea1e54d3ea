"""Service-protection limits (reference §5.1) and fault injection for the Dataverse emulator.

Limits are kept per application user over a sliding window, like the real service (per user per web
server; the emulator models one web server):

* number of requests: a request counts when it is admitted; a ``$batch`` counts as one request;
* combined execution time: each request is charged ``cost_ms_per_request + cost_ms_per_record * records``
  when it finishes, where ``records`` is the length of ``Targets`` in a bulk message, or the number of
  parts of a ``$batch`` (a bulk message inside a batch counts its Targets);
* concurrent requests: fails immediately.

A throttled request is answered 429 with ``Retry-After`` = the whole seconds until the window frees enough
room for one more request, so a client that sleeps Retry-After and retries gets through and can use the
whole budget (throttled requests are not charged). Every answer carries ``x-ms-dop-hint`` and the
``x-ms-ratelimit-burst-remaining-xrm-requests`` (requests left, an int) and
``x-ms-ratelimit-time-remaining-xrm-requests`` (ms left, formatted like ``1,199,870.00``) headers.

Faults (config.faults) are drawn from ``random.Random(seed)`` with a fixed number of draws per request,
so a sequential client sees the same faults at the same request indexes on every run. The hold rule
(``hold_request``) is not drawn: it takes the first matching request, once per configuration.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from emulators.dataverse.config import Faults, ServiceProtection
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.identity import Clock

CODE_REQUESTS = "0x80072322"
CODE_EXECUTION_TIME = "0x80072321"
CODE_CONCURRENCY = "0x80072326"


def requests_message(limits: ServiceProtection) -> str:
    return (
        f"Number of requests exceeded the limit of {limits.max_requests} over time window of "
        f"{_seconds(limits.window_seconds)} seconds."
    )


def execution_time_message(limits: ServiceProtection) -> str:
    return (
        f"Combined execution time of incoming requests exceeded limit of {limits.max_execution_ms:,} "
        f"milliseconds over time window of {_seconds(limits.window_seconds)} seconds. Decrease number of "
        "concurrent requests or reduce the duration of requests and try again later."
    )


def concurrency_message(limits: ServiceProtection) -> str:
    return f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}."


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def execution_ms(limits: ServiceProtection, records: int) -> float:
    """The execution time one request is charged (and, with the latency model on, takes: latency.py)."""
    return limits.cost_ms_per_request + limits.cost_ms_per_record * max(records, 0)


def throttle_error(code: str, message: str, retry_after: int) -> DataverseError:
    return DataverseError(429, code, message, headers={"Retry-After": str(retry_after)})


@dataclass
class _UserWindow:
    arrivals: deque[float] = field(default_factory=deque)  # admission times
    costs: deque[tuple[float, float]] = field(default_factory=deque)  # (finish time, ms)
    total_ms: float = 0.0
    inflight: int = 0


@dataclass
class UserStats:
    admitted: int = 0
    throttled_requests: int = 0
    throttled_execution_time: int = 0
    throttled_concurrency: int = 0
    charged_ms: float = 0.0
    records: int = 0


class ServiceProtectionLimiter:
    """Sliding-window accounting per application user; thread-safe (tests drive it from other threads)."""

    def __init__(self, settings: ServiceProtection, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._users: dict[str, _UserWindow] = {}
        self.stats: dict[str, UserStats] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._users.clear()
            self.stats.clear()

    def _window(self, user: str, now: float) -> _UserWindow:
        window = self._users.setdefault(user, _UserWindow())
        horizon = now - self.settings.window_seconds
        while window.arrivals and window.arrivals[0] <= horizon:
            window.arrivals.popleft()
        while window.costs and window.costs[0][0] <= horizon:
            window.total_ms -= window.costs.popleft()[1]
        if not window.costs:
            window.total_ms = 0.0  # drop float drift
        return window

    def admit(self, user: str) -> None:
        """Count the request or raise the 429 DataverseError the real service would answer."""
        limits = self.settings
        with self._lock:
            now = self.clock.now()
            window = self._window(user, now)
            stats = self.stats.setdefault(user, UserStats())
            if limits.enabled:
                if window.inflight >= limits.max_concurrent:
                    stats.throttled_concurrency += 1
                    raise throttle_error(CODE_CONCURRENCY, concurrency_message(limits), 1)
                if len(window.arrivals) >= limits.max_requests:
                    stats.throttled_requests += 1
                    wait = window.arrivals[0] + limits.window_seconds - now
                    raise throttle_error(CODE_REQUESTS, requests_message(limits), _retry_after(wait))
                if window.total_ms >= limits.max_execution_ms:
                    stats.throttled_execution_time += 1
                    raise throttle_error(
                        CODE_EXECUTION_TIME, execution_time_message(limits), self._exec_wait(window, now)
                    )
            window.arrivals.append(now)
            window.inflight += 1
            stats.admitted += 1

    def _exec_wait(self, window: _UserWindow, now: float) -> int:
        # seconds until enough charged time leaves the window to fall under the limit
        excess = window.total_ms - self.settings.max_execution_ms
        for finished, cost in window.costs:
            excess -= cost
            if excess < 0:
                return _retry_after(finished + self.settings.window_seconds - now)
        return 1

    def finish(self, user: str, records: int) -> None:
        limits = self.settings
        cost = execution_ms(limits, records)
        with self._lock:
            now = self.clock.now()
            window = self._window(user, now)
            window.inflight = max(window.inflight - 1, 0)
            window.costs.append((now, cost))
            window.total_ms += cost
            stats = self.stats.setdefault(user, UserStats())
            stats.charged_ms += cost
            stats.records += max(records, 0)

    def inflight(self, user: str) -> int:
        with self._lock:
            window = self._users.get(user)
            return window.inflight if window else 0

    def headers(self, user: str) -> dict[str, str]:
        limits = self.settings
        with self._lock:
            window = self._window(user, self.clock.now())
            requests_left = max(limits.max_requests - len(window.arrivals), 0)
            time_left = max(limits.max_execution_ms - window.total_ms, 0.0)
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(requests_left),
            "x-ms-ratelimit-time-remaining-xrm-requests": f"{time_left:,.2f}",
        }


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


@dataclass(frozen=True)
class FaultDecision:
    kind: str | None = None  # "throttle_storm" | "error_5xx" | "drop" | None
    status: int = 0  # for error_5xx
    retry_after: int = 0  # for throttle_storm
    slow: bool = False
    drop_after_work: bool = False


@dataclass
class FaultStats:
    decided: int = 0
    throttle_storm: int = 0
    error_5xx: int = 0
    drop: int = 0
    slow: int = 0
    drop_after_work: int = 0
    held: int = 0  # requests held by the hold rule (after their work, with hold_after_work)


class FaultInjector:
    """Deterministic fault decisions for each incoming Web API request."""

    _STATUSES = (503, 503, 500, 502, 504)  # 503 is what an overloaded front end answers most

    def __init__(self, faults: Faults) -> None:
        self.stats = FaultStats()
        self._lock = threading.Lock()
        self.configure(faults)

    def configure(self, faults: Faults) -> None:
        for name in (
            "error_5xx_rate",
            "drop_rate",
            "drop_after_work_rate",
            "slow_rate",
            "throttle_storm_rate",
        ):
            rate = getattr(faults, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"faults.{name} must be between 0 and 1, got {rate}")
        if faults.slow_seconds < 0:
            raise ValueError(f"faults.slow_seconds must be >= 0, got {faults.slow_seconds}")
        try:
            hold = re.compile(faults.hold_request) if faults.hold_request else None
        except re.error as exc:
            raise ValueError(f"faults.hold_request is not a regular expression: {exc}") from None
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._hold = hold

    @property
    def hold_armed(self) -> bool:
        return self._hold is not None

    def claim_hold(self, request_text: str) -> bool:
        """Whether this request is the one to hold (the first that matches; the rule is then spent)."""
        with self._lock:
            if self._hold is None or not self._hold.search(request_text):
                return False
            self._hold = None
            return True

    def count_held(self) -> None:
        with self._lock:
            self.stats.held += 1

    def decide(self) -> FaultDecision:
        with self._lock:
            f = self.faults
            # always the same number of draws per request: decisions depend only on the request index
            draws = [self._rng.random() for _ in range(5)]
            pick = self._rng.randrange(len(self._STATUSES))
            storm_wait = self._rng.randint(1, 3)
            self.stats.decided += 1
            kind: str | None = None
            if draws[0] < f.throttle_storm_rate:
                kind = "throttle_storm"
            elif draws[1] < f.error_5xx_rate:
                kind = "error_5xx"
            elif draws[2] < f.drop_rate:
                kind = "drop"
            slow = kind is None and draws[3] < f.slow_rate
            after = kind is None and draws[4] < f.drop_after_work_rate
            for flag, name in ((kind is not None, kind), (slow, "slow"), (after, "drop_after_work")):
                if flag and name:
                    setattr(self.stats, name, getattr(self.stats, name) + 1)
            return FaultDecision(kind, self._STATUSES[pick], storm_wait, slow, after)


def merge_dataclass(current: Any, changes: dict[str, Any], label: str) -> Any:
    """dataclasses.replace with a clear error for unknown or mistyped fields (admin route input)."""
    allowed = {name: type(getattr(current, name)) for name in current.__dataclass_fields__}
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {label} field(s) {unknown}; known: {sorted(allowed)}")
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        kind = allowed[name]
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{label}.{name} must be true or false, got {value!r}")
        elif kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{label}.{name} must be a number, got {value!r}")
            if kind is int and not float(value).is_integer():
                raise ValueError(f"{label}.{name} must be a whole number, got {value!r}")
            value = kind(value)
        clean[name] = value
    return replace(current, **clean)
