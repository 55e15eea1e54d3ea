"""End to end on `tiny`: migrate once; change, delete and merge records in Close through the Close
emulator's HTTP API; run the `delta` job. Only the changed records are written (the delta's ledger rows are
exactly the staged rows that changed, and the records whose Close source is gone), with a small number of
Dataverse requests; deleted sources are deactivated (or deleted with `delta.deleted_records: delete`); a
renamed lead's new account takes over the lead id (the "Close id key") its old account held, and its lead
and contacts bind to it; a rollback of the delta restores the state before it, deleted records and keys
included."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import dagster as dg
import duckdb
import httpx
import pytest
from run_graph import materialize_migration  # tests/ is on sys.path (rootdir conftest)

from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets import defs as defs_package
from migration_assets.clients.dataverse.transport import Transport
from migration_assets.defs.jobs import DELTA_JOB, all_jobs
from migration_assets.load.rollback import rollback
from migration_assets.mapping.ids import record_id
from migration_assets.mapping.normalise import normalise_account_name
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.api_calls import run_call_totals
from migration_assets.resources.warehouse import WarehouseResource

pytestmark = pytest.mark.e2e
MIGRATED = list(table_registry().names)  # the project's default tables (the tiny org uses them all)
# Columns the service itself moves on every write (a rollback writes too): not part of "the state".
VOLATILE = {"modifiedon", "versionnumber", "_modifiedby_value", "_modifiedonbehalfby_value"}
# A re-created record keeps its historical createdon (sent as overriddencreatedon, as the load did); its
# overriddencreatedon then holds the time of the re-creation, as it held the time of the first load.
RECREATED_VOLATILE = VOLATILE | {"overriddencreatedon"}


@dataclass
class Changes:
    renamed_contact: dict[str, Any]
    deleted_contact: dict[str, Any]
    deleted_lead: dict[str, Any]
    merged: tuple[dict[str, Any], dict[str, Any]]  # (source, destination)
    updated_opportunity: dict[str, Any]
    renamed_lead: dict[str, Any]  # its new name makes a new account, which takes over the lead id (the key)
    moved_contacts: set[str]  # the merge source's contacts (Close ids), now the destination's
    gone: set[str]  # Close ids whose objects no longer exist


def _gone_close_ids(org: CloseOrg, lead: str, contact: str, source: str, renamed: str) -> set[str]:
    """The deleted lead and everything under it, the deleted contact, the merge's source lead (its children
    move to the destination), the renamed lead's old account (no lead bears its name any more)."""
    ids = {lead, contact, source}
    # An account's Close id is its normalised lead name (these leads' names are unique in the org).
    ids |= {str(normalise_account_name(o["name"])) for o in org.leads if o["id"] in (lead, source, renamed)}
    for objects in (org.contacts, org.opportunities, org.activities, org.tasks):
        ids |= {str(o["id"]) for o in objects if o.get("lead_id") == lead}
    return ids


@dataclass
class World:
    org: CloseOrg
    close: CloseEmulatorServer
    dv: EmulatorServer
    warehouse: Path
    mappings: Path
    instance: dg.DagsterInstance
    before: dict[str, dict[str, dict[str, Any]]]  # the target after the migration
    staged_before: dict[str, dict[str, tuple[Any, ...]]]  # table -> record id -> staged row
    migrate: dg.ExecuteInProcessResult
    changes: Changes
    delta: dg.ExecuteInProcessResult
    # (time, method, URL) of every Dataverse request the delta run sent, in order.
    delta_requests: list[tuple[float, str, str]] = field(default_factory=list)


