"""Fault injection: 429 storms (with and without body/Retry-After), 5xx, dropped connections, slow responses.

Random faults come from `random.Random(seed)` in request order; deterministic hooks are `fail_nth`
(config) and `FaultInjector.inject()` (at run time, optionally only for paths containing a string).
File bodies come from signed storage URLs (S3 behind Close's file URLs): there only injected rules that name
a part of the path fire, and only the faults storage has (STORAGE_FAULT_KINDS: S3's 500 InternalError and
503 SlowDown, a connection dropped mid-body); Close's 429 and its rate-limit headers belong to the
authenticated file URL in front of it.
A dropped connection sends the status line, headers and part of the body, then raises `DroppedConnection`:
uvicorn then closes the socket (the client sees an incomplete body), and in-process transports
(httpx.ASGITransport, Starlette's TestClient) re-raise it — it is an `httpx.RemoteProtocolError`, i.e. the
same `httpx.TransportError` a client gets from a real dropped connection.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .config import FAULT_KINDS, EmulatorConfigError, FaultConfig

# What a signed storage download can fail with (S3 answers 500 InternalError / 503 SlowDown, never 429).
STORAGE_FAULT_KINDS = ("500", "503", "drop")


class DroppedConnection(httpx.RemoteProtocolError):
    """The emulator aborted the response on purpose (fault injection)."""

    def __init__(self) -> None:
        super().__init__("Close emulator: connection dropped mid-response (fault injection)")


@dataclass
class _Rule:
    kind: str
    remaining: int
    path_contains: str | None


class FaultInjector:
    def __init__(self, cfg: FaultConfig) -> None:
        self.cfg = cfg
        self._rng = random.Random(cfg.seed)
        self._count = 0
        self._storm_left = 0
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        # (ordinal, path, kind) of every fault fired: for tests and logs.
        self.fired: list[tuple[int, str, str]] = []

    def inject(self, kind: str, times: int = 1, path_contains: str | None = None) -> None:
        """Make the next `times` requests (whose path contains `path_contains`, if given) fail with `kind`."""
        if kind not in FAULT_KINDS:
            raise EmulatorConfigError(f"unknown fault kind {kind!r}: expected one of {FAULT_KINDS}")
        with self._lock:
            self._rules.append(_Rule(kind, times, path_contains))

    def next_storage_fault(self, path: str) -> str | None:
        """The injected fault of a signed storage download, if a rule with a matching `path_contains` and a
        storage kind is pending (random faults and path-less rules model Close's API, not its storage)."""
        with self._lock:
            for rule in self._rules:
                applies = rule.path_contains is not None and rule.path_contains in path
                if rule.remaining > 0 and applies and rule.kind in STORAGE_FAULT_KINDS:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    self.fired.append((self._count, path, rule.kind))
                    return rule.kind
        return None

    def next_fault(self, path: str) -> str | None:
        with self._lock:
            self._count += 1
            kind = self._decide(path)
            if kind is not None:
                self.fired.append((self._count, path, kind))
            return kind

    def _decide(self, path: str) -> str | None:
        cfg = self.cfg
        if self._count in cfg.fail_nth:
            return cfg.fail_nth[self._count]
        for rule in self._rules:
            if rule.remaining > 0 and (rule.path_contains is None or rule.path_contains in path):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return rule.kind
        if self._storm_left > 0:
            self._storm_left -= 1
            return self._storm_kind()
        draw = self._rng.random()
        if draw < cfg.rate_429:
            self._storm_left = max(0, cfg.storm_length - 1)
            return self._storm_kind()
        draw -= cfg.rate_429
        if draw < cfg.rate_5xx:
            return self._rng.choice(("502", "503", "504"))
        draw -= cfg.rate_5xx
        if draw < cfg.rate_drop:
            return "drop"
        draw -= cfg.rate_drop
        if draw < cfg.rate_slow:
            return "slow"
        return None

    def _storm_kind(self) -> str:
        return "429_ingress" if self._rng.random() < self.cfg.ingress_429_fraction else "429"


_5XX_BODIES = {
    "500": (b'{"error": "Internal Server Error"}', "application/json"),
    "502": (
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
        "text/html",
    ),
    "503": (
        b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
        "text/plain",
    ),
    "504": (
        b"<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>",
        "text/html",
    ),
}


def server_error(kind: str) -> Response:
    body, media = _5XX_BODIES[kind]
    return Response(body, status_code=int(kind), media_type=media, headers={"X-Emulator-Fault": kind})


class DropResponse(Response):
    """Starts a 200 response, sends a fragment of the body, then aborts."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"data": [{"id": ', "more_body": True})
        raise DroppedConnection()
