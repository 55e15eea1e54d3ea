"""Low-level HTTP transport for the Close API: auth, retries, rate-limit pacing, statistics.

`CloseHttp` is thread-safe: paging code runs several requests at once from a thread pool, and all of
them share one connection pool, one rate-limit state and one set of counters.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from migration_assets.clients.backoff import EQUAL_JITTER, backoff_delay
from migration_assets.clients.call_scope import count
from migration_assets.clients.close.paging import (
    RateLimit,
    max_limit_from_error,
    max_skip_from_error,
    parse_ratelimit,
    rate_limit_delay,
)
from migration_assets.clients.fastjson import loads

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
# Close's hosts that serve files behind the API key (close_api.md: attachment URLs "must begin
# https://app.close.com/go/file/", voicemail/recording URLs on https://api.close.com/call/...). Matched
# exactly: the key never goes to a host that merely ends in "close.com".
CLOSE_FILE_HOSTS = ("app.close.com", "api.close.com")


class CloseError(Exception):
    """Base class for every error the Close client raises on purpose."""


class CloseAuthError(CloseError):
    """Close rejected the API key (HTTP 401)."""


class CloseAPIError(CloseError):
    """A request failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = "", attempts: int = 0):
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint
        self.attempts = attempts


class CloseSkipCapError(CloseAPIError):
    """The server refused a `_skip` beyond its max_skip: the query must be narrowed (date window)."""

    def __init__(self, message: str, *, max_skip: int, endpoint: str = ""):
        super().__init__(message, status=400, endpoint=endpoint)
        self.max_skip = max_skip


class CloseLimitError(CloseAPIError):
    """The server refused the `_limit` (page size): retry with `max_limit`."""

    def __init__(self, message: str, *, max_limit: int, endpoint: str = ""):
        super().__init__(message, status=400, endpoint=endpoint)
        self.max_limit = max_limit


# ClientStats counter -> the step's counter (clients/call_scope.py).
_STEP_COUNTERS = {"requests": "requests", "retries": "retries", "rate_limited": "throttled_429"}


@dataclass
class ClientStats:
    """Counters of one client's traffic (read by asset metadata and the benchmark)."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    rate_limit_wait_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
        for name, counter in _STEP_COUNTERS.items():
            if deltas.get(name):
                count("close", counter, int(deltas[name]))

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited_429": self.rate_limited,
                "server_errors": self.server_errors,
                "connection_errors": self.connection_errors,
                "rate_limit_wait_seconds": round(self.rate_limit_wait_seconds, 3),
            }


class _RateGate:
    """Client-side pacing shared by all threads.

    Three mechanisms: an optional global token bucket (`requests_per_second`, a self-imposed cap);
    per endpoint group, pacing at `pace_factor` of the rate the server advertises in its `RateLimit`
    header (limit per reset window), so a pool of workers runs close to the limit without provoking
    429s; and a hard stop when the server says `remaining=0` (until its reset) or answers 429 (for
    Retry-After / rate_reset). Close rounds `reset` up to whole seconds, so once the group's pace is
    known, `remaining=0` only delays by one pace interval: waiting the rounded-up reset would waste
    up to a second per window, and an early request merely draws a 429 that is honoured.
    """

    def __init__(self, requests_per_second: float | None, pace_factor: float = 0.97):
        self._rps = requests_per_second if requests_per_second and requests_per_second > 0 else None
        self._pace_factor = pace_factor
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._remaining: dict[str, float] = {}
        self._reset_at: dict[str, float] = {}
        self._blocked_until: dict[str, float] = {}
        self._window: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._group_next: dict[str, float] = {}

    def _wait_for(self, group: str, now: float) -> float:
        wait = self._blocked_until.get(group, 0.0) - now
        if wait > 0:
            return wait
        interval = self._interval.get(group)
        remaining = self._remaining.get(group)
        if remaining is not None and remaining <= 0:
            reset_at = self._reset_at.get(group, 0.0)
            if interval is None and reset_at > now:
                return reset_at - now
            self._remaining.pop(group, None)  # the next response tells the new budget
        if interval is not None:
            wait = self._group_next.get(group, 0.0) - now
            if wait > 0:
                return wait
        if self._rps is not None:
            wait = self._next_slot - now
            if wait > 0:
                return wait
        return 0.0

    def acquire(self, group: str) -> float:
        """Block until a request to `group` may be sent; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                wait = self._wait_for(group, now)
                if wait <= 0:
                    if group in self._interval:
                        self._group_next[group] = (
                            max(self._group_next.get(group, 0.0), now) + self._interval[group]
                        )
                    if self._rps is not None:
                        self._next_slot = max(self._next_slot, now) + 1.0 / self._rps
                    if group in self._remaining:
                        self._remaining[group] -= 1
                    return waited
            step = min(wait, 1.0)
            time.sleep(step)
            waited += step

    def observe(self, group: str, rl: RateLimit | None) -> None:
        if rl is None:
            return
        with self._lock:
            now = time.monotonic()
            self._remaining[group] = rl.remaining
            self._reset_at[group] = now + max(rl.reset, 0.0)
            if rl.limit > 0 and rl.reset > 0:
                # The longest reset seen is the window length (the first request of a window sees it).
                window = max(self._window.get(group, 0.0), rl.reset)
                self._window[group] = window
                self._interval[group] = window / (rl.limit * self._pace_factor)

    def block(self, group: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + max(seconds, 0.0)
            self._blocked_until[group] = max(self._blocked_until.get(group, 0.0), until)


_ID_SEGMENT = re.compile(r"^[a-z]+_[0-9A-Za-z]{20,}$")  # Close ids: prefix + 22 or 43 base62 chars


def endpoint_group(method: str, path: str) -> str:
    """Rate-limit group key: method + path with object ids replaced (`GET lead/{id}/`).

    File URLs (`/go/file/...`, `/call/<id>/recording/`) share one group per top-level segment.
    """
    parts = [p for p in urlsplit(path).path.split("/") if p]
    if parts and parts[0] in ("go", "call"):
        parts = parts[:1]
    norm = ["{id}" if _ID_SEGMENT.match(p) else p for p in parts]
    return f"{method.upper()} {'/'.join(norm)}"


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, str):
            return err
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("errors") or body.get("field-errors"):
            return f"errors={body.get('errors')} field-errors={body.get('field-errors')}"
        if body.get("message"):
            return str(body["message"])
    return str(body)[:500] if body else ""


