"""HTTP transport of the Dataverse client: application users (msal tokens, one httpx pool and one AIMD
concurrency window each), the retry loop (429 / 5xx / dropped connections / expired tokens) and counters.

Thread-safe: any number of worker threads may call `Transport.request` at once; each call waits for a free
slot on the least busy application user that is not paused by a `Retry-After`.

Service protection is per user (reference §5.1: each application user has its own budget; a bulk message or a
`$batch` is one request but its execution time, which grows with its records, counts in full, §4.4). A
request therefore goes to the user that has been sent the least work (records) among the least busy, not
the fewest requests: one 500-record bulk message weighs as much as hundreds of reads. A user answered 429 is
paused for its Retry-After while the others carry on; a request waits out a Retry-After only when every
user is paused (`pause_waits` counts those waits).
"""

from __future__ import annotations

import http.cookiejar
import logging
import random
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import msal

from migration_assets.clients.backoff import FULL_JITTER, backoff_delay
from migration_assets.clients.call_scope import COUNTERS, count
from migration_assets.clients.dataverse.errors import (
    DataverseApiError,
    DataverseAuthError,
    DataverseConfigError,
    DataverseUnavailableError,
)
from migration_assets.clients.dataverse.retry import (
    RETRYABLE_5XX,
    AimdWindow,
    parse_retry_after,
    throttle_delay,
)

log = logging.getLogger(__name__)

API_PATH = "/api/data/v9.2/"
ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "If-None-Match": "null",
}
# Migration headers (reference §8): skip custom plug-ins/workflows (needs prvBypassCustomBusinessLogic)
# and Power Automate flows triggered by Dataverse (needs no privilege).
BYPASS_HEADERS = {
    "MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync",
    "MSCRM.SuppressCallbackRegistrationExpanderJob": "true",
}


# A body this large is handed to httpx as a SentBody (below) rather than as bytes.
RELEASED_BODY_BYTES = 1024 * 1024


