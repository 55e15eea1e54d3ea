"""`DataverseClient.read_together` against the emulator: GETs fetched in one `$batch`, each answer taken
once by the read that asks for it; a refused GET is sent again on its own and fails with its own error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseApiError, DataverseClient
from migration_assets.clients.dataverse.schema import rows_url
from migration_assets.clients.dataverse.transport import AppUserCredentials, TransportSettings

USER = AppUser("c2d36500-0000-4000-8000-00000000a201", "secret-rt", deterministic_id("systemuser", "a201"))


@pytest.fixture(scope="module")
def client() -> Iterator[DataverseClient]:
    with EmulatorServer(DataverseEmulatorConfig(app_users=[USER])) as server:
        settings = TransportSettings(
            environment_url=server.base_url,
            tenant_id=server.config.tenant_id,
            users=[AppUserCredentials(USER.client_id, USER.client_secret)],
            authority_host=server.base_url,
            ca_bundle=server.ca_bundle,
            backoff_base=0.01,
            backoff_cap=0.05,
        )
        with DataverseClient(settings) as dv:
            yield dv


def _sent(client: DataverseClient) -> int:
    return sum(s["requests"] for s in client.stats().values())


def test_reads_fetched_together_cost_one_request_and_answer_as_sent_alone(client: DataverseClient) -> None:
    account = client.create("account", {"name": "Read together"})
    alone = {
        "whoami": client.whoami(),
        "org": client.rows("organizations", ["maxuploadfilesize"]),
        "accounts": list(client.query("account", select=["name"], filter=f"accountid eq {account}")),
    }
    query_url = client.query_request("account", select=["name"], filter=f"accountid eq {account}")
    before = _sent(client)
    kept = client.read_together(["WhoAmI", rows_url("organizations", ["maxuploadfilesize"]), query_url])
    assert kept == 3
    assert _sent(client) == before + 1
    together = {
        "whoami": client.whoami(),
        "org": client.rows("organizations", ["maxuploadfilesize"]),
        "accounts": list(client.query("account", select=["name"], filter=f"accountid eq {account}")),
    }
    assert _sent(client) == before + 1, "the reads took the answers fetched ahead"
    assert together == alone
    client.whoami()
    assert _sent(client) == before + 2, "an answer is taken once; the next read is sent"


def test_a_refused_read_is_sent_again_and_fails_with_its_own_error(client: DataverseClient) -> None:
    bad = rows_url("accounts", ["no_such_column"])
    assert client.read_together(["WhoAmI", bad]) == 1
    before = _sent(client)
    with pytest.raises(DataverseApiError) as refused:
        client.rows("accounts", ["no_such_column"])
    assert refused.value.status == 400 and "no_such_column" in str(refused.value)
    assert _sent(client) == before + 1
    client.drop_read_ahead()
    client.whoami()
    assert _sent(client) == before + 2, "dropped answers are not used"


def test_existence_of_many_ids_is_one_round_trip_and_exact(client: DataverseClient) -> None:
    """A delta's few changed records span several id chunks (one URL holds 50): their queries go in one
    `$batch`, and the answer is exactly the ids that exist."""
    created = client.create_multiple("account", [{"name": f"Exists {n}"} for n in range(120)])
    there = [i.lower() for i in created.ids if i]
    assert len(there) == 120
    absent = [f"00000000-0000-4000-8000-{n:012d}" for n in range(40)]
    before = _sent(client)
    found = client.existing_ids("account", there[:60] + absent + there[60:])
    assert found == set(there)
    assert _sent(client) == before + 1, "four chunks of ids, one request"
    assert client.existing_ids("account", absent[:3]) == set()
    assert _sent(client) == before + 2, "one chunk: a plain query, no $batch around it"


def test_query_each_answers_every_filter_as_its_own_query(client: DataverseClient) -> None:
    names = [f"Paged {n}" for n in range(7)]
    client.create_multiple("account", [{"name": n} for n in names])
    filters = [f"name eq '{n}'" for n in names[:3]] + ["startswith(name,'Paged ')"]
    rows = list(client.query_each("account", filters, select=["name"]))
    assert sorted(r["name"] for r in rows) == sorted(names[:3] + names)
