"""Facts of the target environment the loader keeps in the warehouse instead of asking every run
(httpx.MockTransport fake, dv_fake.py). Bulk-message support (CreateMultiple/UpdateMultiple per table) is
asked once per environment: the answer is recorded (`loaded.bulk_message_support`, with where it came from and
when) and a new client over the same warehouse takes it without asking; a table or message never asked still
asks once, and `forget_bulk_support` (or `refresh`) asks again. A table's definition is read once and reused
until a schema component of the table is created after the read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dv_fake import AUTHORITY_HOST, ENV, TENANT, FakeDataverse

from migration_assets.clients.dataverse.client import AppUserCredentials, DataverseClient, DataverseError
from migration_assets.clients.dataverse.transport import TransportSettings
from migration_assets.load.bulk_support import (
    SOURCE,
    forget_bulk_support,
    prime_bulk_support,
    record_bulk_support,
)
from migration_assets.load.entity_meta_cache import (
    covers,
    forget_entity_metadata,
    prime_entity_metadata,
    record_entity_metadata,
)
from migration_assets.load.ledger import SchemaLedger


def _client(fake: FakeDataverse, environment_url: str = ENV) -> DataverseClient:
    settings = TransportSettings(
        environment_url=environment_url,
        tenant_id=TENANT,
        users=[AppUserCredentials("app-a", "secret-a")],
        authority_host=AUTHORITY_HOST,
        http_transport=fake.transport(),
    )
    return DataverseClient(settings)


def _probes(fake: FakeDataverse) -> int:
    return sum(1 for _, method, path in fake.log if method == "GET" and path.endswith("/sdkmessagefilters"))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def test_an_answer_is_asked_once_and_reused_by_a_new_client(con: duckdb.DuckDBPyConnection) -> None:
    fake = FakeDataverse()
    with _client(fake) as first:
        assert prime_bulk_support(con, first) == 0  # nothing recorded yet
        assert first.supports_bulk("CreateMultiple", "contact") is True
        assert first.supports_bulk("CreateMultiple", "contact") is True  # the client's own cache
        assert record_bulk_support(con, first, "run-1") == 1
    assert _probes(fake) == 1
    row = con.execute(
        "SELECT environment_url, message, table_name, supported, source, run_id, asked_at IS NOT NULL "
        "FROM loaded.bulk_message_support"
    ).fetchall()
    assert row == [(ENV, "CreateMultiple", "contact", True, SOURCE, "run-1", True)]

    fake.bulk_supported = False  # were it asked again, the answer would differ: it is not asked
    with _client(fake) as second:
        assert prime_bulk_support(con, second) == 1
        assert second.supports_bulk("CreateMultiple", "contact") is True
        assert _probes(fake) == 1
        # A message never asked about is asked once, and recorded beside the first answer.
        assert second.supports_bulk("UpdateMultiple", "contact") is False
        assert _probes(fake) == 2
        assert record_bulk_support(con, second, "run-2") == 1
    recorded = con.execute(
        "SELECT message, supported, run_id FROM loaded.bulk_message_support ORDER BY message"
    ).fetchall()
    assert recorded == [("CreateMultiple", True, "run-1"), ("UpdateMultiple", False, "run-2")]


def test_answers_belong_to_their_environment(con: duckdb.DuckDBPyConnection) -> None:
    fake = FakeDataverse()
    with _client(fake) as first:
        first.supports_bulk("CreateMultiple", "contact")
        record_bulk_support(con, first, "run-1")
    with _client(fake, "https://other.crm.dynamics.com") as other:
        assert prime_bulk_support(con, other) == 0
        other.supports_bulk("CreateMultiple", "contact")
    assert _probes(fake) == 2


def test_forgetting_or_refreshing_asks_again(con: duckdb.DuckDBPyConnection) -> None:
    fake = FakeDataverse()
    with _client(fake) as first:
        first.supports_bulk("CreateMultiple", "contact")
        record_bulk_support(con, first, "run-1")
    fake.bulk_supported = False  # the environment changed since
    with _client(fake) as primed:
        prime_bulk_support(con, primed)
        assert primed.supports_bulk("CreateMultiple", "contact", refresh=True) is False
        record_bulk_support(con, primed, "run-2")
    assert con.execute("SELECT supported FROM loaded.bulk_message_support").fetchall() == [(False,)]
    assert forget_bulk_support(con, ENV + "/") == 1
    with _client(fake) as fresh:
        assert prime_bulk_support(con, fresh) == 0
        assert fresh.supports_bulk("CreateMultiple", "contact") is False
    assert _probes(fake) == 3


def test_only_bulk_messages_are_asked_about(con: duckdb.DuckDBPyConnection) -> None:
    with _client(FakeDataverse()) as client:
        with pytest.raises(DataverseError, match="not a bulk message"):
            client.supports_bulk("Create", "contact")


def _metadata_reads(fake: FakeDataverse) -> int:
    return sum(1 for _, _, path in fake.log if "/EntityDefinitions(" in path)


def test_a_table_definition_is_read_once_until_the_schema_changes(con: duckdb.DuckDBPyConnection) -> None:
    fake = FakeDataverse()
    with _client(fake) as first:
        meta = first.metadata("contact")
        assert record_entity_metadata(con, first, "run-1") == 1
    reads = _metadata_reads(fake)
    assert reads > 0
    with _client(fake) as second:
        assert prime_entity_metadata(con, second) == {"contact"}
        assert second.metadata("contact") == meta
        assert second.entity_set("contact") == "contacts"
    assert _metadata_reads(fake) == reads  # nothing read again
    assert covers(meta, ["contactid", "firstname", "_close_id"])
    assert not covers(meta, ["contactid", "c2d_newcolumn"])  # a column added since: the caller re-reads
    assert not covers(meta, ["parentcustomerid_account@odata.bind"])

    # A schema component of the table created after the read: the record is not used.
    SchemaLedger(con, "run-2").begin("column", "contact", "c2d_newcolumn")
    with _client(fake) as third:
        assert prime_entity_metadata(con, third) == set()
        third.metadata("contact")
    assert _metadata_reads(fake) > reads
    assert forget_entity_metadata(con) == 1
