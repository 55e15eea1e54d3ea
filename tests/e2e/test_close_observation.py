"""Change detection and delta extraction against the Close emulator, changed through its public HTTP API
as a user working in Close would (issue 13, DESIGN §8):

- Dagster's staleness (read as the UI reads it) after a change in Close and an observation marks exactly
  the close/* assets that change touched; a delta run of those makes them synced again;
- close_changes_sensor is off by default, observes Close, and requests a `delta` run only when Close moved
  past what was extracted, for the affected assets and their downstream;
- a delta extraction sees what date filters cannot: an edited old activity, a merge's moved children, a
  deletion; afterwards every close.* record table equals a full extraction of the changed org.
"""

# No `from __future__ import annotations`: Dagster reads the asset functions' annotations.
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import polars as pl
import pytest

from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate
from emulators.orgdata.shapes import DEFAULT_SHAPE, ORG_SHAPES
from migration_assets.defs import close as close_defs
from migration_assets.defs.close.observe import OBSERVED_KEYS
from migration_assets.defs.close_changes_sensor import close_changes_sensor
from migration_assets.defs.jobs import DELTA_JOB
from migration_assets.extract.close_changes import RECORD_TABLES
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource

pytestmark = pytest.mark.e2e

CLOSE_ASSETS = dg.load_assets_from_package_module(close_defs)
EXTRACT = dg.AssetSelection.groups("close") | dg.AssetSelection.assets(*OBSERVED_KEYS)
OBSERVE = dg.AssetSelection.assets(*OBSERVED_KEYS)
DELTA = {"ops": {"close__source_tables": {"config": {"mode": "delta"}}}}


@dg.asset(key=["staged", "from_notes"], deps=[["close", "notes"]])
def from_notes() -> None:
    return None


@dg.asset(key=["staged", "from_users"], deps=[["close", "users"]])
def from_users() -> None:
    return None


ASSETS = [*CLOSE_ASSETS, from_notes, from_users]
OTHER_SHAPE = next(shape for shape in ORG_SHAPES if shape != DEFAULT_SHAPE)


@pytest.fixture
def close_org() -> Iterator[tuple[CloseOrg, CloseEmulatorServer]]:
    # Not the demo org's shape: the delta load and the cutover's acceptance test run on that one.
    org = generate("tiny", org=OTHER_SHAPE)
    with CloseEmulatorServer(org) as server:
        yield org, server


def resources(org: CloseOrg, server: CloseEmulatorServer, warehouse: Path) -> dict[str, Any]:
    close = CloseResource(api_key=org.api_key, base_url=server.base_url, source="api")
    return {"close": close, "warehouse": WarehouseResource(path=str(warehouse))}


def http(org: CloseOrg, server: CloseEmulatorServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, auth=(org.api_key, ""), timeout=30)


def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 204), f"{response.request.url}: {response.text}"
    return response.json() if response.content else {}


def run(
    instance: dg.DagsterInstance,
    res: dict[str, Any],
    selection: dg.AssetSelection,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        ASSETS, selection=selection, resources=res, instance=instance, run_config=run_config
    )
    assert result.success
    return result


def stale(instance: dg.DagsterInstance) -> set[str]:
    """The materializable assets Dagster's staleness (the UI's "unsynced") calls stale."""
    # The resolver the UI uses (no public API yet), as tests/unit/test_close_pass_asset.py reads it.
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, ASSETS)
    keys = [k for a in ASSETS for k in a.keys if not k.path[0].startswith("close_source")]
    return {k.to_user_string() for k in keys if resolver.get_status(k) == StaleStatus.STALE}


def old_activity(org: CloseOrg, type_: str, avoid: set[str] = frozenset()) -> dict[str, Any]:
    """The oldest activity of a type: far outside the delta's date_created look-back."""
    pool = [a for a in org.activities if a["_type"] == type_ and a["lead_id"] not in avoid]
    return min(pool, key=lambda a: a["date_created"])


