"""Contract: the Dataverse client's publisher/solution reads and creates, and the schema deletes a rollback
sends, against the emulator. Every delete answers False the second time (already gone), so removing a
component twice is fine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.transport import AppUserCredentials, TransportSettings
from migration_assets.target.schema_plan import ColumnSpec, TableSpec
from migration_assets.target.solution import SolutionTarget
from migration_assets.target.solution_deploy import inspect_solution, solution_components

TARGET = SolutionTarget("sample", "Sample publisher", "smp", 72701, "samplesol", "Sample", "1.0.0.0")


@pytest.fixture(scope="module")
def client() -> Iterator[DataverseClient]:
    with EmulatorServer(DataverseEmulatorConfig()) as server:
        u = server.config.app_users[0]
        settings = TransportSettings(
            environment_url=server.base_url,
            tenant_id=server.config.tenant_id,
            users=[AppUserCredentials(u.client_id, u.client_secret)],
            authority_host=server.base_url,
            ca_bundle=server.ca_bundle,
            backoff_base=0.01,
            backoff_cap=0.05,
        )
        with DataverseClient(settings) as c:
            yield c


def test_components_created_in_the_solution_and_removed_idempotently(client: DataverseClient) -> None:
    fresh = inspect_solution(client, TARGET)
    assert (fresh.publisher_id, fresh.solution_id, fresh.conflicts) == (None, None, ())
    publisher_id = client.create_publisher(TARGET.publisher_body())
    solution_id = client.create_solution(TARGET.solution_body(publisher_id))
    found = inspect_solution(client, TARGET)
    assert (found.publisher_id, found.solution_id, found.conflicts) == (publisher_id, solution_id, ())

    name = "samplesol"
    table = TableSpec("smp_visit", "smp_Visit", "Visit")
    table_id = client.create_table(table.body(), name)
    column = ColumnSpec("lead", "smp_closeid", "smp_CloseId", "String", "Close id", max_length=50)
    column_id = client.create_column("lead", column.body(), name)
    choice = ColumnSpec("lead", "smp_stage", "smp_Stage", "Picklist", "Stage", options=((727010000, "A"),))
    client.create_column("lead", choice.body(), name)
    client.insert_option_value("lead", "smp_stage", 727010001, "B", name)
    tags = ColumnSpec(
        "lead", "smp_tags", "smp_Tags", "MultiSelectPicklist", "Tags", options=((727010000, "A"),)
    )
    client.create_column("lead", tags.body(), name)
    client.insert_option_value("lead", "smp_tags", 727010001, "B", name)
    key_id = client.create_key("lead", "smp_lead_closeid_key", ["smp_closeid"], "Close id key", name)
    lookup = ColumnSpec("lead", "smp_visitid", "smp_VisitId", "Lookup", "Visit", lookup_target="smp_visit")
    rel = lookup.relationship_body()
    rel_id = client.create_relationship(rel, name)
    ids = {table_id, column_id, key_id, rel_id}
    assert None not in ids, "every create answers its MetadataId"
    in_solution = {str(r["objectid"]).lower() for r in solution_components(client, solution_id)}
    assert ids <= in_solution

    for first in (True, False):  # the second pass finds everything gone
        assert client.delete_option_value("lead", "smp_stage", 727010001, name) is first
        assert client.delete_option_value("lead", "smp_tags", 727010001, name) is first
        assert client.delete_key("lead", "smp_lead_closeid_key", key_id) is first
        assert client.delete_relationship(rel["SchemaName"], rel_id) is first
        assert client.delete_column("lead", "smp_closeid") is first
        assert client.delete_column("lead", "smp_stage") is first
        assert client.delete_column("lead", "smp_tags") is first
        assert client.delete_table("smp_visit") is first
        assert client.delete_solution(solution_id) is first
        assert client.delete_publisher(publisher_id) is first
    assert inspect_solution(client, TARGET) == fresh
