"""Per endpoint-group rate limits, per API key and per org (org = 3x key), fixed windows (close_api.md §3).

Every API response carries `RateLimit: limit=L, remaining=R, reset=S` for the bucket closest to exhaustion
(integers, so the official client's regex `limit=(\\d+), remaining=(\\d+), reset=(\\d+)` matches). A 429
carries `Retry-After`, `RateLimit-Limit/-Remaining/-Reset` and a body with `rate_reset` both top-level and
under `error` (§3.3), since clients read either.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import Response

from .config import RateLimitConfig
from .jsonutil import dumps

_ID_SEGMENT = re.compile(r"^[a-z]+_[0-9A-Za-z]{20,}$|^[0-9]+$")  # Close ids: 22 or 43 random chars


def endpoint_group(method: str, path: str) -> str:
    """`GET /lead/{id}/` for `GET lead/lead_abc...`: ids are normalised so one group covers every object."""
    segments = [("{id}" if _ID_SEGMENT.match(s) else s) for s in path.strip("/").split("/") if s]
    return f"{method} /{'/'.join(segments)}/"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    limit_type: str  # "key" or "org"
    group: str

    @property
    def reset_header(self) -> int:
        return max(1, math.ceil(self.reset_seconds))

    def header_value(self) -> str:
        return f"limit={self.limit}, remaining={self.remaining}, reset={self.reset_header}"


class RateLimiter:
    def __init__(self, cfg: RateLimitConfig, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.clock = clock
        self._windows: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def key_limit(self, group: str) -> int:
        rps = self.cfg.group_overrides.get(group, self.cfg.requests_per_second)
        return max(1, round(rps * self.cfg.window_seconds))

    def peek(self, api_key: str, org_id: str, group: str) -> Decision:
        """The state of the key bucket without counting a request."""
        return self._evaluate(api_key, org_id, group, count=False)

    def check(self, api_key: str, org_id: str, group: str) -> Decision:
        """Count one request against the key and org buckets of `group` (rejected requests are not counted)."""
        return self._evaluate(api_key, org_id, group, count=True)

    def _evaluate(self, api_key: str, org_id: str, group: str, count: bool) -> Decision:
        key_limit = self.key_limit(group)
        org_limit = max(1, round(key_limit * self.cfg.org_multiplier))
        now = self.clock()
        window = math.floor(now / self.cfg.window_seconds)
        reset = (window + 1) * self.cfg.window_seconds - now
        if not self.cfg.enabled:
            return Decision(True, key_limit, key_limit, reset, "key", group)
        with self._lock:
            counts = {}
            for scope, ident in (("key", api_key), ("org", org_id)):
                start, used = self._windows.get((scope, ident, group), (window, 0))
                counts[scope] = used if start == window else 0
            key_left = key_limit - counts["key"]
            org_left = org_limit - counts["org"]
            if key_left <= 0 or org_left <= 0:
                kind, limit = ("key", key_limit) if key_left <= 0 else ("org", org_limit)
                return Decision(False, limit, 0, reset, kind, group)
            if not count:
                return Decision(True, key_limit, key_left, reset, "key", group)
            self._windows[("key", api_key, group)] = (window, counts["key"] + 1)
            self._windows[("org", org_id, group)] = (window, counts["org"] + 1)
        key_left -= 1
        org_left -= 1
        if key_left / key_limit <= org_left / org_limit:
            return Decision(True, key_limit, key_left, reset, "key", group)
        return Decision(True, org_limit, org_left, reset, "org", group)


def too_many_requests(decision: Decision, retry_after: bool = True, with_body: bool = True) -> Response:
    """The 429 the API sends; `with_body=False, retry_after=False` is the ingress-level variant (§3.1)."""
    headers = {
        "RateLimit": decision.header_value(),
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(decision.reset_header),
    }
    if retry_after:
        headers["Retry-After"] = str(decision.reset_header)
    if not with_body:
        return Response(b"", status_code=429, headers=headers)
    window = 1
    details = {
        "message": "API call count exceeded for this period",
        "rate_reset": round(decision.reset_seconds, 6),
        "rate_limit": decision.limit,
        "rate_window": window,
        "rate_limit_type": decision.limit_type,
        "rate_endpoint_group": hashlib.md5(decision.group.encode()).hexdigest(),  # noqa: S324 - an id, not security
    }
    body = {"error": details, **details}
    return Response(dumps(body), status_code=429, headers=headers, media_type="application/json")
