"""Dataverse client transport behaviour driven through exact fault sequences (httpx.MockTransport fake).

msal runs for real here too: it discovers the fake authority and posts the client-credentials form.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import httpx
import pytest
from dv_fake import AUTHORITY_HOST, ENV, TENANT, FakeDataverse, _error, once

from migration_assets.clients.dataverse.client import (
    AppUserCredentials,
    DataverseApiError,
    DataverseAuthError,
    DataverseClient,
    DataverseConfigError,
)
from migration_assets.clients.dataverse.transport import TransportSettings
from migration_assets.resources.dataverse import DataverseResource


def _settings(fake: FakeDataverse, users: list[tuple[str, str]], **kw: object) -> TransportSettings:
    return TransportSettings(
        environment_url=ENV,
        tenant_id=TENANT,
        users=[AppUserCredentials(c, s) for c, s in users],
        authority_host=AUTHORITY_HOST,
        http_transport=fake.transport(),
        backoff_base=0.001,
        backoff_cap=0.01,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def fake() -> FakeDataverse:
    return FakeDataverse()


@pytest.fixture
def client(fake: FakeDataverse) -> Iterator[DataverseClient]:
    with DataverseClient(_settings(fake, [("app-a", "secret-a")]), batch_size=10) as c:
        yield c


def _rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {"contactid": str(uuid.UUID(int=rng.getrandbits(128))), "firstname": f"F{i}", "lastname": f"L{i}"}
        for i in range(n)
    ]


def _is_bulk(req: httpx.Request, _client: str) -> bool:
    return "CreateMultiple" in req.url.path


def test_wrong_secret_names_client_id_and_aadsts_never_the_secret(fake: FakeDataverse) -> None:
    with DataverseClient(_settings(fake, [("app-a", "not-the-secret")])) as c:
        with pytest.raises(DataverseAuthError) as info:
            c.create_multiple("contact", _rows(1))
    text = str(info.value)
    assert "app-a" in text and "AADSTS7000215" in text and "invalid_client" in text
    assert "not-the-secret" not in text
    assert info.value.client_id == "app-a"


def test_expired_token_is_refreshed_once(fake: FakeDataverse, client: DataverseClient) -> None:
    assert client.create_multiple("contact", _rows(3)).rejected == []
    issued = fake.token_requests
    fake.expire_tokens()  # the server no longer accepts the cached token (it expired)
    result = client.create_multiple("contact", _rows(3, seed=1))
    assert len(result.succeeded) == 3
    assert fake.token_requests == issued + 1
    assert client.stats()["app-a"]["token_refreshes"] == 1


def test_persistent_401_fails_clearly_after_one_refresh(fake: FakeDataverse, client: DataverseClient) -> None:
    fake.faults.append(lambda req, c: _error(401, "0x80044302", "Request is not authenticated."))
    with pytest.raises(DataverseAuthError, match="app-a.*401"):
        client.metadata("contact")
    assert client.stats()["app-a"]["token_refreshes"] == 1


def test_429_for_one_user_shifts_load_and_lowers_its_concurrency(fake: FakeDataverse) -> None:
    storm = {"left": 6}

    def throttle_a(req: httpx.Request, client_id: str) -> httpx.Response | None:
        if client_id == "app-a" and storm["left"] > 0 and "Multiple" in req.url.path:
            storm["left"] -= 1
            return _error(
                429,
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                {"Retry-After": "0.05"},
            )
        return None

    fake.faults.append(throttle_a)
    settings = _settings(fake, [("app-a", "secret-a"), ("app-b", "secret-b")], max_in_flight=4)
    with DataverseClient(settings, batch_size=10) as c:
        rows = _rows(400)
        result = c.create_multiple("contact", rows)
        stats = c.stats()
    assert len(result.succeeded) == 400 and result.rejected == []  # nothing dropped
    assert len(fake.contacts) == 400
    assert 1 <= result.throttled <= 6 and stats["app-a"]["throttled"] == result.throttled
    assert stats["app-b"]["throttled"] == 0
    assert stats["app-a"]["min_window"] < 4  # AIMD: this user's concurrency was lowered
    assert stats["app-b"]["requests"] > 0  # the load spread across users


def test_429_storm_with_one_user_waits_and_never_drops(fake: FakeDataverse, client: DataverseClient) -> None:
    storm = {"left": 5}

    def throttle(req: httpx.Request, _c: str) -> httpx.Response | None:
        if storm["left"] > 0 and "Multiple" in req.url.path:
            storm["left"] -= 1
            return _error(
                429,
                "0x80072326",
                "Number of concurrent requests exceeded the limit of 52.",
                {"Retry-After": "0.01"},
            )
        return None

    fake.faults.append(throttle)
    result = client.create_multiple("contact", _rows(50))
    assert len(result.succeeded) == 50 and len(fake.contacts) == 50
    assert result.throttled == 5 and result.retries == 5 and result.requests == 5 + 5
    assert client.stats()["app-a"]["min_window"] == 1


def test_5xx_and_dropped_connections_are_retried(fake: FakeDataverse, client: DataverseClient) -> None:
    fake.faults += [
        once(_is_bulk, lambda r: _error(503, "0x80040216", "Service unavailable.")),
        once(_is_bulk, lambda r: (_ for _ in ()).throw(httpx.ConnectError("connection refused", request=r))),
        once(_is_bulk, lambda r: _error(502, "", "Bad gateway")),
    ]
    result = client.create_multiple("contact", _rows(10))
    assert len(result.succeeded) == 10 and result.retries == 3 and result.requests == 4
    assert len(fake.contacts) == 10


def test_connection_dropped_after_the_create_landed(fake: FakeDataverse, client: DataverseClient) -> None:
    """The retry of a landed CreateMultiple hits 412 0x80040237: rows count as already existing."""

    def drop_after_work(req: httpx.Request, _c: str) -> httpx.Response | None:
        if "CreateMultiple" in req.url.path and not getattr(drop_after_work, "done", False):
            drop_after_work.done = True  # type: ignore[attr-defined]
            fake._api(req, req.url.path.removeprefix("/api/data/v9.2/"))  # the work lands...
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=req)
        return None

    fake.faults.append(drop_after_work)
    rows = _rows(10)
    result = client.create_multiple("contact", rows)
    assert result.rejected == []
    assert sorted(result.succeeded) == list(range(10))
    assert sorted(result.existing) == list(range(10))
    assert len(fake.contacts) == 10  # created once, never twice


def test_one_bad_row_is_rejected_with_the_server_message(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    rows = _rows(20)
    rows[7]["lastname"] = "x" * 51
    result = client.create_multiple("contact", rows)
    assert [e.index for e in result.rejected] == [7]
    err = result.rejected[0]
    assert err.id == rows[7]["contactid"] and err.status == 400 and err.code == "0x80044331"
    assert "exceeded the maximum allowed length of '50'" in err.message
    assert sorted(result.succeeded) == [i for i in range(20) if i != 7]
    assert len(fake.contacts) == 19 and rows[7]["contactid"] not in fake.contacts
    assert result.requests <= 2 + 2 * 4  # two chunks of 10, then a bisection of the bad one


def test_unknown_column_surfaces_the_real_error_unchanged(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    rows = _rows(10)
    rows[3]["c2d_notyet"] = "value"
    with pytest.raises(DataverseApiError) as info:
        client.create_multiple("contact", rows)
    assert info.value.status == 400 and info.value.code == "0x0"
    assert info.value.message == (
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid property "
        "'c2d_notyet' was found in entity 'Microsoft.Dynamics.CRM.contact'."
    )


def test_validation_errors_are_not_retried(fake: FakeDataverse, client: DataverseClient) -> None:
    rows = _rows(1)
    rows[0]["lastname"] = "y" * 60
    result = client.create_multiple("contact", rows)
    assert result.requests == 1 and result.retries == 0 and len(result.rejected) == 1


def test_single_create_of_existing_id_is_already_loaded(fake: FakeDataverse, client: DataverseClient) -> None:
    row = _rows(1)[0]
    assert client.create("contact", row) == row["contactid"]
    assert client.create("contact", row) == row["contactid"]  # 412 0x80040237 = already there
    assert len(fake.contacts) == 1


def test_resource_splits_comma_separated_credentials() -> None:
    res = DataverseResource(
        environment_url=ENV, tenant_id=TENANT, client_ids="a, b", client_secrets="s1,s2", max_in_flight=3
    )
    settings = res.settings()
    assert [u.client_id for u in settings.users] == ["a", "b"]
    assert "s1" not in repr(settings)  # secrets are never printed
    bad = DataverseResource(environment_url=ENV, tenant_id=TENANT, client_ids="a,b", client_secrets="s1")
    with pytest.raises(DataverseConfigError, match="2 entries.*1"):
        bad.settings()
    with pytest.raises(DataverseConfigError, match="https"):
        DataverseClient(TransportSettings("http://org", TENANT, [AppUserCredentials("a", "s")]))


def test_schema_create_that_landed_before_a_dropped_connection_is_accepted(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    created: set[str] = set()

    def columns(req: httpx.Request, _c: str) -> httpx.Response | None:
        path = req.url.path
        if req.method == "POST" and path.endswith("EntityDefinitions(LogicalName='contact')/Attributes"):
            if "c2d_x" in created:
                return _error(
                    400, "0x80040203", "A column named 'c2d_x' already exists on the 'contact' table."
                )
            created.add("c2d_x")  # the work lands, then the connection drops
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=req)
        if req.method == "GET" and "Attributes(LogicalName='c2d_x')" in path:
            return httpx.Response(200, json={"LogicalName": "c2d_x"}) if "c2d_x" in created else None
        return None

    fake.faults.append(columns)
    client.create_column("contact", {"SchemaName": "c2d_X", "AttributeType": "String", "MaxLength": 10})
    assert created == {"c2d_x"}
    # Without an ambiguous first attempt, "already exists" is a real error and surfaces unchanged.
    with pytest.raises(DataverseApiError, match="already exists"):
        client.create_column("contact", {"SchemaName": "c2d_X", "AttributeType": "String", "MaxLength": 10})
