"""Contract: how the Dataverse client spreads a load over its application users, against the emulator over
HTTPS with service protection on (reference §5.1: each application user has its own budget; a 429 carries
the Retry-After of that user only). Checked with the emulator's own counters per user, never with time;
the one case where every user is throttled is driven through the scripted fake (dv_fake.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _dv_emulator import emulator_client, post_faults
from dv_fake import AUTHORITY_HOST, ENV, TENANT, FakeDataverse, _error

from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.transport import AppUserCredentials, TransportSettings

SPENT = AppUser(
    "c2d36500-0000-4000-8000-00000000c101", "secret-spent", deterministic_id("systemuser", "c101")
)
FRESH = AppUser(
    "c2d36500-0000-4000-8000-00000000c102", "secret-fresh", deterministic_id("systemuser", "c102")
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(DataverseEmulatorConfig(app_users=[SPENT, FRESH])) as srv:
        yield srv


def _per_user(server: EmulatorServer) -> dict[str, dict[str, Any]]:
    """The emulator's service-protection counters per application user (admitted, throttled, records)."""
    return post_faults(server, {})["stats"]["protection"]


def _contacts(n: int) -> list[dict[str, str]]:
    return [{"contactid": str(uuid.uuid4()), "lastname": f"Routing{i}"} for i in range(n)]


def test_a_throttled_user_hands_the_next_requests_to_the_user_with_budget(server: EmulatorServer) -> None:
    # 5,000 ms of execution time per user and 20 s window; 10 ms per record: 500 records spend a budget.
    limits = {
        "enabled": True,
        "window_seconds": 20.0,
        "max_execution_ms": 5000,
        "cost_ms_per_request": 2,
        "cost_ms_per_record": 10,
    }
    post_faults(server, {"protection": limits, "reset_protection": True})
    with emulator_client(server, [SPENT]) as alone:
        assert alone.create_multiple("contact", _contacts(500), batch_size=500).rejected == []
    before = _per_user(server)
    # The spent user comes first: the load's first request meets its 429 (Retry-After: until the window
    # frees room, many seconds). Everything after it goes to the user with budget; nothing waits.
    with emulator_client(server, [SPENT, FRESH]) as client:
        result = client.create_multiple("contact", _contacts(200), batch_size=50)
        waits = client.transport.pause_waits
        sent = client.stats()
    after = _per_user(server)
    spent, fresh = SPENT.client_id, FRESH.client_id
    assert result.rejected == [] and len(result.succeeded) == 200
    assert after[spent]["throttled_execution_time"] - before[spent]["throttled_execution_time"] == 1
    assert after[spent]["admitted"] == before[spent]["admitted"]  # the spent user admitted nothing more
    assert after[fresh]["records"] == 200  # every write went to the user with budget
    assert sent[spent]["throttled"] == 1 and sent[fresh]["throttled"] == 0
    assert waits == 0  # no request waited out the Retry-After while a user had budget


def test_users_are_sent_the_same_work_in_records_not_the_same_number_of_requests(
    server: EmulatorServer,
) -> None:
    post_faults(server, {"protection": {"enabled": False}, "reset_protection": True})
    with emulator_client(server, [SPENT, FRESH], max_in_flight=1) as client:
        client.create_multiple("contact", _contacts(400), batch_size=400)  # one request of 400 records
        for _ in range(8):
            client.create_multiple("contact", _contacts(50), batch_size=50)  # eight of 50
    records = sorted(u["records"] for u in _per_user(server).values())
    # By number of requests the eight small ones would alternate: 600 records for one user, 200 for the other.
    assert records == [400, 400]


def test_a_request_waits_out_a_retry_after_only_when_every_user_is_throttled() -> None:
    fake = FakeDataverse()
    left = {"app-a": 1, "app-b": 1}  # one 429 for each user, with a short Retry-After

    def spent(req: httpx.Request, client_id: str) -> httpx.Response | None:
        if "Multiple" in req.url.path and left[client_id] > 0:
            left[client_id] -= 1
            return _error(429, "0x80072321", "Combined execution time exceeded.", {"Retry-After": "0.05"})
        return None

    fake.faults.append(spent)
    settings = TransportSettings(
        environment_url=ENV,
        tenant_id=TENANT,
        users=[AppUserCredentials("app-a", "secret-a"), AppUserCredentials("app-b", "secret-b")],
        authority_host=AUTHORITY_HOST,
        http_transport=fake.transport(),
    )
    with DataverseClient(settings, batch_size=10) as client:
        result = client.create_multiple("contact", _contacts(10))  # one request: user A, then B, then wait
        waits = client.transport.pause_waits
    assert len(result.succeeded) == 10 and result.throttled == 2
    assert waits >= 1  # the request waited: no user had budget