class SentBody(httpx.SyncByteStream):
    """A request body that this client empties once the request has its final answer.

    httpx keeps each response and its request in a reference cycle (the response's stream refers back to
    the response), which only Python's cyclic garbage collector frees; given as `content=bytes`, the body
    lives as long. A batch of file bodies (~100 MB) makes few objects, so a collection seldom runs: the tool
    grew by one batch's bodies per batch, to 1.8 GB on `typical`, until one did. Sent with its
    Content-Length, as bytes would be; re-sent whole by each retry."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    def release(self) -> None:
        self.body = b""


@dataclass
class AppUserCredentials:
    client_id: str
    client_secret: str = field(repr=False)  # never printed, logged or stored


@dataclass
class TransportSettings:
    environment_url: str
    tenant_id: str
    users: list[AppUserCredentials]
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = None
    max_in_flight: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 180.0
    max_retries: int = 8  # per request, for 5xx and connection errors
    max_throttle_wait: float = 1800.0  # total seconds one request may spend waiting on 429s
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    # Tests only: route both the identity provider and Dataverse through this transport (httpx.MockTransport).
    http_transport: httpx.BaseTransport | None = field(default=None, repr=False)


class CallStats:
    """Counters of one logical operation (a bulk write, a query...), shared by its worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        # Resends after an answer that leaves it open whether the work was done (dropped connection, 5xx
        # such as a gateway timeout): a later "already exists" may then be our own earlier attempt.
        self.ambiguous = 0

    def add(self, requests: int = 0, retries: int = 0, throttled: int = 0, ambiguous: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.throttled += throttled
            self.ambiguous += ambiguous


@dataclass
class UserStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    token_refreshes: int = 0
    min_window: int = 0


def _no_cookies() -> http.cookiejar.CookieJar:
    # Dropping the ARRAffinity cookie spreads requests across web servers, each with its own limits
    # (reference §5.1); a jar that accepts nothing does that without racing on clear().
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class AppUserLane:
    """One application user: its token source, connection pool, concurrency window and counters."""

    def __init__(self, creds: AppUserCredentials, settings: TransportSettings, api_root: str):
        self.client_id = creds.client_id
        self._secret = creds.client_secret
        self._settings = settings
        self._token_lock = threading.Lock()
        self._msal: msal.ConfidentialClientApplication | None = None
        # httpx deprecates verify=<path>; an SSLContext on the given CA is the supported form.
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True
        )
        self._idp_http = httpx.Client(
            verify=verify, timeout=settings.connect_timeout + 20, transport=settings.http_transport
        )
        timeout = httpx.Timeout(
            connect=settings.connect_timeout, read=settings.read_timeout, write=60.0, pool=None
        )
        self.http = httpx.Client(
            base_url=api_root,
            verify=verify,
            timeout=timeout,
            cookies=_no_cookies(),
            transport=settings.http_transport,
            limits=httpx.Limits(max_connections=settings.max_in_flight + 2, max_keepalive_connections=None),
        )
        self.window = AimdWindow(ceiling=settings.max_in_flight)
        self.in_flight = 0
        # Records (bulk Targets, `$batch` parts; 1 for any other request) of the requests this user admitted
        # or is sending: what its execution-time budget is charged for, to spread it evenly.
        self.sent_work = 0
        self.paused_until = 0.0
        self.consecutive_throttles = 0
        self.stats = UserStats(min_window=self.window.limit)

    @property
    def authority(self) -> str:
        return f"{self._settings.authority_host.rstrip('/')}/{self._settings.tenant_id}"

    def _app(self) -> msal.ConfidentialClientApplication:
        if self._msal is None:
            host = urlparse(self._settings.authority_host).hostname or ""
            try:
                self._msal = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._secret,
                    authority=self.authority,
                    http_client=self._idp_http,
                    # A non-Microsoft authority (the emulator's IdP) cannot pass instance discovery,
                    # which asks login.microsoftonline.com about the host (reference §1.3).
                    instance_discovery=host.lower() == "login.microsoftonline.com",
                )
            except (ValueError, KeyError, httpx.HTTPError) as exc:
                raise DataverseAuthError(
                    self.client_id,
                    f"Cannot reach the identity provider {self.authority} for client id {self.client_id}: "
                    f"{type(exc).__name__}: {exc}. Check DATAVERSE_TENANT_ID and the authority host.",
                ) from exc
        return self._msal

    def token(self, force_refresh: bool = False) -> str:
        scope = self._settings.environment_url.rstrip("/") + "/.default"
        with self._token_lock:
            app = self._app()
            if force_refresh:
                app.remove_tokens_for_client()
                self.stats.token_refreshes += 1
            try:
                # msal answers from its cache and refreshes near expiry; calling it per request is cheap.
                result = app.acquire_token_for_client(scopes=[scope])
            except (ValueError, httpx.HTTPError) as exc:
                raise DataverseAuthError(
                    self.client_id,
                    f"Token request for client id {self.client_id} to {self.authority} failed: "
                    f"{type(exc).__name__}: {exc}",
                ) from exc
        if "access_token" not in result:
            raise DataverseAuthError(
                self.client_id,
                f"Entra ID refused client id {self.client_id} (authority {self.authority}, scope {scope}): "
                f"{result.get('error', 'unknown_error')}: {result.get('error_description', '')}".rstrip(),
            )
        return str(result["access_token"])

    def close(self) -> None:
        self.http.close()
        self._idp_http.close()