def run_delta(resources: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The `delta` job (its own run config: Close read in delta mode) with explicit resources."""
    job = next(j for j in all_jobs() if j.name == DELTA_JOB)
    defs = dg.Definitions(
        assets=dg.load_assets_from_package_module(defs_package),
        asset_checks=dg.load_asset_checks_from_package_module(defs_package),
        jobs=[job],
        resources=resources,
        executor=dg.in_process_executor,
    )
    return defs.resolve_job_def(DELTA_JOB).execute_in_process(instance=instance, raise_on_error=False)


def _staged(warehouse: Path) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Dataverse table -> record id -> its staged row (custom activity tables included)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [(t.name, t.name, t.primary_key) for t in table_registry().tables]
        custom = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staged' "
            "AND starts_with(table_name, 'custom_activity_') AND NOT ends_with(table_name, '_rejected')"
        ).fetchall()
        tables += [(name.removeprefix("custom_activity_"), name, "activityid") for (name,) in custom]
        out: dict[str, dict[str, tuple[Any, ...]]] = {}
        for table, staged, primary_key in tables:
            rows = con.execute(f'SELECT * FROM staged."{staged}"').fetchall()
            cols = [d[0] for d in con.description or []]
            if primary_key not in cols:
                continue  # not a staged load table (a by-product of custom activity staging)
            pk = cols.index(primary_key)
            out[table] = {str(r[pk]).lower(): tuple(map(str, r)) for r in rows}
        return out
    finally:
        con.close()


def _unique_named(org: CloseOrg, excluded: set[str]) -> list[dict[str, Any]]:
    """Leads whose normalised name no other lead shares (their account goes with them), with contacts."""
    names: dict[str, int] = {}
    for lead in org.leads:
        key = normalise_account_name(lead.get("name"))
        names[key] = names.get(key, 0) + 1
    return [
        lead
        for lead in org.leads
        if lead.get("name")
        and names[normalise_account_name(lead.get("name"))] == 1
        and lead["id"] not in excluded
        and any(c.get("lead_id") == lead["id"] for c in org.contacts)
    ]


def _mutate(close: CloseEmulatorServer, org: CloseOrg) -> Changes:
    """The changes, through Close's public API only (close_api.md §4), each on a lead of its own."""
    edge: set[str] = set()
    for value in (org.truth.get("edge_cases") or {}).values():
        edge |= {str(v) for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)}
    candidates = _unique_named(org, edge)
    assert len(candidates) >= 6, "the tiny org needs six distinct named leads with contacts"
    deleted_lead, source, destination, renamed_lead, contact_lead, renamed_account = candidates[:6]
    http = httpx.Client(base_url=close.base_url.rstrip("/") + "/", auth=(org.api_key, ""), timeout=30)

    def ok(resp: httpx.Response) -> None:
        assert resp.status_code in (200, 201, 204), f"{resp.request.method} {resp.url}: {resp.text}"

    def contacts_of(lead: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in org.contacts if c.get("lead_id") == lead["id"]]

    # Read from the generated org before any change (the emulator may share these objects).
    moved = {str(c["id"]) for c in contacts_of(source)}
    renamed = contacts_of(renamed_lead)[0]
    gone_contact = contacts_of(contact_lead)[-1]
    old_name = str(renamed_account["name"])
    new_name = f"{old_name} (renamed)"
    gone = _gone_close_ids(org, deleted_lead["id"], gone_contact["id"], source["id"], renamed_account["id"])
    excluded = {
        deleted_lead["id"],
        source["id"],
        destination["id"],
        renamed_lead["id"],
        contact_lead["id"],
        renamed_account["id"],
    }
    opportunity = next(o for o in org.opportunities if o.get("lead_id") not in excluded)
    try:
        ok(http.put(f"contact/{renamed['id']}/", json={"name": "Renamed Delta Person"}))
        ok(http.delete(f"contact/{gone_contact['id']}/"))
        ok(http.delete(f"lead/{deleted_lead['id']}/"))
        ok(http.post("lead/merge/", json={"source": source["id"], "destination": destination["id"]}))
        ok(http.put(f"opportunity/{opportunity['id']}/", json={"note": "Changed during the delta window"}))
        ok(http.put(f"lead/{renamed_account['id']}/", json={"name": new_name}))
    finally:
        http.close()
    renamed_lead_after = {"id": renamed_account["id"], "old_name": old_name, "name": new_name}
    return Changes(
        renamed,
        gone_contact,
        deleted_lead,
        (source, destination),
        opportunity,
        renamed_lead_after,
        moved,
        gone,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("delta")
    org = generate("tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOSE2D365_MAPPINGS", str(root / "mappings"))
    mp.setenv("CLOSE2D365_HOME", str(root / "home"))
    # One instance for both runs: the delta starts from the migration's watermarks.
    instance = dg.DagsterInstance.ephemeral()
    try:
        with s.close_server(org) as close, s.dataverse(org) as dv:
            warehouse = root / "w.duckdb"
            s.prepare_mappings(org, root / "mappings", close, dv, warehouse)
            resources = s.resources(org, close, dv, warehouse)
            migrate = materialize_migration(resources, instance=instance)
            s.assert_only_expected_halt(migrate)
            client = s.client_for(dv)
            before = s.snapshot(client, MIGRATED)
            client.close()
            staged_before = _staged(warehouse)
            changes = _mutate(close, org)
            seen: list[tuple[float, str, str]] = []
            with pytest.MonkeyPatch.context() as spy:
                spy.setattr(Transport, "request", _recording(Transport.request, seen))
                delta = run_delta(resources, instance)
            # Every load and the deletions ran (the whole run's outcome is a test of its own).
            assert not [k for k in s.failed_steps(delta) if k.startswith("loaded__")], s.failed_steps(delta)
            yield World(
                org,
                close,
                dv,
                warehouse,
                root / "mappings",
                instance,
                before,
                staged_before,
                migrate,
                changes,
                delta,
                delta_requests=seen,
            )
    finally:
        mp.undo()
        s.reload_generated_assets()


def test_the_delta_run_succeeds(world: World) -> None:
    s.assert_only_expected_halt(world.delta)


def _ledger(world: World, run_id: str) -> list[tuple[str, str, str | None, str]]:
    return [
        (t, str(r).lower(), c, a)
        for t, r, c, a in s.ledger_rows(
            world.warehouse,
            f"SELECT table_name, record_id, close_id, action FROM ledger.writes WHERE run_id = '{run_id}' "
            "AND status = 'done'",
        )
    ]


def _changed_staged(world: World) -> set[tuple[str, str]]:
    after = _staged(world.warehouse)
    return {
        (table, rid)
        for table, rows in after.items()
        for rid, row in rows.items()
        if world.staged_before.get(table, {}).get(rid) != row
    }


def test_the_delta_writes_only_the_changed_records(world: World) -> None:
    rows = _ledger(world, world.delta.run_id)
    # The opportunityclose activities are the side effect of a changed opportunity's Win/Lose, its sales
    # process instance (opportunitysalesprocess) of its changed status.
    side_effects = ("opportunityclose", "opportunitysalesprocess")
    upserts = {(t, r) for t, r, _, a in rows if a in ("created", "updated") and t not in side_effects}
    changed = _changed_staged(world)
    # Every write is of a staged row that changed; every changed row that moved a column is written.
    assert upserts and upserts <= changed, sorted(upserts - changed)
    renamed = record_id("contact", world.changes.renamed_contact["id"])
    assert ("contact", renamed) in upserts
    source = world.changes.merged[0]
    moved = {record_id("contact", c) for c in world.changes.moved_contacts}
    assert moved and {("contact", m) for m in moved} <= upserts  # re-parented to the destination
    assert ("opportunity", record_id("opportunity", world.changes.updated_opportunity["id"])) in upserts
    # The records removed are exactly those the migration loaded whose Close source is gone.
    gone = world.changes.gone
    migrated = _ledger(world, world.migrate.run_id)
    staged_now = _staged(world.warehouse)
    expected = {
        (t, r)
        for t, r, c, a in migrated
        if c in gone and t not in side_effects and r not in staged_now.get(t, {})
    }
    removed = {(t, r) for t, r, _, a in rows if a in ("deactivated", "deleted") and t != "opportunityclose"}
    assert removed == expected
    assert ("lead", record_id("lead", source["id"])) in removed
    assert ("lead", record_id("lead", world.changes.deleted_lead["id"])) in removed


def _loaded_requests(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    """loaded/<table> -> the Dataverse requests its step made."""
    out: dict[str, int] = {}
    for e in result.get_asset_materialization_events():
        if e.materialization is not None and e.asset_key.path[0] == "loaded":
            out[e.asset_key.path[-1]] = run_call_totals([e.materialization.metadata]).get(
                "dataverse_requests", 0
            )
    return out


def test_the_delta_sends_requests_in_proportion_to_the_change(world: World) -> None:
    full, delta = _loaded_requests(world.migrate), _loaded_requests(world.delta)
    rows = _ledger(world, world.delta.run_id)
    upserts = Counter(t for t, _, _, a in rows if a in ("created", "updated"))
    removed = sum(1 for *_, a in rows if a in ("deactivated", "deleted"))

    def written(asset: str) -> int:
        table = {"opportunity_sales_process": "opportunitysalesprocess"}.get(asset, asset)
        return upserts[table.removeprefix("custom_activity_")]

    report = "\n".join(
        f"{a}: full {full.get(a)}, delta {delta[a]}, written {written(a)}" for a in sorted(delta)
    )
    report += f"\nremoved {removed}"
    # A table with nothing to write reads nothing but the upload limit (annotation) or the custom table's
    # columns (custom activities, phase 3's own check): no metadata of its own, no existence queries.
    for asset, requests in delta.items():
        if asset != "deleted_records" and not written(asset):
            assert requests <= 4, report
    # A table with changes: its metadata (and its lookups' tables), one read of the changed ids, their
    # parties, the writes and state changes: a handful per table, never a read of the whole table.
    changed_tables = sum(1 for a in delta if written(a))
    bound = 12 * changed_tables + 2 * sum(upserts.values()) + 4 * len(delta) + 2 * removed
    assert sum(delta.values()) <= bound, report


def _recording(send: Any, seen: list[tuple[float, str, str]]) -> Any:
    """Transport.request that also notes (time, method, URL) of each request (the emulator keeps no log)."""

    def request(self: Transport, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((time.time(), method, str(url)))
        return send(self, method, url, *args, **kwargs)

    return request


def _requests_by_step(world: World) -> dict[str, list[str]]:
    """Step key -> "METHOD URL" of the delta's requests sent while it ran (steps run one at a time)."""
    spans: dict[str, list[float]] = {}
    for entry in world.instance.all_logs(world.delta.run_id):
        event = entry.dagster_event
        if event is not None and event.step_key:
            if event.event_type_value == "STEP_START":
                spans[event.step_key] = [entry.timestamp, float("inf")]
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                spans[event.step_key][1] = entry.timestamp
    return {
        step: [f"{m} {u}" for t, m, u in world.delta_requests if start <= t <= end]
        for step, (start, end) in spans.items()
    }


# Fixed lookups of the environment the loads take from the warehouse after the migration recorded them.
FIXED_LOOKUPS = ("sdkmessagefilters", "transactioncurrencies", "EntityDefinitions", "organizations")


def test_the_delta_loads_send_only_reads_of_changed_records_and_writes(world: World) -> None:
    by_step = _requests_by_step(world)
    loads = {step: sent for step, sent in by_step.items() if step.startswith("loaded__")}
    assert sum(map(len, loads.values())) > 0, sorted(by_step)  # the recording saw the loads
    fixed = {
        step: [r for r in sent if any(f"/{name}" in r or f" {name}" in r for name in FIXED_LOOKUPS)]
        for step, sent in loads.items()
    }
    assert {step: sent for step, sent in fixed.items() if sent} == {}
    # The changed contacts are read once: the second pass (contacts' own lookups) does not read them again.
    reads = [r for r in loads.get("loaded__contact", []) if r.startswith("GET contacts?")]
    assert len(reads) == 1, reads


def test_deleted_sources_are_deactivated_and_children_re_parented(world: World) -> None:
    client = s.client_for(world.dv)
    try:
        source = world.changes.merged[0]
        for lead in (source, world.changes.deleted_lead):
            rec = client.get("lead", record_id("lead", lead["id"]), ["statecode"]) or {}
            assert rec.get("statecode") == 2  # Disqualified
        gone_contact = client.get(
            "contact", record_id("contact", world.changes.deleted_contact["id"]), ["statecode"]
        )
        assert (gone_contact or {}).get("statecode") == 1  # Inactive
        new_parent = s.staged_rows(world.warehouse, "contact")
        by_id = {r["contactid"]: r for r in new_parent}
        for contact in world.changes.moved_contacts:
            rid = record_id("contact", contact)
            rec = client.get("contact", rid, ["_parentcustomerid_value", "statecode"]) or {}
            assert rec.get("statecode") == 0
            assert f"({rec.get('_parentcustomerid_value')})" in str(
                by_id[rid]["parentcustomerid_account@odata.bind"]
            )
    finally:
        client.close()


def _key_column(row: dict[str, Any]) -> str:
    """The account's Close id column ("<prefix>_closeid", the alternate key), as staged."""
    return next(c for c in row if c.endswith("_closeid"))


def test_a_renamed_leads_new_account_takes_over_the_close_id_key(world: World) -> None:
    lead = world.changes.renamed_lead
    old_close = str(normalise_account_name(lead["old_name"]))
    new_close = str(normalise_account_name(lead["name"]))
    old_ids = {r for t, r, c, _ in _ledger(world, world.migrate.run_id) if t == "account" and c == old_close}
    assert len(old_ids) == 1, old_ids
    old_id = old_ids.pop()
    new_row = next(r for r in s.staged_rows(world.warehouse, "account") if r["_close_id"] == new_close)
    key = _key_column(new_row)
    new_id = str(new_row["accountid"]).lower()
    assert new_id != old_id and new_row[key] == lead["id"]
    delta = _ledger(world, world.delta.run_id)
    # The old account gave its key up (ledgered with the value it held) before the new one was created.
    assert ("account", old_id, "released") in {(t, r, a) for t, r, _, a in delta}
    assert ("account", new_id, "created") in {(t, r, a) for t, r, _, a in delta}
    refused = s.ledger_rows(
        world.warehouse,
        "SELECT table_name, record_id, code, message FROM ledger.rejected WHERE run_id = "
        f"'{world.delta.run_id}' AND table_name IN ('account', 'lead', 'contact', 'opportunity')",
    )
    assert refused == []
    client = s.client_for(world.dv)
    try:
        new = client.get("account", new_id, [key, "statecode"]) or {}
        assert new.get(key) == lead["id"] and new.get("statecode") == 0
        old = client.get("account", old_id, [key, "statecode"]) or {}
        assert old.get("statecode") == 1 and old.get(key) is None  # deactivated, key released
        bound = client.get("lead", record_id("lead", lead["id"]), ["_parentaccountid_value"]) or {}
        assert str(bound.get("_parentaccountid_value")).lower() == new_id
        for contact in (c for c in world.org.contacts if c.get("lead_id") == lead["id"]):
            rec = client.get("contact", record_id("contact", contact["id"]), ["_parentcustomerid_value"])
            assert str((rec or {}).get("_parentcustomerid_value")).lower() == new_id
    finally:
        client.close()


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """asset path ("schema/plan") -> its materialization's metadata values, of one run."""
    return {
        "/".join(e.asset_key.path): {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.materialization is not None
    }


# The steps that read the target's metadata on every run before the delta reused the deployed schema plan.
SCHEMA_READS = (
    "schema/plan",
    "schema/solution",
    "schema/deployed",
    "schema/custom_activity_tables",
    "schema/custom_activity_columns",
    "staged/target_metadata",
)


def test_the_delta_reuses_the_deployed_schema_plan_without_reading_the_target(world: World) -> None:
    delta, migrate = _materialized(world.delta), _materialized(world.migrate)
    plan = delta["schema/plan"]
    assert plan["reused"] is True, plan["plan_source"]
    assert (
        plan["plan_source"]
        == f"reused, fingerprint {plan['fingerprint']}, deployed by run {world.migrate.run_id}"
    )
    assert plan["fingerprint"] == migrate["schema/plan"]["fingerprint"]
    for asset in SCHEMA_READS:
        assert asset in delta, f"{asset} did not materialize in the delta"
        assert delta[asset].get("dataverse_requests", 0) == 0, (asset, delta[asset])
    assert delta["staged/target_metadata"]["cached"] is True  # the migration's deploy refreshed the cache
    assert "deployed by run" in str(delta["schema/custom_activity_columns"]["skipped"])
    # The preflight still checks the credentials and the privileges, not the metadata.
    preflight = delta["schema/preflight"]
    assert preflight["metadata_reads_skipped"] is True and preflight["whoami"]
    assert 0 < preflight["dataverse_requests"] < migrate["schema/preflight"]["dataverse_requests"] / 3
    assert preflight["findings_json"] == migrate["schema/preflight"]["findings_json"]


def test_a_changed_mapping_makes_the_delta_plan_against_the_target_again(world: World) -> None:
    """Runs schema/plan alone in a job named `delta`: the mapping's change, not the job, decides."""
    account = world.mappings / "fields" / "account.yaml"
    original = account.read_text()
    assert "Placeholder account" in original
    job = dg.define_asset_job(DELTA_JOB, selection=dg.AssetSelection.assets(["schema", "plan"]))
    defs = dg.Definitions(
        assets=dg.load_assets_from_package_module(defs_package),
        jobs=[job],
        resources=s.resources(world.org, world.close, world.dv, world.warehouse),
        executor=dg.in_process_executor,
    )
    try:
        account.write_text(original.replace("Placeholder account", "Placeholder account (renamed)"))
        result = defs.resolve_job_def(DELTA_JOB).execute_in_process(instance=world.instance)
    finally:
        account.write_text(original)
    plan = _materialized(result)["schema/plan"]
    assert plan["reused"] is False and "the inputs changed" in plan["plan_source"]
    assert plan["dataverse_requests"] > 0
    assert plan["fingerprint"] != _materialized(world.delta)["schema/plan"]["fingerprint"]


def _diffs(
    before: dict[str, dict[str, dict[str, Any]]],
    after: dict[str, dict[str, dict[str, Any]]],
    volatile: set[str],
) -> list[tuple[Any, ...]]:
    return [
        (table, rid, k, before[table].get(rid, {}).get(k), after[table].get(rid, {}).get(k))
        for table in before
        for rid in set(before[table]) | set(after[table])
        for k in set(before[table].get(rid, {})) | set(after[table].get(rid, {}))
        if k not in volatile and before[table].get(rid, {}).get(k) != after[table].get(rid, {}).get(k)
    ]


def _rollback(world: World, run_id: str) -> None:
    resources = {
        "dataverse": s.dataverse_resource(world.dv),
        "warehouse": WarehouseResource(path=str(world.warehouse)),
    }
    report = rollback(run_id, False, log=lambda _m: None, **resources)  # type: ignore[arg-type]
    assert report.ok, report.failed


def test_rollback_restores_the_state_before_the_delta_then_delete_mode(world: World) -> None:
    """Last in the module: it changes the target. Rollback of the deactivating delta, then a delta with
    `delete` (records gone, full images ledgered) and its rollback (re-created under their ids)."""
    client = s.client_for(world.dv)
    try:
        _rollback(world, world.delta.run_id)
        # (Annotations have no state: even the deactivating delta deleted those of deleted sources.)
        assert _diffs(world.before, s.snapshot(client, MIGRATED), RECREATED_VOLATILE) == []

        settings = world.mappings / "settings.yaml"
        settings.write_text(
            settings.read_text().replace("deleted_records: deactivate", "deleted_records: delete")
        )
        resources = s.resources(world.org, world.close, world.dv, world.warehouse)
        deleting = run_delta(resources, world.instance)
        s.assert_only_expected_halt(deleting)
        rows = _ledger(world, deleting.run_id)
        deleted = {(t, r) for t, r, _, a in rows if a == "deleted"}
        assert ("lead", record_id("lead", world.changes.merged[0]["id"])) in deleted
        assert all(client.get(t, r, None) is None for t, r in deleted)

        _rollback(world, deleting.run_id)
        assert _diffs(world.before, s.snapshot(client, MIGRATED), RECREATED_VOLATILE) == []
    finally:
        client.close()
