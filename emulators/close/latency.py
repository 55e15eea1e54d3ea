"""Latency model of the Close emulator (off by default; `LatencyConfig` in config.py).

On loopback the emulator answers in about a millisecond; real Close is across the Internet and does work
per page it serves. With a latency configured, every answer is held back (asyncio.sleep: the event loop
keeps serving other requests) by

* the network round trip, on every request (API calls, file redirects, and the signed storage URLs they
  lead to, which are another host across the same network);
* server time on API calls and file redirects: per request, plus per record the answer serves (the rows of
  a list page, counted by the handlers in `Ctx.served`).

Close publishes no response times (close_api.md says nothing of them), so `REALISTIC` is an assumption to
be measured against a real org (`curl -w '%{time_total}'` on `GET /lead/?_limit=200`), stated as such:
an 80 ms round trip is a client in Europe calling a service hosted in the United States (transatlantic
RTT is 70-90 ms; a client in the US sees 20-70 ms), 50 ms of server time per request and 1 ms per record
served put a page of 200 leads with their contacts and opportunities at about a third of a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import CloseEmulatorConfig, LatencyConfig

REALISTIC = LatencyConfig(round_trip_ms=80.0, per_request_ms=50.0, per_record_ms=1.0)
RECORDS_SERVED = "close_records_served"  # key in the ASGI scope's "state": records the answer serves

Sleeper = Callable[[float], Awaitable[None]]


def delay_seconds(latency: LatencyConfig, records: int, server_work: bool) -> float:
    """How long an answer is held back: the round trip, plus the server's time when it did API work."""
    ms = latency.round_trip_ms
    if server_work:
        ms += latency.per_request_ms + latency.per_record_ms * max(records, 0)
    return ms / 1000.0


def file_download_ms(latency: LatencyConfig) -> float:
    """One file body: the authenticated URL's redirect (a round trip and server time), then the signed
    storage URL (a round trip)."""
    return 1000.0 * (delay_seconds(latency, 0, True) + delay_seconds(latency, 0, False))


def is_off(latency: LatencyConfig) -> bool:
    return not (latency.round_trip_ms or latency.per_request_ms or latency.per_record_ms)


def record_served(scope: Scope, records: int) -> None:
    """Note in the request's scope how many records its answer serves (read when the answer starts)."""
    scope.setdefault("state", {})[RECORDS_SERVED] = records


def _server_work(path: str) -> bool:
    # API calls and the authenticated file URLs are Close's servers; the signed URLs are storage.
    return path.startswith(("/api/", "/go/", "/call/"))


class LatencyMiddleware:
    """Holds each answer's start back by `delay_seconds`; `config.latency` is read per request, so a
    bench can switch the model on and off on a running server. `sleep` is injectable for tests."""

    def __init__(self, app: ASGIApp, config: CloseEmulatorConfig, sleep: Sleeper = asyncio.sleep) -> None:
        self.app = app
        self.config = config
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        latency = self.config.latency
        if scope["type"] != "http" or is_off(latency):
            await self.app(scope, receive, send)
            return
        server_work = _server_work(scope["path"])

        async def delayed(message: Message) -> None:
            if message["type"] == "http.response.start":
                records = int(scope.get("state", {}).get(RECORDS_SERVED, 0))
                await self.sleep(delay_seconds(latency, records, server_work))
            await send(message)

        await self.app(scope, receive, delayed)