class Transport:
    def __init__(self, settings: TransportSettings, seed: int | None = None):
        url = urlparse(settings.environment_url)
        if url.scheme != "https" or not url.hostname:
            raise DataverseConfigError(
                f"environment_url must be an https URL like https://org.crm.dynamics.com, "
                f"got {settings.environment_url!r}"
            )
        if not settings.users:
            raise DataverseConfigError("at least one application user (client id + secret) is required")
        if settings.max_in_flight < 1:
            raise DataverseConfigError(f"max_in_flight must be >= 1, got {settings.max_in_flight}")
        self.settings = settings
        self.api_root = settings.environment_url.rstrip("/") + API_PATH
        self.lanes = [AppUserLane(u, settings, self.api_root) for u in settings.users]
        self._cond = threading.Condition()
        self._rng = random.Random(seed)
        self.dop_hint: int | None = None
        # Waits because every user was paused by a Retry-After (none had budget), and their seconds.
        self.pause_waits = 0
        self.pause_wait_seconds = 0.0

    # -- slots ------------------------------------------------------------------------------------------
    def _acquire(self, work: int) -> AppUserLane:
        with self._cond:
            while True:
                now = time.monotonic()
                free = [ln for ln in self.lanes if ln.paused_until <= now and ln.in_flight < ln.window.limit]
                if free:
                    # The least busy user; among equally busy ones the one that has been sent the least work,
                    # so that requests sent one at a time spread over every user's budget instead of spending
                    # one user's until a 429 pauses it.
                    lane = min(free, key=lambda ln: (ln.in_flight / ln.window.limit, ln.sent_work))
                    lane.in_flight += 1
                    lane.sent_work += work
                    return lane
                wake = [ln.paused_until - now for ln in self.lanes if ln.paused_until > now]
                every_user_paused = len(wake) == len(self.lanes)
                started = time.monotonic()
                self._cond.wait(timeout=max(0.001, min(wake)) if wake else 1.0)
                if every_user_paused:
                    self.pause_waits += 1
                    self.pause_wait_seconds += time.monotonic() - started

    def _bump(self, lane: AppUserLane, counter: str) -> None:
        with self._cond:
            setattr(lane.stats, counter, getattr(lane.stats, counter) + 1)
        if counter in COUNTERS:
            count("dataverse", counter)

    def _release(self, lane: AppUserLane, ok: bool) -> None:
        with self._cond:
            lane.in_flight -= 1
            if ok:
                lane.window.on_success()
                lane.consecutive_throttles = 0
            self._cond.notify_all()

    def _throttle(self, lane: AppUserLane, retry_after: float | None, work: int) -> float:
        with self._cond:
            lane.in_flight -= 1
            lane.sent_work -= work  # a throttled request is not charged: it goes to whichever user is free
            lane.stats.throttled += 1
            count("dataverse", "throttled_429")
            now = time.monotonic()
            delay = throttle_delay(retry_after, lane.consecutive_throttles)
            if lane.paused_until <= now:
                # One congestion event per pause: the other in-flight requests of this user that come back
                # 429 in the same burst must not collapse the window to 1.
                lane.window.on_throttle()
                lane.consecutive_throttles += 1
                lane.stats.min_window = min(lane.stats.min_window, lane.window.limit)
            lane.paused_until = max(lane.paused_until, now + delay)
            self._cond.notify_all()
            return delay

    # -- the retry loop -----------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        call: CallStats | None = None,
        records: int = 1,
    ) -> httpx.Response:
        """Send one request until it gets a final answer; return it (any status but 401/429/5xx).
        `records`: the records it writes (bulk Targets, `$batch` parts), what its execution time is
        charged for."""
        if content is None or len(content) < RELEASED_BODY_BYTES:
            return self._request(method, url, json, content, headers, params, call, records)
        body = SentBody(content)
        sized = {**(headers or {}), "Content-Length": str(len(content))}
        try:
            return self._request(method, url, json, body, sized, params, call, records)
        finally:
            body.release()

    def _request(
        self,
        method: str,
        url: str,
        json: Any,
        content: bytes | SentBody | None,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
        call: CallStats | None,
        records: int,
    ) -> httpx.Response:
        call = call or CallStats()
        work = max(1, records)
        attempts = 0
        throttle_wait = 0.0
        refreshed: set[str] = set()
        last_problem = ""
        while True:
            lane = self._acquire(work)
            try:
                token = lane.token()
            except BaseException:
                self._release(lane, ok=False)
                raise
            hdrs = {**ODATA_HEADERS, "Authorization": f"Bearer {token}", **(headers or {})}
            if json is not None and "Content-Type" not in hdrs:
                hdrs["Content-Type"] = "application/json; charset=utf-8"
            call.add(requests=1)
            self._bump(lane, "requests")
            log.debug("Dataverse request %s %s", method, url)
            try:
                resp = lane.http.request(method, url, json=json, content=content, headers=hdrs, params=params)
            except httpx.TransportError as exc:
                # The request may or may not have landed; callers make writes idempotent (ids, upserts).
                self._release(lane, ok=False)
                self._bump(lane, "connection_errors")
                call.add(ambiguous=1)
                last_problem = f"{type(exc).__name__}: {exc}"
                attempts = self._backoff(attempts, lane, call, method, url, last_problem)
                continue
            if resp.status_code == 429:
                delay = self._throttle(lane, parse_retry_after(resp.headers.get("Retry-After")), work)
                call.add(retries=1, throttled=1)
                self._bump(lane, "retries")
                throttle_wait += delay
                if throttle_wait > self.settings.max_throttle_wait:
                    raise DataverseUnavailableError(
                        f"{method} {url.split('?', 1)[0]}: still throttled (429) after waiting {throttle_wait:.0f} s in total; "
                        f"last answer: {resp.text[:300]}. Add application users or lower max_in_flight."
                    )
                continue
            if resp.status_code == 401 and lane.client_id not in refreshed:
                self._release(lane, ok=False)
                refreshed.add(lane.client_id)
                lane.token(force_refresh=True)  # expired or revoked: one fresh token, then give up
                call.add(retries=1)
                self._bump(lane, "retries")
                continue
            if resp.status_code == 401:
                self._release(lane, ok=False)
                raise DataverseAuthError(
                    lane.client_id,
                    f"Dataverse refused a freshly acquired token of client id {lane.client_id} (401): "
                    f"{resp.text[:300]} {resp.headers.get('WWW-Authenticate', '')}. Is an application "
                    f"user for this app registration created in the environment?",
                )
            if resp.status_code in RETRYABLE_5XX:
                self._release(lane, ok=False)
                self._bump(lane, "server_errors")
                call.add(ambiguous=1)
                last_problem = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if attempts >= self.settings.max_retries:
                    raise _api_error(resp, method, url)
                attempts = self._backoff(attempts, lane, call, method, url, last_problem)
                continue
            self._release(lane, ok=True)
            if self.dop_hint is None and resp.headers.get("x-ms-dop-hint", "").isdigit():
                self.dop_hint = int(resp.headers["x-ms-dop-hint"])
            return resp

    def _backoff(
        self, attempts: int, lane: AppUserLane, call: CallStats, method: str, url: str, problem: str
    ) -> int:
        if attempts >= self.settings.max_retries:
            raise DataverseUnavailableError(
                f"{method} {url.split('?', 1)[0]}: gave up after {attempts + 1} attempts; last problem: {problem}"
            )
        call.add(retries=1)
        self._bump(lane, "retries")
        delay = backoff_delay(
            attempts,
            base=self.settings.backoff_base,
            cap=self.settings.backoff_cap,
            fixed_share=FULL_JITTER,
            rng=self._rng,
        )
        log.warning("Dataverse %s %s: %s; retrying in %.2f s", method, url.split("?", 1)[0], problem, delay)
        time.sleep(delay)
        return attempts + 1

    def stats(self) -> dict[str, dict[str, int]]:
        with self._cond:
            return {
                ln.client_id: {**ln.stats.__dict__, "window": ln.window.limit, "in_flight": ln.in_flight}
                for ln in self.lanes
            }

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()


def _api_error(resp: httpx.Response, method: str, url: str) -> DataverseApiError:
    code, message = error_of(resp)
    return DataverseApiError(resp.status_code, code, message, method, url)


def error_of(resp: httpx.Response) -> tuple[str, str]:
    """(code, message) of a Dataverse error body; the raw text when the body is not the standard shape."""
    try:
        err = resp.json().get("error") or {}
        return str(err.get("code", "")), str(err.get("message", ""))
    except (ValueError, AttributeError):
        return "", resp.text[:2000] or resp.reason_phrase
