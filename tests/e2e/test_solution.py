"""Issue 10 on `tiny`: the demo flow creates the publisher and the solution, every custom component the run
created is in that solution (read back from `solutioncomponents`), and rolling the run back removes the
components, the solution and the publisher. A prefix that another publisher owns stops schema/solution with
the named fix before any change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import dagster as dg
import duckdb
import pytest
from run_graph import materialize_migration  # tests/ is on sys.path (rootdir conftest)

from emulators.orgdata import generate
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.metadata import entity_path
from migration_assets.load import ledger as lg
from migration_assets.load.ledger import SchemaComponent
from migration_assets.load.rollback import rollback
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.solution_deploy import solution_components

pytestmark = pytest.mark.e2e
PREFIX = "c2d_"
INCLUDE_SUBCOMPONENTS = 0  # solutioncomponent.rootcomponentbehavior (reference/entities/solutioncomponent.md)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s.Migrated]:
    """One demo-flow migration of `tiny` (extract, propose, scripted review, migrate) per module."""
    with s.demo_flow(tmp_path_factory.mktemp("solution"), generate("tiny", 1)) as done:
        yield done


def _rows(client: DataverseClient, entity_set: str, select: list[str], unique: str) -> list[dict[str, Any]]:
    return client.rows(entity_set, select, f"uniquename eq '{unique}'")


def _components(warehouse: Path, run_id: str) -> list[SchemaComponent]:
    con = duckdb.connect(str(warehouse))
    try:
        return lg.schema_components(con, [run_id], include_removed=True)
    finally:
        con.close()


def custom_metadata(client: DataverseClient) -> dict[str, dict[str, str]]:
    """MetadataIds of every custom component in the target by kind: tables, columns (table.column), keys,
    relationships (custom = carrying our prefix), read from the metadata API, not from our ledger."""
    tables = {
        t["LogicalName"]: t["MetadataId"]
        for t in client.get_json("EntityDefinitions?$select=LogicalName,MetadataId")["value"]
    }
    custom = {name: mid for name, mid in tables.items() if name.startswith(PREFIX)}
    out: dict[str, dict[str, str]] = {"table": custom, "column": {}, "key": {}, "relationship": {}}
    for table in tables:  # every table of the target: a custom column may be anywhere
        base = entity_path(table)
        for a in client.get_json(f"{base}/Attributes?$select=LogicalName,MetadataId")["value"]:
            if a["LogicalName"].startswith(PREFIX):
                out["column"][f"{table}.{a['LogicalName']}"] = a["MetadataId"]
        for k in client.get_json(f"{base}/Keys?$select=SchemaName,MetadataId")["value"]:
            if k["SchemaName"].lower().startswith(PREFIX):
                out["key"][f"{table}.{k['SchemaName']}"] = k["MetadataId"]
        rels = client.get_json(
            f"{base}/ManyToOneRelationships?$select=SchemaName,MetadataId,ReferencedEntity,ReferencingEntity"
        )["value"]
        for r in rels:
            if r["SchemaName"].lower().startswith(PREFIX):
                # Keyed by both ends: a relationship is a subcomponent of either table.
                ends = f"{r['ReferencingEntity']}.{r['ReferencedEntity']}"
                out["relationship"][f"{ends}.{r['SchemaName']}"] = r["MetadataId"]
    return out


def test_the_run_creates_publisher_and_solution_and_every_component_is_in_it(migrated: s.Migrated) -> None:
    settings = load_mapping_config().settings
    client = s.client_for(migrated.dv)
    try:
        (pub,) = _rows(
            client,
            "publishers",
            ["publisherid", "customizationprefix", "customizationoptionvalueprefix"],
            settings.publisher_unique_name,
        )
        assert (pub["customizationprefix"], pub["customizationoptionvalueprefix"]) == ("c2d", 72700)
        (sol,) = _rows(
            client,
            "solutions",
            ["solutionid", "version", "ismanaged", "_publisherid_value"],
            settings.solution_unique_name,
        )
        assert sol["_publisherid_value"] == pub["publisherid"] and sol["version"] == settings.solution_version
        assert sol["ismanaged"] is False
        ledgered = _components(migrated.warehouse, migrated.result.run_id)
        kinds = {c.kind for c in ledgered}
        assert {"publisher", "solution", "table", "column", "relationship", "key"} <= kinds, kinds
        assert all(c.status == "done" and c.component_id for c in ledgered), "every create answered an id"
        rows = solution_components(client, sol["solutionid"])
        in_solution = {str(r["objectid"]).lower(): r for r in rows}
        meta = custom_metadata(client)
        tables_with_all = {
            name
            for name, mid in meta["table"].items()
            if in_solution.get(mid.lower(), {}).get("rootcomponentbehavior") == INCLUDE_SUBCOMPONENTS
        }

        def in_it(kind: str, name: str, metadata_id: str) -> bool:
            # A component of a table added with its subcomponents (the service's default for a new table)
            # is carried by the table's row: its columns, keys, and the relationships it is an end of.
            tables = name.split(".")[: 2 if kind == "relationship" else 1] if kind != "table" else []
            return metadata_id.lower() in in_solution or bool(tables_with_all.intersection(tables))

        missing = [(k, n) for k, found in meta.items() for n, mid in found.items() if not in_it(k, n, mid)]
        assert missing == [], f"custom components outside the solution: {missing}"
        assert meta["table"] and meta["column"] and meta["key"] and meta["relationship"]
        # What the ledger says the run created is what the target holds, id for id.
        ids = {mid.lower() for found in meta.values() for mid in found.values()}
        for c in ledgered:
            if c.kind in ("table", "column", "key", "relationship"):
                assert c.component_id in ids, c
        kinds_count = Counter(c.kind for c in ledgered)
        print(
            f"tiny: {len(rows)} solutioncomponents rows; ledger {dict(kinds_count)}; target "
            + ", ".join(f"{len(v)} {k}s" for k, v in meta.items())
        )
    finally:
        client.close()


def test_rollback_of_the_run_removes_components_solution_and_publisher(migrated: s.Migrated) -> None:
    settings = load_mapping_config().settings
    resources = {
        "dataverse": s.dataverse_resource(migrated.dv),
        "warehouse": WarehouseResource(path=str(migrated.warehouse)),
    }
    report = rollback(migrated.result.run_id, False, log=lambda _m: None, **resources)  # type: ignore[arg-type]
    assert report.ok, report.render()
    print(next(line for line in report.render().splitlines() if line.startswith("schema:")))
    assert report.schema_kept == [], "no other run uses the schema"
    assert "solution close2d365" in report.schema_removed and "publisher close2d365" in report.schema_removed
    client = s.client_for(migrated.dv)
    try:
        assert _rows(client, "publishers", ["publisherid"], settings.publisher_unique_name) == []
        assert _rows(client, "solutions", ["solutionid"], settings.solution_unique_name) == []
        assert custom_metadata(client) == {"table": {}, "column": {}, "key": {}, "relationship": {}}
    finally:
        client.close()
    again = rollback(migrated.result.run_id, False, log=lambda _m: None, **resources)  # type: ignore[arg-type]
    assert again.ok and (again.schema_removed, again.schema_already_gone) == ([], [])


def test_a_prefix_owned_by_another_publisher_stops_schema_solution_before_any_change(
    tmp_path: Path,
) -> None:
    org = generate("tiny", 1)
    with s.dataverse(org) as dv:
        client = s.client_for(dv)
        try:
            client.create_publisher(
                {
                    "uniquename": "contoso",
                    "friendlyname": "Contoso",
                    "customizationprefix": "c2d",
                    "customizationoptionvalueprefix": 12345,
                }
            )
            cols = ["publisherid", "uniquename", "customizationprefix"]
            before = (client.rows("publishers", cols), client.rows("solutions", ["solutionid", "uniquename"]))
            resources = {  # the Close resource is never called: schema/solution reads only the target
                "close": CloseResource(api_key=org.api_key, base_url="http://127.0.0.1:9"),
                "dataverse": s.dataverse_resource(dv),
                "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")),
            }
            result = materialize_migration(resources, dg.AssetSelection.assets(["schema", "solution"]))
            assert not result.success
            (failure,) = [e for e in result.all_events if e.is_step_failure]
            error = failure.event_specific_data.error  # type: ignore[union-attr]
            message = ""
            while error is not None:  # Dagster wraps the asset's exception: read down the causes
                message += error.message
                error = error.cause
            assert "The customization prefix 'c2d' already belongs to publisher 'Contoso'" in message
            assert "set publisher_prefix in mappings/settings.yaml" in message
            after = (client.rows("publishers", cols), client.rows("solutions", ["solutionid", "uniquename"]))
            assert after == before, "nothing was created"
        finally:
            client.close()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        assert lg.schema_components(con) == []
    finally:
        con.close()
