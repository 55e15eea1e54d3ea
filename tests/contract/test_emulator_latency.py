"""Both emulators apply their latency model to real requests: each answer waits for the delay the model
computes (recorded through an injected sleeper: no clock, nothing waits), and nothing when it is off."""

from __future__ import annotations

import dataclasses

import anyio
import httpx
import pytest
from test_dataverse_emulator_support import Dv, core_config

from emulators.close import CloseEmulatorConfig, create_app
from emulators.close.config import LatencyConfig
from emulators.close.latency import LatencyMiddleware
from emulators.dataverse.config import Latency, ServiceProtection
from emulators.dataverse.latency import install_latency
from emulators.orgdata import CloseOrg, generate


class Sleeps:
    """An injectable sleeper that records each delay instead of waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny")


def close_get(org: CloseOrg, latency: LatencyConfig, path: str) -> tuple[httpx.Response, list[float]]:
    """GET `path` from the real Close app (its own latency off), behind a latency layer that records."""
    sleeps = Sleeps()
    app = LatencyMiddleware(create_app(org), CloseEmulatorConfig(latency=latency), sleep=sleeps)

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://close.test", auth=(org.api_key, "")
        ) as api:
            return await api.get(path)

    return anyio.run(scenario), sleeps.seconds


def test_close_page_waits_round_trip_plus_server_time_per_record(org: CloseOrg) -> None:
    latency = LatencyConfig(round_trip_ms=80.0, per_request_ms=50.0, per_record_ms=1.0)
    resp, sleeps = close_get(org, latency, "/api/v1/lead/?_limit=3")
    assert resp.status_code == 200 and len(resp.json()["data"]) == 3
    assert sleeps == [pytest.approx(0.08 + 0.05 + 0.003)]


def test_close_records_served_are_counted_for_activities(org: CloseOrg) -> None:
    latency = LatencyConfig(per_record_ms=1000.0)
    resp, sleeps = close_get(org, latency, "/api/v1/activity/?_limit=7")
    assert sleeps == [pytest.approx(len(resp.json()["data"]))]
    assert len(resp.json()["data"]) == 7


def test_close_latency_off_sleeps_nothing(org: CloseOrg) -> None:
    resp, sleeps = close_get(org, LatencyConfig(), "/api/v1/lead/?_limit=3")
    assert resp.status_code == 200
    assert sleeps == []


COSTS = ServiceProtection(cost_ms_per_request=30.0, cost_ms_per_record=10.0)


def dataverse_with(latency: Latency) -> tuple[Dv, Sleeps]:
    """The real Dataverse app (its own latency off) plus latency layers with `latency` that record."""
    dv = Dv(core_config(protection=dataclasses.replace(COSTS)))
    sleeps = Sleeps()
    install_latency(dv.app, dataclasses.replace(dv.config, latency=latency), sleep=sleeps)
    return dv, sleeps


def test_dataverse_bulk_message_waits_round_trip_and_charged_execution_time() -> None:
    dv, sleeps = dataverse_with(Latency(round_trip_ms=50.0, execution_time=True))
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": f"A{i}"} for i in range(3)]
    resp = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets})
    assert resp.status_code == 200, resp.text
    # round trip first, then the execution time protection charges: 30 ms + 3 x 10 ms
    assert sleeps.seconds == [pytest.approx(0.05), pytest.approx(0.06)]
    charged = dv.app.state.edge_control.limiter.stats[dv.config.app_users[0].client_id].charged_ms
    assert charged == pytest.approx(1000 * sleeps.seconds[1])


def test_dataverse_throttled_answer_pays_the_round_trip_only() -> None:
    dv, sleeps = dataverse_with(Latency(round_trip_ms=50.0, execution_time=True))
    dv.app.state.edge_control.set_protection(enabled=True, max_requests=1)
    assert dv.get("WhoAmI").status_code == 200
    assert dv.get("WhoAmI").status_code == 429
    assert sleeps.seconds == [pytest.approx(0.05), pytest.approx(0.03), pytest.approx(0.05)]


def test_dataverse_latency_off_sleeps_nothing() -> None:
    dv, sleeps = dataverse_with(Latency())
    assert dv.get("WhoAmI").status_code == 200
    assert sleeps.seconds == []
