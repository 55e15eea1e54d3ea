"""End to end on `demo`: the whole graph (close -> staged -> schema -> loaded -> reports) against both
emulators. The emulator must hold exactly the staged records, a second run changes nothing, killed runs
resume to the same state, rollback restores the snapshot, and fault injection does not change the end state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import pytest

from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.config import Faults
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets.lib.ids import account_id
from migration_assets.migration import materialize_migration
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.rollback import rollback, rollback_job

pytestmark = pytest.mark.e2e
MIGRATED = [
    "account",
    "contact",
    "lead",
    "opportunity",
    "phonecall",
    "email",
    "task",
    "appointment",
    "annotation",
]


@dataclass
class World:
    org: CloseOrg
    close: CloseEmulatorServer
    mappings: Path
    staged_warehouse: Path  # after the first full run: extraction + staging (ledger dropped in copies)
    first: s.Comparison
    first_dir: Path
    dv: EmulatorServer  # the target of the first run, still holding what it loaded


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("migrate")
    org = generate("demo")
    mappings = root / "mappings"
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOSE2D365_MAPPINGS", str(mappings))
    mp.setenv("CLOSE2D365_HOME", str(root / "home"))
    try:
        with s.close_server(org) as close, s.dataverse(org) as dv:
            warehouse = root / "full.duckdb"
            s.prepare_mappings(org, mappings, close, dv, warehouse)
            result = materialize_migration(s.resources(org, close, dv, warehouse))
            s.assert_only_expected_halt(result)
            client = s.client_for(dv)
            first = s.compare_all(warehouse, client)
            before = s.snapshot(client, MIGRATED)
            # A second run changes nothing in the target and writes no ledger row.
            again = s.load(org, close, dv, warehouse)
            s.assert_only_expected_halt(again)
            assert s.snapshot(client, MIGRATED) == before
            materialized = {
                tuple(e.asset_key.path): e.event_specific_data.materialization.metadata  # type: ignore[union-attr]
                for e in again.get_asset_materialization_events()
                if e.asset_key is not None and e.asset_key.path[0] == "schema"
            }
            solution = materialized[("schema", "solution")]  # the publisher and solution exist already
            assert (solution["created_publisher"].value, solution["created_solution"].value) == (False, False)
            deployed = [
                materialized[("schema", name)]
                for name in ("deployed", "custom_activity_tables", "custom_activity_columns")
            ]
            for meta in deployed:  # the schema step found nothing left to create
                assert all(meta[f"created_{k}"].value == 0 for k in ("tables", "columns", "options", "keys"))
            runs = s.ledger_rows(
                warehouse, "SELECT run_id FROM ledger.runs WHERE kind = 'migrate' ORDER BY started_at"
            )
            assert len(runs) == 2
            assert s.ledger_rows(
                warehouse, f"SELECT count(*) FROM ledger.writes WHERE run_id = '{runs[1][0]}'"
            ) == [(0,)]
            client.close()
            yield World(org, close, mappings, warehouse, first, root, dv)
    finally:
        mp.undo()
        s.reload_generated_assets()


def test_parents_timestamps_and_closed_opportunities(world: World) -> None:
    client = s.client_for(world.dv)
    warehouse = world.staged_warehouse
    contacts = list(
        client.query("contact", select=["contactid", "_parentcustomerid_value"], filter="c2d_closeid ne null")
    )
    assert contacts and all(c["_parentcustomerid_value"] for c in contacts), "every contact has an Account"
    for table in ("phonecall", "email", "task", "appointment", "account", "contact"):
        pk = client.metadata(table).primary_id
        staged = {r[pk]: r for r in s.staged_rows(warehouse, table)}
        for rec in client.query(table, select=[pk, "createdon"], filter="c2d_closeid ne null"):
            assert (
                rec["createdon"].replace("+00:00", "Z")[:19] == staged[rec[pk]]["overriddencreatedon"][:19]
            ), table
    opps = {r["opportunityid"]: r for r in s.staged_rows(warehouse, "opportunity")}
    assert any(r.get("_close_action") for r in opps.values()), "the demo org has won and lost opportunities"
    for rec in client.query("opportunity", select=["opportunityid", "statecode"]):
        action = opps[rec["opportunityid"]].get("_close_action")
        assert rec["statecode"] == {"win": 1, "lose": 2, None: 0}[action]
    client.close()


def test_attachments_and_recordings_have_identical_bytes(world: World) -> None:
    client = s.client_for(world.dv)
    files = [r for r in s.staged_rows(world.staged_warehouse, "annotation") if r.get("_file_url")]
    assert files, "the demo org has attachments and recordings within the size limit: none was staged"
    for row in files:
        blob = next(b for p, b in world.org.files.items() if row["_file_url"].endswith(p))
        assert s.document_bytes(client, row["annotationid"]) == blob.read(), row["_file_url"]
    client.close()


def _assert_exact(comparison: s.Comparison) -> None:
    summary = Counter((m["table"], m["column"]) for m in comparison.mismatches)
    assert comparison.mismatches == [], (summary, comparison.mismatches[:3])
    for table, (staged, in_target) in comparison.per_table.items():
        assert staged == in_target, (table, staged, in_target)


def test_first_run_holds_exactly_the_staged_records(world: World) -> None:
    _assert_exact(world.first)
    assert world.first.per_table["contact"][0] > 0 and world.first.per_table["annotation"][0] > 0
    reports = list((world.first_dir / "home" / "reports").glob("*/reconciliation.md"))
    assert reports and "| contact |" in reports[0].read_text()
    assert list((world.first_dir / "home" / "reports").glob("*/workflow_inventory.csv"))


def test_killed_runs_resume_to_the_same_state_and_roll_back(world: World, tmp_path: Path) -> None:
    warehouse = s.fresh_copy(world.staged_warehouse, tmp_path / "w.duckdb")
    with s.dataverse(world.org) as dv:
        s.assert_only_expected_halt(s.load(world.org, world.close, dv, warehouse, s.SCHEMA_ONLY))
        # Mid-batch (sent, outcome not recorded) and between batches (intents committed, nothing sent).
        assert s.killed_load(world.org, world.close, dv, warehouse, world.mappings, "contact:1:after") == 137
        assert s.killed_load(world.org, world.close, dv, warehouse, world.mappings, "email:1:before") == 137
        pending = s.ledger_rows(warehouse, "SELECT count(*) FROM ledger.writes WHERE status = 'pending'")
        assert pending[0][0] > 0
        s.assert_only_expected_halt(s.load(world.org, world.close, dv, warehouse, s.LOADED_ONLY))
        client = s.client_for(dv)
        _assert_exact(s.compare_all(warehouse, client))
        resources = {
            "dataverse": s.dataverse_resource(dv),
            "warehouse": WarehouseResource(path=str(warehouse)),
        }
        report = rollback(None, True, log=lambda _m: None, **resources)  # type: ignore[arg-type]
        assert report.ok and report.deleted > 0
        assert all(not recs for recs in s.snapshot(client, MIGRATED).values())
        again = rollback(None, True, log=lambda _m: None, **resources)  # type: ignore[arg-type]
        assert (again.deleted, again.restored, again.failed) == (0, 0, [])
        # The Dagster job does the same (and is as idempotent): nothing left to undo.
        job = rollback_job.execute_in_process(
            run_config={"ops": {"rollback_op": {"config": {"all_runs": True}}}}, resources=resources
        )
        assert job.success
        done = s.ledger_rows(warehouse, f"SELECT count(*) FROM ledger.writes WHERE run_id = '{job.run_id}'")
        assert done == [(0,)]
        client.close()


def test_faults_leave_the_exact_end_state_and_rollback_restores_updated_records(
    world: World, tmp_path: Path
) -> None:
    warehouse = s.fresh_copy(world.staged_warehouse, tmp_path / "w.duckdb")
    account = s.staged_rows(warehouse, "account")[0]
    faults = Faults(
        seed=7, error_5xx_rate=0.04, drop_rate=0.03, drop_after_work_rate=0.05, throttle_storm_rate=0.02
    )
    with s.dataverse(world.org) as dv:
        client = s.client_for(dv)
        # A record already in the target under the id the migration computes, with other values.
        assert account["accountid"] == account_id(account["name"])
        client.create(
            "account",
            {"accountid": account["accountid"], "name": "Pre-existing name", "telephone1": "+1 555 0100"},
        )
        client.create("account", {"name": "Unrelated account"})
        # An open opportunity already in the target that the run wins: the action sets its actual close date
        # and value and creates an opportunityclose; the rollback must put all of that back.
        won = next(r for r in s.staged_rows(warehouse, "opportunity") if r.get("_close_action") == "win")
        client.create("opportunity", {"opportunityid": won["opportunityid"], "name": "Pre-existing deal"})
        tables = [*MIGRATED, "opportunityclose"]
        before = s.snapshot(client, tables)
        s.assert_only_expected_halt(s.load(world.org, world.close, dv, warehouse, s.SCHEMA_ONLY))
        # 429 storms, 5xx, connections dropped before and after the server did the work, while loading.
        dv.app.state.edge_control.set_faults(faults)
        s.assert_only_expected_halt(s.load(world.org, world.close, dv, warehouse, s.LOADED_ONLY))
        dv.app.state.edge_control.set_faults(Faults())
        client.close()
        client = s.client_for(dv)  # a new client: the first one cached the metadata of before the schema step
        _assert_exact(s.compare_all(warehouse, client))
        assert s.ledger_rows(warehouse, "SELECT count(*) FROM ledger.rejected") == [(0,)]
        run_id = s.ledger_rows(  # the loading run (the schema step before it is a run of its own)
            warehouse, "SELECT DISTINCT run_id FROM ledger.writes WHERE action = 'updated'"
        )[0][0]
        updated = s.ledger_rows(
            warehouse,
            f"SELECT before_image FROM ledger.writes WHERE run_id = '{run_id}' AND action = 'updated' "
            f"AND record_id = '{account['accountid']}'",
        )
        assert updated and '"name": "Pre-existing name"' in updated[0][0]
        resources = {
            "dataverse": s.dataverse_resource(dv),
            "warehouse": WarehouseResource(path=str(warehouse)),
        }
        report = rollback(run_id, False, log=lambda _m: None, **resources)  # type: ignore[arg-type]
        assert report.ok and report.restored >= 2
        after = s.snapshot(client, tables)
        volatile = {"modifiedon", "versionnumber", "_modifiedby_value"}
        diffs = [
            (table, rid, k, before[table].get(rid, {}).get(k), after[table].get(rid, {}).get(k))
            for table in tables
            for rid in set(before[table]) | set(after[table])
            for k in set(before[table].get(rid, {})) | set(after[table].get(rid, {}))
            if k not in volatile and before[table].get(rid, {}).get(k) != after[table].get(rid, {}).get(k)
        ]
        assert diffs == []
        client.close()
