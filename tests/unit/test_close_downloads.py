"""File downloads from Close: the API key goes only to Close's own file hosts over https, and throttling
answers are waits, never a dropped file (DESIGN §7)."""

from __future__ import annotations

import base64

import httpx
import pytest

from migration_assets.clients.close.client import CloseClient
from migration_assets.clients.close.http import CloseAPIError

KEY = "api_canary_key"
BASIC = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()


def _client(handler: httpx.MockTransport, **kw: object) -> CloseClient:
    return CloseClient(KEY, "https://api.close.com/api/v1/", transport=handler, **kw)  # type: ignore[arg-type]


def test_the_key_goes_only_to_close_file_hosts_over_https() -> None:
    seen: dict[str, str | None] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        if request.url.host == "app.close.com":  # Close redirects a file to a pre-signed storage URL
            return httpx.Response(302, headers={"location": "https://files.s3.amazonaws.com/x?sig=1"})
        return httpx.Response(200, content=b"body")

    client = _client(httpx.MockTransport(handle))
    for url in (
        "https://app.close.com/go/file/a.pdf",
        "https://api.close.com/call/acti_1/recording/",
        "https://evilclose.com/go/file/a.pdf",
        "https://app.close.com.attacker.net/go/file/a.pdf",
    ):
        assert b"".join(client.download(url)) == b"body"
    assert seen["https://app.close.com/go/file/a.pdf"] == BASIC
    assert seen["https://api.close.com/call/acti_1/recording/"] == BASIC
    assert seen["https://files.s3.amazonaws.com/x?sig=1"] is None
    assert seen["https://evilclose.com/go/file/a.pdf"] is None
    assert seen["https://app.close.com.attacker.net/go/file/a.pdf"] is None


def test_a_close_file_url_over_plain_http_is_refused_without_sending_the_key() -> None:
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"body")

    client = _client(httpx.MockTransport(handle))
    with pytest.raises(CloseAPIError, match="refusing to send the Close API key over plain http"):
        b"".join(client.download("http://app.close.com/go/file/a.pdf"))
    assert requests == []


def test_an_allow_listed_file_host_gets_the_key() -> None:
    auth: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        auth.append(request.headers.get("authorization"))
        return httpx.Response(200, content=b"body")

    client = _client(httpx.MockTransport(handle), file_hosts=["files.example-close-eu.com"])
    b"".join(client.download("https://files.example-close-eu.com/go/file/a.pdf"))
    b"".join(client.download("https://app.close.com/go/file/a.pdf"))  # not in this org's list any more
    assert auth == [BASIC, None]


def test_a_download_waits_through_more_throttling_answers_than_attempts() -> None:
    answers = iter([429] * 10 + [200])
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        status = next(answers)
        if status == 429:
            return httpx.Response(429, headers={"retry-after": "0"})
        return httpx.Response(200, content=b"recording")

    client = _client(httpx.MockTransport(handle), max_attempts=6)
    assert b"".join(client.download("https://api.close.com/call/acti_1/recording/")) == b"recording"
    assert calls == 11
    assert client.http.stats.rate_limited == 10