class CloseHttp:
    """Authenticated, retrying, rate-limit-aware HTTP access to one Close org."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout_seconds: float = 60.0,
        max_attempts: int = 6,
        max_rate_limit_retries: int = 60,
        requests_per_second: float | None = None,
        max_connections: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        default_rate_limit_delay: float = 2.0,
        transport: httpx.BaseTransport | None = None,
        file_hosts: Iterable[str] = CLOSE_FILE_HOSTS,
    ):
        if not api_key:
            raise CloseAuthError(
                "No Close API key configured. Set the CLOSE_API_KEY environment variable "
                "(Close → Settings → Developer → API Keys)."
            )
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.max_attempts = max(1, max_attempts)
        self.max_rate_limit_retries = max_rate_limit_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.default_rate_limit_delay = default_rate_limit_delay
        self.stats = ClientStats()
        # Close's own clock, from the `Date` header of the latest answer: "has Close been quiet for N
        # minutes" is judged on the service's time, not on this machine's (which may be skewed).
        self.server_time: datetime | None = None
        self._gate = _RateGate(requests_per_second)
        self._rng = random.Random()
        api = urlsplit(self.base_url)
        self._api_origin = (api.scheme.lower(), api.netloc.lower())
        self._file_hosts = frozenset(h.strip().lower() for h in file_hosts if h.strip())
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(api_key, ""),
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 15.0)),
            limits=limits,
            headers={
                "User-Agent": "close2d365 (+https://github.com/close2d365)",
                "Accept": "application/json",
            },
            transport=transport,
            follow_redirects=False,
        )
        # The key is kept only inside httpx's auth object; never in a repr, log line or metadata.
        self._auth = httpx.BasicAuth(api_key, "")

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"CloseHttp(base_url={self.base_url!r})"

    def _note_server_time(self, date_header: str | None) -> None:
        if date_header:
            try:
                self.server_time = parsedate_to_datetime(date_header)
            except (TypeError, ValueError):
                pass  # a malformed Date header only loses the server's clock, never the response

    # --- JSON requests ------------------------------------------------------------------------------

    def request_json(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Send one request with retries; return the decoded JSON body (None for 204).

        429 → wait as the server says (RateLimit/Retry-After/rate_reset), retried up to
        max_rate_limit_retries; 5xx, dropped connections and truncated bodies → exponential back-off
        with jitter, up to max_attempts; 401 → CloseAuthError; other 4xx → CloseAPIError (400 max_skip /
        max_limit as their own subclasses so paging code can adapt). Every retry re-sends exactly the
        same params, so a retried page is the same page.
        """
        group = endpoint_group(method, path)
        endpoint = f"{method.upper()} /{path.lstrip('/')}"
        attempts = 0
        throttled = 0
        last_problem = ""
        while True:
            waited = self._gate.acquire(group)
            if waited:
                self.stats.add(rate_limit_wait_seconds=waited)
            attempts += 1
            self.stats.add(requests=1)
            try:
                resp = self._client.request(method, path, params=params, json=json)
                status = resp.status_code
                self._gate.observe(group, parse_ratelimit(resp.headers))
                if status == 204 or (200 <= status < 300 and not resp.content):
                    return None
                body = _decode(resp)
            except (httpx.TransportError, _TruncatedBody) as exc:
                self.stats.add(connection_errors=1)
                last_problem = f"connection error: {type(exc).__name__}: {exc}"
                attempts = self._retry_or_raise(endpoint, attempts, last_problem)
                continue
            if 200 <= status < 300:
                self._note_server_time(resp.headers.get("date"))
                return body
            if status == 401:
                raise CloseAuthError(
                    "Close rejected the API key (401). Check CLOSE_API_KEY: it must be a valid key of "
                    "the Close organization to migrate (Close → Settings → Developer → API Keys); "
                    f"base URL {self.base_url}."
                )
            if status == 429:
                throttled += 1
                delay = rate_limit_delay(resp.headers, body, self.default_rate_limit_delay)
                self.stats.add(rate_limited=1, retries=1)
                self._gate.block(group, delay)
                attempts -= 1  # a throttled request is not a failed attempt
                if throttled > self.max_rate_limit_retries:
                    raise CloseAPIError(
                        f"{endpoint}: still rate limited (429) after {throttled} waits; lower "
                        "concurrency or requests_per_second, or check for other clients using this key.",
                        status=429,
                        endpoint=endpoint,
                        attempts=throttled,
                    )
                continue
            message = _error_message(body)
            if status in RETRYABLE_STATUS:
                self.stats.add(server_errors=1)
                last_problem = f"HTTP {status} {message}".strip()
                attempts = self._retry_or_raise(endpoint, attempts, last_problem)
                continue
            if status == 400 and (cap := max_skip_from_error(message)) is not None:
                raise CloseSkipCapError(f"{endpoint}: {message}", max_skip=cap, endpoint=endpoint)
            if status == 400 and (cap := max_limit_from_error(message)) is not None:
                raise CloseLimitError(f"{endpoint}: {message}", max_limit=cap, endpoint=endpoint)
            hint = {
                402: " (a limit of the Close plan was reached)",
                403: " (the API key's user lacks a permission; exports need the 'export' permission)",
                404: " (not found)",
            }.get(status, "")
            raise CloseAPIError(
                f"{endpoint} failed with HTTP {status}{hint}: {message} (params={params})",
                status=status,
                endpoint=endpoint,
                attempts=attempts,
            )

    def _retry_or_raise(self, endpoint: str, attempts: int, problem: str) -> int:
        if attempts >= self.max_attempts:
            raise CloseAPIError(
                f"{endpoint} failed after {attempts} attempts; last error: {problem}",
                endpoint=endpoint,
                attempts=attempts,
            )
        self.stats.add(retries=1)
        # `attempts` counts the failed request itself: the first retry follows attempt 1.
        retry = max(attempts - 1, 0)
        delay = backoff_delay(
            retry, base=self.backoff_base, cap=self.backoff_cap, fixed_share=EQUAL_JITTER, rng=self._rng
        )
        time.sleep(delay)
        return attempts

    # --- binary downloads ---------------------------------------------------------------------------

    def _auth_for(self, url: str) -> httpx.Auth | None:
        """The API key for Close's own file hosts only: the configured API host (with its scheme: the
        emulator is plain http on loopback) and the exact `file_hosts` over https. A pre-signed storage URL
        gets no key (S3 rejects requests carrying two auth mechanisms), and neither does any other host,
        however its name ends."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if (scheme, parts.netloc.lower()) == self._api_origin:
            return self._auth
        if host in self._file_hosts:
            if scheme != "https":
                raise CloseAPIError(
                    f"refusing to send the Close API key over plain http to {parts.netloc}: the file URL "
                    f"{url} must be https",
                    endpoint=f"GET {url}",
                )
            return self._auth
        return None

    def stream_download(
        self, url: str, chunk_size: int = 65536, max_redirects: int = 5, decode: bool = True
    ) -> Iterator[bytes]:
        """Yield the bytes behind an authenticated Close file URL, following redirects.

        decode=False yields the body exactly as sent (a gzip `Content-Encoding` is kept compressed),
        which is what export downloads want on disk.

        A connection lost mid-file is resumed by re-requesting (the signed redirect target may have
        expired) and skipping the bytes already yielded, so the caller sees each byte exactly once.
        """
        url = urljoin(self.base_url, url)
        endpoint = f"GET {url}"
        delivered = 0
        attempts = throttled = 0
        while True:
            attempts += 1
            try:
                yield_from = delivered
                for chunk in self._stream_once(url, chunk_size, max_redirects, endpoint, decode):
                    if yield_from:
                        if len(chunk) <= yield_from:
                            yield_from -= len(chunk)
                            continue
                        chunk = chunk[yield_from:]
                        yield_from = 0
                    delivered += len(chunk)
                    yield chunk
                return
            except httpx.TransportError as exc:
                self.stats.add(connection_errors=1)
                self._retry_or_raise(endpoint, attempts, f"connection error: {type(exc).__name__}: {exc}")
            except _Throttled as exc:
                # Like request_json: a 429 is a wait, not a failed attempt (DESIGN §7: a 429 never drops
                # a row); the gate already holds this endpoint group for the server's Retry-After.
                attempts -= 1
                throttled += 1
                if throttled > self.max_rate_limit_retries:
                    raise CloseAPIError(
                        f"{endpoint}: still rate limited (429) after {throttled} waits; lower concurrency "
                        "or requests_per_second, or check for other clients using this key.",
                        status=429,
                        endpoint=endpoint,
                        attempts=throttled,
                    ) from exc
                self.stats.add(retries=1)
            except _RetryableStatus as exc:
                self.stats.add(server_errors=1)
                self._retry_or_raise(endpoint, attempts, str(exc))

    def _stream_once(
        self, url: str, chunk_size: int, max_redirects: int, endpoint: str, decode: bool
    ) -> Iterator[bytes]:
        for _ in range(max_redirects + 1):
            group = endpoint_group("GET", urlsplit(url).path)
            self._gate.acquire(group)
            self.stats.add(requests=1)
            with self._client.stream("GET", url, auth=self._auth_for(url)) as resp:
                self._gate.observe(group, parse_ratelimit(resp.headers))
                if resp.status_code in (301, 302, 303, 307, 308):
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code == 401:
                    raise CloseAuthError(
                        "Close rejected the API key (401) while downloading a file. Check CLOSE_API_KEY."
                    )
                if resp.status_code == 429:
                    resp.read()
                    delay = rate_limit_delay(resp.headers, None, self.default_rate_limit_delay)
                    self.stats.add(rate_limited=1)
                    self._gate.block(group, delay)
                    raise _Throttled(f"HTTP 429 on {endpoint}")
                if resp.status_code in RETRYABLE_STATUS:
                    raise _RetryableStatus(f"HTTP {resp.status_code} on {endpoint}")
                if resp.status_code >= 400:
                    resp.read()
                    raise CloseAPIError(
                        f"{endpoint} failed with HTTP {resp.status_code}: {resp.text[:300]}",
                        status=resp.status_code,
                        endpoint=endpoint,
                    )
                yield from resp.iter_bytes(chunk_size) if decode else resp.iter_raw(chunk_size)
                return
        raise CloseAPIError(f"{endpoint}: more than {max_redirects} redirects", endpoint=endpoint)


class _TruncatedBody(Exception):
    """A 2xx response whose JSON body is cut short (connection dropped mid-body)."""


class _RetryableStatus(Exception):
    pass


class _Throttled(Exception):
    """A 429 while streaming a file: wait as told and ask again."""


def _decode(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return loads(resp.content)
    except ValueError as exc:
        if 200 <= resp.status_code < 300:
            raise _TruncatedBody(f"invalid JSON body ({len(resp.content)} bytes)") from exc
        return {"error": resp.text[:500]}