def test_a_change_in_close_makes_exactly_the_affected_assets_unsynced_until_a_delta(
    close_org: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = close_org
    res = resources(org, server, tmp_path / "w.duckdb")
    with dg.instance_for_test() as instance:
        run(instance, res, EXTRACT | dg.AssetSelection.assets(from_notes.key, from_users.key))
        assert stale(instance) == set()
        run(instance, res, OBSERVE)  # Close unchanged: the same versions, nothing unsynced
        assert stale(instance) == set()

        note = old_activity(org, "Note")
        ok(http(org, server).put(f"activity/note/{note['id']}/", json={"note": "Edited during the cutover"}))
        assert stale(instance) == set()  # Dagster knows nothing before Close is observed
        run(instance, res, OBSERVE)
        assert stale(instance) == {"close/notes"}

        # The delta re-extracts close/notes; its new data version makes what reads it unsynced in turn.
        run(instance, res, dg.AssetSelection.assets(["close", "notes"]), DELTA)
        graph = dg.Definitions(assets=ASSETS, resources=res).resolve_asset_graph()
        readers = graph.get(dg.AssetKey(["close", "notes"])).child_keys
        assert stale(instance) == {k.to_user_string() for k in readers}
        assert {"staged/from_notes", "close/attachments"} <= stale(instance)  # files come from notes too
        run(instance, res, dg.AssetSelection.assets(*readers))
        assert stale(instance) == set()
        run(instance, res, OBSERVE)  # observing again changes nothing: the versions do not drift
        assert stale(instance) == set()


def test_the_sensor_is_off_by_default_and_requests_a_delta_only_when_close_changed(
    close_org: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    from migration_assets.definitions import build_definitions

    assert close_changes_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    org, server = close_org
    res = resources(org, server, tmp_path / "w.duckdb")
    definitions = build_definitions()
    with dg.instance_for_test() as instance:
        run(instance, res, EXTRACT)

        def tick() -> dg.SensorResult:
            with dg.build_sensor_context(
                instance=instance, resources=res, definitions=definitions
            ) as context:
                result = close_changes_sensor(context)
            assert isinstance(result, dg.SensorResult)
            observed = {e.asset_key for e in result.asset_events or []}
            assert observed == set(OBSERVED_KEYS)  # every tick observes every Close table
            for event in result.asset_events or []:  # as the daemon stores a tick's events
                instance.report_runless_asset_event(event)
            return result

        quiet = tick()
        assert not quiet.run_requests
        assert stale(instance) == set()

        contact = org.contacts[0]
        ok(http(org, server).delete(f"contact/{contact['id']}/"))
        changed = tick()
        (request,) = changed.run_requests or []
        selected = {k.to_user_string() for k in request.asset_selection or []}
        # Deleting a contact changes its lead too (Close moves the lead's date_updated and logs it).
        assert {"close/contacts", "close/leads"} <= selected
        assert not {"close/users", "close/notes", "close/calls"} & selected
        assert all(k in selected for k in ("staged/contact", "loaded/contact"))  # and their downstream
        assert request.run_config == DELTA
        in_job = definitions.resolve_job_def(DELTA_JOB).asset_layer.selected_asset_keys
        assert set(request.asset_selection or []) <= in_job
        # The same versions again (no delta ran yet): the same run, which Dagster launches once.
        assert (tick().run_requests or [])[0].run_key == request.run_key


def extracted(warehouse: Path, table: str) -> pl.DataFrame:
    return WarehouseResource(path=str(warehouse)).read(f"SELECT id, raw FROM close.{table} ORDER BY id")


def test_a_delta_sees_edits_of_old_activities_merges_and_deletions(
    close_org: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = close_org
    res = resources(org, server, tmp_path / "w.duckdb")
    api = http(org, server)
    with dg.instance_for_test() as instance:
        run(instance, res, EXTRACT)

        def children(lead_id: str) -> dict[str, int]:
            kinds = {
                "contacts": org.contacts,
                "opportunities": org.opportunities,
                "activities": org.activities,
            }
            return {k: sum(1 for r in rows if r.get("lead_id") == lead_id) for k, rows in kinds.items()}

        source, destination = [lead["id"] for lead in org.leads if all(children(lead["id"]).values())][:2]
        call = old_activity(org, "Call", {source, destination})
        ok(api.put(f"activity/call/{call['id']}/", json={"note": "Called back after the migration"}))
        contact = next(c for c in org.contacts if c["lead_id"] not in (source, destination))
        ok(api.delete(f"contact/{contact['id']}/"))
        ok(api.post("lead/merge/", json={"source": source, "destination": destination}))

        result = run(instance, res, EXTRACT, DELTA)
        modes = {
            e.asset_key.path[-1]: e.materialization.metadata["mode"].value  # type: ignore[union-attr]
            for e in result.get_asset_materialization_events()
        }
        assert {modes[t] for t in RECORD_TABLES} == {"delta"}
        warehouse = WarehouseResource(path=str(tmp_path / "w.duckdb"))
        edited = extracted(tmp_path / "w.duckdb", "calls").filter(pl.col("id") == call["id"])
        assert "Called back after the migration" in edited["raw"][0]
        assert contact["id"] not in extracted(tmp_path / "w.duckdb", "contacts")["id"].to_list()
        assert source not in extracted(tmp_path / "w.duckdb", "leads")["id"].to_list()
        with warehouse.connect() as con:
            moved = con.execute("SELECT count(*) FROM close.notes WHERE lead_id = ?", [source]).fetchone()
            changes = con.execute(
                "SELECT change, count(*) FROM close._changes WHERE table_name = 'contacts' GROUP BY 1"
            ).fetchall()
            mode = con.execute(
                "SELECT mode FROM close._extractions WHERE table_name = 'contacts' ORDER BY extracted_at DESC"
            ).fetchone()
        assert moved == (0,)  # nothing still points at the merged-away lead
        assert dict(changes)["deleted"] >= 1 and dict(changes)["upserted"] >= 1
        assert mode == ("delta",)

        # The delta's tables equal a full extraction of the changed org, record for record.
        fresh = tmp_path / "fresh.duckdb"
        with dg.instance_for_test() as other:
            run(other, resources(org, server, fresh), EXTRACT)
        for table in RECORD_TABLES:
            assert extracted(tmp_path / "w.duckdb", table).equals(extracted(fresh, table)), table
        with WarehouseResource(path=str(fresh)).connect() as con:
            full_changes = con.execute("SELECT count(*) FROM close._changes").fetchone()
        assert full_changes == (0,)  # a full extraction records no ids: everything may have changed


def test_beyond_the_event_logs_retention_a_delta_reconciles_every_id(
    close_org: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = close_org
    path = tmp_path / "w.duckdb"
    res = resources(org, server, path)
    with dg.instance_for_test() as instance:
        run(instance, res, EXTRACT)
        # A note Close no longer has, whose deletion the event log no longer holds: only listing every id
        # of the table can tell.
        with WarehouseResource(path=str(path)).connect() as con:
            con.execute(
                "INSERT INTO close.notes (id, lead_id, raw) VALUES ('acti_forgotten', 'lead_x', '{}')"
            )
        since = (datetime.now(UTC) - timedelta(days=40)).isoformat()
        config = {"ops": {"close__source_tables": {"config": {"mode": "delta", "since": since}}}}
        result = run(instance, res, dg.AssetSelection.assets(["close", "notes"]), config)
        (event,) = result.get_asset_materialization_events()
        metadata = event.materialization.metadata  # type: ignore[union-attr]
        assert metadata["reconciled_ids"].value == 1 and metadata["rows_removed"].value == 1
        notes = extracted(path, "notes")
        assert "acti_forgotten" not in notes["id"].to_list()
        assert notes.height == org.truth["counts"]["notes"]
