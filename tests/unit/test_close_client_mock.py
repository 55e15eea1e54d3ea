"""CloseClient against an in-memory fake (httpx.MockTransport): paging, windows, retries, auth."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from migration_assets.clients.close.client import CloseAPIError, CloseAuthError, CloseClient
from migration_assets.clients.close.export_file import CloseExportError

KEY = "api_testkey"
START = datetime(2022, 1, 1, tzinfo=UTC)


def _records(n: int) -> list[dict[str, Any]]:
    # Several records share a timestamp so window edges are exercised on ties.
    return [
        {"id": f"acti_{i:05d}", "date_created": (START + timedelta(minutes=7 * (i // 3))).isoformat()}
        for i in range(n)
    ]


class FakeClose:
    """Just enough of the Close list API: envelopes, _skip/_limit caps, date filters, faults."""

    def __init__(self, records: list[dict[str, Any]], *, max_skip: int = 250_000, max_limit: int = 100):
        self.records = records
        self.max_skip = max_skip
        self.max_limit = max_limit
        self.faults: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.calls: list[httpx.Request] = []
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls.append(request)
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            resp = fault(request)
            if resp is not None:
                return resp
        auth = request.headers.get("authorization", "")
        if auth != "Basic " + base64.b64encode(f"{KEY}:".encode()).decode():
            return httpx.Response(401, json={"error": "Unauthorized"})
        q = dict(request.url.params)
        skip, limit = int(q.get("_skip", 0)), int(q.get("_limit", 100))
        if limit > self.max_limit:
            return httpx.Response(
                400,
                json={
                    "error": f"The limit you set is larger than the maximum limit for this resource (max_limit = {self.max_limit})."
                },
            )
        if skip > self.max_skip:
            return httpx.Response(
                400,
                json={
                    "error": f"The skip you set is larger than the maximum skip for this resource (max_skip = {self.max_skip}). Please refine your search query."
                },
            )
        rows = self.records
        if "date_created__gte" in q:
            rows = [
                r
                for r in rows
                if r["date_created"] >= datetime.fromisoformat(q["date_created__gte"]).isoformat()
            ]
        if "date_created__lt" in q:
            rows = [
                r
                for r in rows
                if r["date_created"] < datetime.fromisoformat(q["date_created__lt"]).isoformat()
            ]
        page = rows[skip : skip + limit + 1]
        body = {"data": page[:limit], "has_more": len(page) > limit}
        return httpx.Response(200, json=body, headers={"RateLimit": "limit=1000, remaining=999, reset=1"})


def _client(fake: FakeClose, key: str = KEY, **kw: Any) -> CloseClient:
    kw.setdefault("concurrency", 3)
    return CloseClient(
        key,
        "https://api.close.test/api/v1/",
        transport=httpx.MockTransport(fake.handler),
        backoff_base=0.001,
        default_rate_limit_delay=0.01,
        **kw,
    )


def _ids(pages: Any) -> list[str]:
    return [r["id"] for page in pages for r in page]


def test_pages_in_order_without_loss_or_duplicates() -> None:
    fake = FakeClose(_records(1234))
    with _client(fake) as client:
        ids = _ids(client.iter_pages("activity/call/"))
    assert ids == [r["id"] for r in fake.records]
    skips = sorted(int(c.url.params["_skip"]) for c in fake.calls)
    assert len(skips) == len(set(skips))  # never the same page twice when nothing failed


def test_learns_max_limit_from_400() -> None:
    fake = FakeClose(_records(250), max_limit=50)
    with _client(fake) as client:
        ids = _ids(client.iter_pages("activity/call/", limit=100))
    assert ids == [r["id"] for r in fake.records]


def test_skip_cap_splits_windows_exactly() -> None:
    fake = FakeClose(_records(700), max_skip=100)
    with _client(fake, max_skip=100) as client:
        ids = _ids(client.iter_window_pages("activity/call/", {}, field="date_created"))
        assert client.windows_split > 0
    assert sorted(ids) == sorted(r["id"] for r in fake.records)
    assert len(ids) == len(set(ids))
    assert all(int(c.url.params.get("_skip", 0)) <= 100 for c in fake.calls)


def test_server_max_skip_lower_than_configured_is_learned() -> None:
    fake = FakeClose(_records(500), max_skip=100)
    with _client(fake) as client:  # configured 250,000; the server says 100
        ids = _ids(client.iter_window_pages("activity/call/", {}))
        assert client.max_skip_for("activity/call/") == 100
    assert sorted(ids) == sorted(r["id"] for r in fake.records)


def _status(
    code: int, body: Any = None, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def fault(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(code, headers=headers or {})
        return httpx.Response(code, content=json.dumps(body).encode(), headers=headers or {})

    return fault


def _drop(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset by peer", request=request)


def test_retries_429_5xx_and_dropped_connections() -> None:
    fake = FakeClose(_records(450))
    fake.faults = [
        _status(429, headers={"Retry-After": "0"}),
        _status(429, {"error": {"rate_reset": 0.01}}),
        _status(429),  # ingress 429: no body, no header → default delay
        _status(503, {"error": "Service Unavailable"}),
        _drop,
        _status(502),
    ]
    with _client(fake, concurrency=1) as client:
        ids = _ids(client.iter_pages("activity/call/"))
        stats = client.stats
    assert ids == [r["id"] for r in fake.records]
    assert stats["rate_limited_429"] == 3
    assert stats["server_errors"] == 2 and stats["connection_errors"] == 1
    assert stats["requests"] == 5 + 6


def test_retried_page_uses_same_params() -> None:
    fake = FakeClose(_records(150))
    fake.faults = [lambda r: None, _status(500)]  # first page fine, second page fails once
    with _client(fake, concurrency=1) as client:
        list(client.iter_pages("activity/call/"))
    second, retry = fake.calls[1], fake.calls[2]
    assert dict(second.url.params) == dict(retry.url.params)


def test_gives_up_after_bounded_attempts_naming_endpoint() -> None:
    fake = FakeClose(_records(10))
    fake.faults = [_status(503)] * 10
    with _client(fake, max_attempts=3) as client, pytest.raises(CloseAPIError) as info:
        list(client.iter_pages("activity/call/"))
    assert "GET /activity/call/" in str(info.value) and "3 attempts" in str(info.value)
    assert len(fake.calls) == 3


def test_wrong_key_gives_clear_auth_error() -> None:
    fake = FakeClose(_records(10))
    with _client(fake, key="api_wrong") as client, pytest.raises(CloseAuthError) as info:
        client.check_connection()
    assert "Close rejected the API key (401)" in str(info.value) and "CLOSE_API_KEY" in str(info.value)
    assert "api_wrong" not in str(info.value)


def test_non_retryable_400_is_reported() -> None:
    fake = FakeClose(_records(10))
    fake.faults = [_status(400, {"errors": [], "field-errors": {"lead": "Object does not exist."}})]
    with _client(fake) as client, pytest.raises(CloseAPIError, match="HTTP 400.*Object does not exist"):
        client.get("activity/call/")
    assert len(fake.calls) == 1


def test_waiting_for_an_export_stops_when_asked() -> None:
    """A run that ends (resources torn down) must not keep polling an export that is not ready."""

    def export(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "expo_1", "status": "in_progress", "download_url": None})

    client = CloseClient(
        KEY, "https://api.close.test/api/v1/", transport=httpx.MockTransport(export), backoff_base=0.001
    )
    client.export_poll_seconds = 60.0  # without `stop` the first wait alone would take a minute
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(CloseExportError, match="Stopped waiting for Close export expo_1"):
        client.wait_export("expo_1", stop)
