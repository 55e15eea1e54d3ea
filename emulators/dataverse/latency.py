"""Latency model of the Dataverse emulator (off by default; `Latency` in config.py).

On loopback the emulator answers in about a millisecond; real Dataverse is a network round trip away and
spends execution time on each request, which service protection charges against its combined
execution-time limit (reference §5.1: 1,200,000 ms per 300 s per user; a bulk message or a `$batch` is one
request "but its execution time counts in full", §4.4). With the model on, a Web API request takes

    round trip + execution time,  execution time = protection.execution_ms(records)
                                                 = cost_ms_per_request + cost_ms_per_record x records

where `records` is what service protection counts (the Targets of a bulk message, the parts of a `$batch`).
Wall time and the execution-time budget therefore agree: a load that keeps N requests in flight spends
N seconds of budget per second. The round trip is slept before the request reaches the edge (every answer
pays it, a 429 or a 401 too); the execution time inside the edge, after the work, so the request holds its
concurrency slot while it "runs" and the limiter charges it when it finishes, as the service does.

`REALISTIC_COSTS` are the per-request and per-record charges the `--realistic` bench uses, stated as
inferences from the reference, which has no measured figures: a single create takes 50-300 ms (§4.4) and
bulk messages are quoted at up to 5x the throughput of ExecuteMultiple (§4.4, second-hand), so 10 ms per
record in a bulk message or `$batch` and 30 ms per request (authentication, routing, a small query) sit at
the fast end of what an unloaded environment with no plug-ins does; a 50 ms round trip is a client in the
same geography as the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulators.dataverse.batch import INNER_SCOPE_KEY
from emulators.dataverse.config import DataverseEmulatorConfig, Latency, ServiceProtection
from emulators.dataverse.protection import execution_ms

REALISTIC = Latency(round_trip_ms=50.0, execution_time=True)
REALISTIC_COSTS = {"cost_ms_per_request": 30.0, "cost_ms_per_record": 10.0}
API_PREFIX = "/api/data/"

Sleeper = Callable[[float], Awaitable[None]]


def with_realistic_latency(config: DataverseEmulatorConfig) -> DataverseEmulatorConfig:
    """`config` with the model on at the `REALISTIC` round trip and costs (its limits otherwise kept)."""
    return dataclasses.replace(
        config, latency=REALISTIC, protection=dataclasses.replace(config.protection, **REALISTIC_COSTS)
    )


def execution_seconds(limits: ServiceProtection, latency: Latency, records: int) -> float:
    """The time an admitted request works before it answers: what protection charges, when modelled."""
    return execution_ms(limits, records) / 1000.0 if latency.execution_time else 0.0


def _web_api(scope: Scope) -> bool:
    # Inner `$batch` parts are dispatched in-process: the batch as a whole is the request that is charged.
    return scope["type"] == "http" and scope["path"].startswith(API_PREFIX) and not scope.get(INNER_SCOPE_KEY)


def _records(scope: Scope) -> int:
    meter: Any = scope.get("state", {}).get("edge_meter")  # edge.RecordMeter: what protection charges
    return int(getattr(meter, "records", 0))


class RoundTrip:
    """Outermost: every Web API request is a round trip away (slept before it reaches the edge)."""

    def __init__(self, app: ASGIApp, config: DataverseEmulatorConfig, sleep: Sleeper = asyncio.sleep) -> None:
        self.app = app
        self.config = config
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rtt = self.config.latency.round_trip_ms
        if rtt > 0 and _web_api(scope):
            await self.sleep(rtt / 1000.0)
        # `send` is passed on untouched: the edge's connection drops need the server's own.
        await self.app(scope, receive, send)


class ExecutionTime:
    """Inside the edge: the answer of an admitted request starts after its charged execution time."""

    def __init__(self, app: ASGIApp, config: DataverseEmulatorConfig, sleep: Sleeper = asyncio.sleep) -> None:
        self.app = app
        self.config = config
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.config.latency.execution_time and _web_api(scope)):
            await self.app(scope, receive, send)
            return

        async def after_work(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Settings read now: the admin route may have changed the costs since the request arrived.
                config = self.config
                await self.sleep(execution_seconds(config.protection, config.latency, _records(scope)))
            await send(message)

        await self.app(scope, receive, after_work)


def install_latency(app: Starlette, config: DataverseEmulatorConfig, sleep: Sleeper = asyncio.sleep) -> None:
    """Add both layers to `app` (after the edge is installed, before it serves): ExecutionTime inside the
    edge, RoundTrip outside it."""
    app.user_middleware.insert(0, Middleware(ExecutionTime, config=config, sleep=sleep))
    build = app.build_middleware_stack

    def build_with_round_trip() -> ASGIApp:
        return RoundTrip(build(), config, sleep)

    app.build_middleware_stack = build_with_round_trip  # type: ignore[method-assign]
