"""The sales process loader against the Dataverse emulator's shipped "Opportunity Sales Process": instances
read, moved a stage at a time, created where missing, finished for closed opportunities, refused with a
reason; every write ledgered, and a rollback of the run puts each instance back (or deletes it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pytest

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.load import ledger as lg
from migration_assets.load.ledger import Intent, Ledger
from migration_assets.load.rollback import execute_rollback
from migration_assets.load.sales_process import (
    READ_CHUNK,
    PlacementReport,
    SalesProcess,
    SalesProcessLoader,
    Wanted,
    in_process_order,
    read_instances,
    resolve_process,
)
from migration_assets.mapping.files import SHIPPED_SALES_PROCESS
from migration_assets.resources.dataverse import DataverseResource

EMPTY_PROCESS = "00000000-0000-0000-0000-000000000000"
# status option -> (stage, type, label), as status_stages reads them from pipelines.yaml
STATUSES = {
    1: ("Qualify", "active", "Sales / Intro"),
    2: ("Propose", "active", "Sales / Quote"),
    3: ("Close", "won", "Sales / Won"),
    4: ("Negotiate", "active", "Sales / Haggling"),  # not a stage of the process: refused
}


@dataclass
class Placed:
    client: DataverseClient
    process: SalesProcess
    con: duckdb.DuckDBPyConnection
    opps: dict[str, str]  # name -> opportunity id
    report: PlacementReport
    before: dict[str, tuple[str | None, str, int | None]]  # name -> (stage, path, statuscode) before the run
    after: dict[str, tuple[str | None, str, int | None]]
    rolled_back: dict[str, tuple[str | None, str, int | None]]
    fresh_left: list[str]  # instances of the run's own opportunities still there after its rollback


def _state(client: DataverseClient, process: SalesProcess, opps: dict[str, str]) -> dict:
    names = {s.id: s.name for s in process.stages}
    out = {}
    for name, oid in opps.items():
        inst = read_instances(client, process, [oid]).get(oid)
        if inst is None:
            out[name] = (None, "", None)
        else:
            path = "/".join(names[p] for p in inst.path)
            out[name] = (names.get(inst.stage_id or ""), path, inst.statuscode)
    return out


@pytest.fixture(scope="module")
def placed() -> Iterator[Placed]:
    with EmulatorServer(DataverseEmulatorConfig()) as srv:
        u = srv.config.app_users[0]
        client = DataverseResource(
            environment_url=srv.base_url,
            tenant_id=srv.config.tenant_id,
            client_ids=u.client_id,
            client_secrets=u.client_secret,
            authority_host=srv.base_url,
            ca_bundle=srv.ca_bundle,
        ).get_client()
        process = resolve_process(client, SHIPPED_SALES_PROCESS)
        opps = {
            n: client.create("opportunity", {"name": n}) for n in ("intro", "quote", "won", "haggle", "moved")
        }
        opps["bare"] = client.create("opportunity", {"name": "bare", "processid": EMPTY_PROCESS})
        fresh = {n: client.create("opportunity", {"name": n}) for n in ("fresh_intro", "fresh_quote")}
        # An instance a user already moved on before the migration: Develop.
        moved = read_instances(client, process, [opps["moved"]])[opps["moved"]]
        develop = process.stages[1].id
        client.update(
            process.table,
            moved.id,
            {
                "activestageid@odata.bind": f"/processstages({develop})",
                "traversedpath": f"{moved.path[0]},{develop}",
            },
        )
        before = _state(client, process, opps)
        con = duckdb.connect()
        ledger = Ledger(con, "run-1")
        # Two opportunities this same run created (loaded/opportunity ledgered them): their instances go
        # with them on rollback, whether the placing load moved them or not.
        ledger.record_done([Intent("opportunity", oid, f"oppo_{n}", "created") for n, oid in fresh.items()])
        instances = read_instances(client, process)
        fresh_instances = [instances[oid].id for oid in fresh.values()]
        process = in_process_order(client, process, instances)
        wanted = [
            Wanted(opps["intro"], "oppo_intro", 1),
            Wanted(opps["quote"], "oppo_quote", 2),
            Wanted(opps["won"], "oppo_won", 3),
            Wanted(opps["haggle"], "oppo_haggle", 4),
            Wanted(opps["moved"], "oppo_moved", 2),
            Wanted(opps["bare"], "oppo_bare", 3),
            Wanted("0c0c0c0c-0000-4000-8000-000000000000", "oppo_never_loaded", 2),
            Wanted(fresh["fresh_intro"], "oppo_fresh_intro", 1),
            Wanted(fresh["fresh_quote"], "oppo_fresh_quote", 2),
        ]
        loader = SalesProcessLoader(
            client, ledger, process, STATUSES, lambda _: None, frozenset(fresh.values())
        )
        report = loader.load(wanted, instances)
        after = _state(client, process, opps)
        execute_rollback(con, client, ["run-1"], "rollback-1", lambda _: None)
        rolled_back = _state(client, process, opps)
        left = [i for i in fresh_instances if client.get(process.table, i) is not None]
        yield Placed(client, process, con, opps, report, before, after, rolled_back, left)
        client.close()


def test_the_shipped_process_and_its_stages_in_order(placed: Placed) -> None:
    p = placed.process
    assert (p.table, p.opportunity_nav) == ("opportunitysalesprocess", "opportunityid")
    assert [s.name for s in p.stages] == ["Qualify", "Develop", "Propose", "Close"]


def test_each_instance_is_at_the_stage_of_its_status(placed: Placed) -> None:
    assert placed.before["intro"] == ("Qualify", "Qualify", 1)  # applied when the opportunity was created
    assert placed.before["bare"] == (None, "", None)
    assert placed.after["intro"] == ("Qualify", "Qualify", 1)
    assert placed.after["quote"] == ("Propose", "Qualify/Develop/Propose", 1)
    assert placed.after["won"] == ("Close", "Qualify/Develop/Propose/Close", 2)
    assert placed.after["moved"] == ("Propose", "Qualify/Develop/Propose", 1)
    assert placed.after["bare"] == ("Close", "Qualify/Develop/Propose/Close", 2)  # created, then finished
    r = placed.report
    assert (r.placed, r.created, r.unchanged, r.not_loaded) == (5, 1, 2, 1)


def test_a_status_without_a_stage_is_refused_with_its_reason(placed: Placed) -> None:
    assert placed.after["haggle"] == ("Qualify", "Qualify", 1)
    assert len(placed.report.rejected) == 1 and "'Negotiate' is not a stage" in placed.report.rejected[0]
    rows = placed.con.execute(
        "SELECT close_id, message FROM ledger.rejected WHERE run_id = 'run-1'"
    ).fetchall()
    assert [r[0] for r in rows] == ["oppo_haggle"]


def test_every_write_is_ledgered_with_its_before_image(placed: Placed) -> None:
    entries = {e.close_id: e for e in lg.entries(placed.con, ["run-1"], include_rolled_back=True)}
    ours = {c: e for c, e in entries.items() if e.table == placed.process.table}
    assert sorted(ours) == [
        "oppo_bare",
        "oppo_fresh_intro",
        "oppo_fresh_quote",
        "oppo_moved",
        "oppo_quote",
        "oppo_won",
    ]
    assert entries["oppo_bare"].action == "created" and entries["oppo_bare"].before_image is None
    # The instances of the run's own opportunities, moved (quote) or not (intro): created with them.
    assert {ours["oppo_fresh_intro"].action, ours["oppo_fresh_quote"].action} == {"created"}
    moved = entries["oppo_moved"]
    assert moved.action == "updated" and moved.status == "done"
    assert moved.before_image["activestageid@odata.bind"] == f"/processstages({placed.process.stages[1].id})"
    assert moved.before_image["statecode"] == 0


def test_rollback_restores_each_previous_stage_and_deletes_created_instances(placed: Placed) -> None:
    expected = {**placed.before, "bare": (None, "", None)}
    assert placed.rolled_back == expected
    assert placed.rolled_back["moved"] == ("Develop", "Qualify/Develop", 1)
    assert placed.fresh_left == []


def test_instances_read_for_a_few_opportunities_only(placed: Placed) -> None:
    some = [placed.opps["quote"], placed.opps["won"], placed.opps["haggle"]]
    found = read_instances(placed.client, placed.process, some)
    assert sorted(found) == sorted(some)
    assert read_instances(placed.client, placed.process, []) == {}


def test_instances_of_many_opportunities_are_read_in_one_round_trip(placed: Placed) -> None:
    """A delta's changed opportunities can span several id chunks (READ_CHUNK per URL): their instance
    queries go in one `$batch`, and the answer is the same as one query per chunk."""
    made = placed.client.create_multiple(
        "opportunity", [{"name": f"chunked {n}"} for n in range(READ_CHUNK + 5)]
    )
    ids = [i.lower() for i in made.ids if i]
    absent = ["0d0d0d0d-0000-4000-8000-000000000000"]
    before = sum(s["requests"] for s in placed.client.stats().values())
    found = read_instances(placed.client, placed.process, ids + absent)
    assert sum(s["requests"] for s in placed.client.stats().values()) == before + 1
    assert sorted(found) == sorted(ids)
    one_by_one = {oid: read_instances(placed.client, placed.process, [oid])[oid] for oid in ids[:3]}
    assert {oid: found[oid] for oid in ids[:3]} == one_by_one
