"""The one Close API client of the project: paging, date windows, events, exports, file downloads.

`CloseClient` holds the logic and needs no Dagster (CLI, benchmark, tests); `resources/close.py` is the
Dagster face that configures one. Retries, rate limits and the API key live in `http.CloseHttp`; pure
helpers (header parsing, windows) in `paging`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from migration_assets.clients.call_scope import submit
from migration_assets.clients.close.export_file import CloseExportError
from migration_assets.clients.close.exports import CloseExportsMixin
from migration_assets.clients.close.http import (
    CLOSE_FILE_HOSTS,
    CloseAPIError,
    CloseAuthError,
    CloseError,
    CloseHttp,
    CloseLimitError,
    CloseSkipCapError,
)
from migration_assets.clients.close.paging import (
    Window,
    WindowTooNarrow,
    format_filter_datetime,
    lead_window_query,
    split_window,
)

__all__ = [
    "CloseAPIError",
    "CloseAuthError",
    "CloseClient",
    "CloseError",
    "CloseExportError",
    "CloseSkipCapError",
    "Window",
]

Page = list[dict[str, Any]]

# Largest page each endpoint family accepts (reference §2.2); unknown endpoints use 100. A server that
# answers "max_limit = N" teaches the client a smaller value at run time.
PAGE_LIMITS = {"lead": 200, "opportunity": 250, "task": 1000, "user": 1000, "custom_field": 1000, "event": 50}
DEFAULT_MAX_SKIP = 250_000
DEFAULT_BASE_URL = "https://api.close.com/api/v1/"


def _family(path: str) -> str:
    return path.strip("/").split("/", 1)[0]


class CloseClient(CloseExportsMixin):
    """Extraction-oriented access to one Close org (thread-safe)."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.close.com/api/v1/",
        *,
        concurrency: int = 4,
        page_size: int | None = None,
        max_skip: int = DEFAULT_MAX_SKIP,
        timeout_seconds: float = 60.0,
        max_attempts: int = 6,
        max_rate_limit_retries: int = 60,
        requests_per_second: float | None = None,
        backoff_base: float = 0.5,
        default_rate_limit_delay: float = 2.0,
        export_poll_seconds: float = 0.1,
        export_timeout_seconds: float = 3600.0,
        transport: httpx.BaseTransport | None = None,
        file_hosts: Sequence[str] = CLOSE_FILE_HOSTS,
    ):
        self.concurrency = max(1, concurrency)
        self.http = CloseHttp(
            api_key,
            base_url,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            max_rate_limit_retries=max_rate_limit_retries,
            requests_per_second=requests_per_second,
            max_connections=self.concurrency + 2,
            backoff_base=backoff_base,
            default_rate_limit_delay=default_rate_limit_delay,
            transport=transport,
            file_hosts=file_hosts,
        )
        self.page_size = page_size
        self.max_skip = max_skip
        self.export_poll_seconds = export_poll_seconds
        self.export_timeout_seconds = export_timeout_seconds
        self.windows_split = 0
        # Learned per endpoint family ("max_skip varies per resource"): the server's cap, and the
        # highest `_skip` it has accepted.
        self._max_skip: dict[str, int] = {}
        self._skip_ok: dict[str, int] = {}
        self._limits: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="close-page")
        self._lock = threading.Lock()

    # --- lifecycle / stats ----------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def __enter__(self) -> CloseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, float]:
        """Request count, retries, 429s, connection/server errors, rate-limit wait, windows split."""
        return {**self.http.stats.as_dict(), "windows_split": self.windows_split}

    # --- single requests ------------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.http.request_json("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.http.request_json("POST", path, json=body)

    def check_connection(self) -> dict[str, Any]:
        """GET /me/ — raises CloseAuthError with an actionable message when the key is wrong."""
        return self.get("me/")

    def server_now(self) -> datetime:
        """Close's current time (the `Date` header of a `GET /me/`); this machine's when Close sends none."""
        self.check_connection()
        return self.http.server_time or datetime.now(UTC)

    # --- offset paging --------------------------------------------------------------------------------

    def _limit_for(self, path: str, limit: int | None) -> int:
        family = _family(path)
        if family in self._limits:
            return min(limit or self._limits[family], self._limits[family])
        default = PAGE_LIMITS.get(family, 100)
        if self.page_size:
            default = min(default, self.page_size)
        return limit or default

    def _page(self, path: str, params: dict[str, Any], skip: int, limit: int) -> dict[str, Any]:
        body = self.get(path, {**params, "_skip": skip, "_limit": limit})
        if isinstance(body, list):  # tolerate bare-list endpoints
            return {"data": body, "has_more": False}
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise CloseAPIError(
                f"GET /{path}: expected a list envelope {{'data': [...]}}, got {str(body)[:200]}"
            )
        return body

    def first_page(self, path: str, params: dict[str, Any], limit: int | None = None) -> tuple[dict, int]:
        """Page at `_skip=0`, learning the endpoint's max_limit if the server refuses our page size."""
        limit = self._limit_for(path, limit)
        try:
            return self._page(path, params, 0, limit), limit
        except CloseLimitError as exc:
            with self._lock:
                self._limits[_family(path)] = exc.max_limit
            return self._page(path, params, 0, exc.max_limit), exc.max_limit

    def iter_pages(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        limit: int | None = None,
        first: tuple[dict, int] | None = None,
    ) -> Iterator[Page]:
        """Yield the `data` lists of an offset-paginated list, in order, as pages arrive.

        The first page is fetched alone (most lists fit in one page); after that up to `concurrency`
        pages are requested at once (bounded by `total_results` when the endpoint reports it) and
        yielded in `_skip` order. Stops at `has_more: false`. Raises CloseSkipCapError instead of
        requesting a `_skip` beyond max_skip — use `iter_window_pages` for lists that can be that long.
        """
        params = dict(params or {})
        body, limit = first or self.first_page(path, params, limit)
        data = body["data"]
        if data:
            yield data
        if not body.get("has_more") or not data:
            return
        total = body.get("total_results")
        next_skip = limit
        pending: deque[Future[dict[str, Any]]] = deque()
        try:
            while True:
                cap = self.max_skip_for(path)
                while len(pending) < self.concurrency and (total is None or next_skip < total):
                    if next_skip > cap:
                        break
                    pending.append(submit(self._pool, self._page, path, params, next_skip, limit))
                    next_skip += limit
                if not pending:
                    if total is not None and next_skip >= total:
                        return
                    raise CloseSkipCapError(
                        f"GET /{path}: more records than max_skip={cap} allows to page "
                        f"(params={params}); the query must be split into date windows",
                        max_skip=cap,
                        endpoint=path,
                    )
                body = pending.popleft().result()
                data = body["data"]
                if data:
                    yield data
                if not body.get("has_more") or not data:
                    return
        finally:
            for fut in pending:
                fut.cancel()

    def max_skip_for(self, path: str) -> int:
        """The `_skip` cap in force for an endpoint: configured, or lower if the server said so."""
        return self._max_skip.get(_family(path), self.max_skip)

    def list_all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every object of a short list (config objects: statuses, pipelines, custom fields...)."""
        return [obj for page in self.iter_pages(path, params) for obj in page]

    # --- date windows ---------------------------------------------------------------------------------

    def _probe(self, path: str, params: dict[str, Any], skip: int) -> list[dict[str, Any]] | None:
        """The (at most one) record at `skip`, or None when the server refuses that skip.

        A refusal teaches the client the server's real max_skip (it may be lower than configured).
        """
        try:
            body = self._page(path, params, skip, 1)
        except CloseSkipCapError as exc:
            if exc.max_skip >= skip:
                raise CloseAPIError(
                    f"GET /{path}: server refused _skip={skip} but reports max_skip={exc.max_skip}"
                ) from exc
            with self._lock:
                self._max_skip[_family(path)] = min(self.max_skip_for(path), exc.max_skip)
            return None
        with self._lock:
            family = _family(path)
            self._skip_ok[family] = max(self._skip_ok.get(family, 0), skip)
        return body["data"]

    def _fits(self, path: str, params: dict[str, Any], body: dict[str, Any], limit: int) -> bool:
        """Can this query be paged completely without a `_skip` the server refuses?

        With `total_results` (leads, opportunities) the last page's offset is known: it must be within
        max_skip and accepted by the server (probed once, since the configured max_skip may be higher
        than the server's). Without a count, probe one record at `_skip=max_skip`: none means the list
        ends before the cap.
        """
        total = body.get("total_results")
        if isinstance(total, int):
            last_skip = ((total - 1) // limit) * limit
            if last_skip > self.max_skip_for(path):
                return False
            if last_skip <= self._skip_ok.get(_family(path), 0):
                return True
            return self._probe(path, params, last_skip) is not None
        while True:
            data = self._probe(path, params, self.max_skip_for(path))
            if data is not None:
                return not data

    def iter_window_pages(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        field: str = "date_created",
        window: Window | None = None,
        granularity: timedelta = timedelta(seconds=1),
        window_params: Callable[[Window], dict[str, Any]] | None = None,
    ) -> Iterator[Page]:
        """Yield every page of a list sliced into [start, end) windows on `field`, splitting adaptively.

        Starts with one window (open-ended unless `window` is given). A window whose records could
        exceed max_skip (per `total_results`, a probe at `_skip=max_skip`, or the server's own 400) is
        bisected by time before any of its records is yielded, so each record is read exactly once.
        """
        base = dict(params or {})
        build = window_params or (lambda w: w.params(field))
        stack = [window or Window(None, None)]
        now = datetime.now(UTC)
        while stack:
            w = stack.pop()
            query = {**base, **build(w)}
            try:
                first = self.first_page(path, query)
                fits = not first[0].get("has_more") or self._fits(path, query, first[0], first[1])
            except CloseSkipCapError:
                fits, first = False, None
            if not fits:
                try:
                    older, newer = split_window(w, now, granularity)
                except WindowTooNarrow as exc:
                    raise CloseAPIError(
                        f"GET /{path}: more than max_skip={self.max_skip_for(path)} records in window {exc} on "
                        f"{field}; they cannot be separated by date. Use the JSON export source instead."
                    ) from exc
                with self._lock:
                    self.windows_split += 1
                stack.extend([newer, older])  # older first: chronological output
                continue
            yield from self.iter_pages(path, query, first=first)

    def iter_leads(
        self, *, updated_since: datetime | None = None, fields: str | None = None
    ) -> Iterator[Page]:
        """Lead pages (with embedded contacts/opportunities/tasks), windowed by the lead query language.

        Full scan: `sort:created date_created >= .. date_created < ..`; incremental: the same on
        date_updated from `updated_since`. `fields` maps to `_fields` (e.g. "id,contacts").
        """
        field, sort = ("date_updated", "updated") if updated_since else ("date_created", "created")
        params = {"_fields": fields} if fields else {}
        return self.iter_window_pages(
            "lead/",
            params,
            field=field,
            window=Window(updated_since, None),
            granularity=timedelta(minutes=1),  # the lead search language has minute precision
            window_params=lambda w: {"query": lead_window_query(field, w.start, w.end, sort)},
        )

    def iter_updated(
        self, path: str, params: dict[str, Any] | None = None, *, updated_since: datetime | None = None
    ) -> Iterator[Page]:
        """Opportunities / tasks: full scan windowed on date_created, or incremental on date_updated."""
        if updated_since is None:
            return self.iter_window_pages(path, params, field="date_created")
        return self.iter_window_pages(path, params, field="date_updated", window=Window(updated_since, None))

    def iter_activities(
        self, path: str, *, created_since: datetime | None = None, lookback: timedelta = timedelta(hours=24)
    ) -> Iterator[Page]:
        """Activities can only be filtered by date_created: incremental reads re-scan a look-back."""
        start = created_since - lookback if created_since else None
        return self.iter_window_pages(path, {}, field="date_created", window=Window(start, None))

    # --- event log ------------------------------------------------------------------------------------

    def iter_events(
        self,
        *,
        object_type: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> Iterator[Page]:
        """Event-log pages, newest first, following `cursor_next` (e.g. deletions since a watermark)."""
        params: dict[str, Any] = {"_limit": min(limit, self._limit_for("event/", None))}
        if object_type:
            params["object_type"] = object_type
        if action:
            params["action"] = action
        if since:
            params["date_updated__gte"] = format_filter_datetime(since)
        cursor: str | None = None
        while True:
            body = self.get("event/", {**params, **({"_cursor": cursor} if cursor else {})})
            data = body.get("data") or []
            if data:
                yield data
            cursor = body.get("cursor_next")
            if not cursor or not data:
                return

    def deleted_ids(self, object_type: str, since: datetime | None = None) -> Iterator[str]:
        """Ids of objects of `object_type` deleted since `since` (event log retention: 30 days)."""
        for page in self.iter_events(object_type=object_type, action="deleted", since=since):
            for event in page:
                if event.get("object_id"):
                    yield event["object_id"]

    # --- files ----------------------------------------------------------------------------------------

    def download(self, url: str) -> Iterator[bytes]:
        """Bytes of an attachment / call recording URL (authenticated, 302 followed, resumable)."""
        return self.http.stream_download(url)
