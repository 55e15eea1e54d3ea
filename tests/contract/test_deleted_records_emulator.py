"""Contract: records whose Close source is gone, deactivated or deleted through the ledger against the
Dataverse emulator (the loader's own calls: In-queries, `$batch` PATCH/DELETE, LoseOpportunity), and a
rollback of that run putting everything back: states restored, deleted records re-created under their ids
with their values, lookups, activity parties and file bodies."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.load import ledger as lg
from migration_assets.load.deletion_apply import DeletionApplier, deletion_close_id, inactive_state
from migration_assets.load.deletions import LoadedTable, plan_deletions
from migration_assets.load.ledger import Intent, Ledger
from migration_assets.load.rollback import execute_rollback
from migration_assets.mapping.ids import id_for_key, opportunityclose_id
from migration_assets.resources.dataverse import DataverseResource

A, C, L, OPP, P, N = (id_for_key(f"contract-deleted:{k}") for k in "aclopn")
BODY = b"%PDF-1.4 the original file"
TABLES = [
    LoadedTable("account", "account", "accountid", (("leads", "id"),)),
    LoadedTable("contact", "contact", "contactid", (("contacts", "id"),)),
    LoadedTable("lead", "lead", "leadid", (("leads", "id"),)),
    LoadedTable("opportunity", "opportunity", "opportunityid", (("opportunities", "id"),)),
    LoadedTable("phonecall", "phonecall", "activityid", (("calls", "id"),)),
    LoadedTable("annotation", "annotation", "annotationid", (("notes", "id"),)),
]
STAGED_COLUMNS = {
    "account": ["accountid", "name", "telephone1", "_close_id", "_statecode", "_statuscode"],
    "contact": ["contactid", "firstname", "lastname", "parentcustomerid_account@odata.bind", "_close_id"],
    "lead": ["leadid", "subject", "lastname", "_close_id"],
    "opportunity": ["opportunityid", "name", "customerid_account@odata.bind", "_close_id"],
    "phonecall": [
        "activityid",
        "subject",
        "regardingobjectid_contact_phonecall@odata.bind",
        "_close_id",
        "_parties",
    ],
    "annotation": [
        "annotationid",
        "subject",
        "filename",
        "mimetype",
        # A note's parent is one of several tables: the image must bind it through the right one only.
        "objectid_lead@odata.bind",
        "objectid_contact@odata.bind",
        "objectid_opportunity@odata.bind",
        "_close_id",
    ],
}
COMPARED = {
    "account": ["name", "telephone1", "statecode", "statuscode"],
    "contact": ["firstname", "lastname", "_parentcustomerid_value", "statecode", "statuscode"],
    "lead": ["subject", "lastname", "statecode", "statuscode"],
    # A Lose also sets the close date: a rollback puts it back.
    "opportunity": ["name", "_customerid_value", "statecode", "statuscode", "actualclosedate", "actualvalue"],
    "phonecall": ["subject", "_regardingobjectid_value", "statecode", "statuscode"],
    "annotation": ["subject", "filename", "mimetype", "documentbody", "_objectid_value", "createdon"],
}
IDS = {"account": A, "contact": C, "lead": L, "opportunity": OPP, "phonecall": P, "annotation": N}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(DataverseEmulatorConfig()) as srv:
        yield srv


def _client(server: EmulatorServer) -> DataverseClient:
    u = server.config.app_users[0]
    return DataverseResource(
        environment_url=server.base_url,
        tenant_id=server.config.tenant_id,
        client_ids=u.client_id,
        client_secrets=u.client_secret,
        authority_host=server.base_url,
        ca_bundle=server.ca_bundle,
    ).get_client()


def _seed(client: DataverseClient) -> None:
    """Records an earlier migration run loaded (and their ledger rows)."""
    client.create("account", {"accountid": A, "name": "Acme", "telephone1": "+1 555 0100"})
    client.create(
        "contact",
        {
            "contactid": C,
            "firstname": "Ada",
            "lastname": "L",
            "parentcustomerid_account@odata.bind": f"/accounts({A})",
        },
    )
    client.create("lead", {"leadid": L, "subject": "Acme deal", "lastname": "L"})
    client.create(
        "opportunity",
        {"opportunityid": OPP, "name": "Big", "customerid_account@odata.bind": f"/accounts({A})"},
    )
    client.create(
        "phonecall",
        {
            "activityid": P,
            "subject": "Call",
            "regardingobjectid_contact_phonecall@odata.bind": f"/contacts({C})",
            "phonecall_activity_parties": [
                {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({C})"}
            ],
        },
    )
    client.update("phonecall", P, {"statecode": 1, "statuscode": 2})  # completed, as the loader leaves calls
    client.create(
        "annotation",
        {
            "annotationid": N,
            "subject": "Contract",
            "filename": "c.pdf",
            "mimetype": "application/pdf",
            "documentbody": base64.b64encode(BODY).decode("ascii"),
            "overriddencreatedon": "2021-03-04T05:06:07Z",  # migrated: a re-create keeps this date
            "objectid_contact@odata.bind": f"/contacts({C})",
        },
    )


def _state(client: DataverseClient) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for t in IDS:
        rec = client.get(t, IDS[t], COMPARED[t])
        out[t] = None if rec is None else {c: rec.get(c) for c in COMPARED[t]}
    return out


def _warehouse(client: DataverseClient) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("CREATE SCHEMA staged")
    con.execute("CREATE SCHEMA close")
    for t in TABLES:  # every staged table lost its row; Close deleted every source
        cols = ", ".join(f'"{c}" VARCHAR' for c in STAGED_COLUMNS[t.table])
        con.execute(f"CREATE TABLE staged.{t.staged} ({cols})")
        con.execute(f"CREATE TABLE IF NOT EXISTS close.{t.sources[0][0]} (id VARCHAR)")
    Ledger(con, "migrate-1").record_done([Intent(t, IDS[t], f"close_{t}", "created") for t in IDS])
    return con


@pytest.mark.parametrize("mode", ["deactivate", "delete"])
def test_deleted_sources_are_removed_through_the_ledger_and_rolled_back(
    server: EmulatorServer, mode: str
) -> None:
    client = _client(server)
    try:
        for t in reversed(list(IDS)):  # a clean slate per mode (children first)
            client.delete(t, IDS[t])
        _seed(client)
        before = _state(client)
        con = _warehouse(client)
        plan = plan_deletions(con, TABLES)
        assert [c.table for c in plan.gone] == [
            "annotation",
            "phonecall",
            "opportunity",
            "lead",
            "contact",
            "account",
        ]
        ledger = Ledger(con, "delta-1", kind="delta")
        report = DeletionApplier(client, ledger, mode, STAGED_COLUMNS).apply(plan)
        assert report.failed == []
        after = _state(client)
        written = {(e.table, e.action) for e in lg.entries(con, ["delta-1"])}
        if mode == "delete":
            assert report.deleted == 6 and all(v is None for v in after.values())
            assert written == {(t, "deleted") for t in IDS}
            image = next(e for e in lg.entries(con, ["delta-1"]) if e.table == "phonecall").before_image or {}
            assert image["phonecall_activity_parties"][0]["partyid_contact@odata.bind"] == f"/contacts({C})"
            note = next(e for e in lg.entries(con, ["delta-1"]) if e.table == "annotation").before_image or {}
            assert {k: v for k, v in note.items() if k.startswith("objectid_")} == {
                "objectid_contact@odata.bind": f"/contacts({C})"
            }
        else:
            assert report.deactivated == 5 and report.deleted == 1  # an annotation has no state
            assert after["annotation"] is None
            for t in ("account", "contact", "lead", "opportunity", "phonecall"):
                want = inactive_state(client.metadata(t))
                assert (after[t] or {}).get("statecode") == (want or (None,))[0], t
            assert (after["opportunity"] or {}).get("statuscode") == 4  # Lost: Canceled
            assert ("opportunityclose", "created") in written
            assert client.get("opportunityclose", deletion_close_id(OPP), ["activityid"]) is not None
        # Planned again, nothing is left to do: the ledger says it was done.
        assert plan_deletions(con, TABLES).gone == []

        rollback = execute_rollback(con, client, ["delta-1"], "rollback-1", log=lambda _m: None)
        assert rollback.ok, rollback.failed
        assert _state(client) == before
        parties = client.query(
            "activityparty",
            select=["_partyid_value", "participationtypemask"],
            filter=f"_activityid_value eq {P}",
        )
        assert [(str(p["_partyid_value"]).lower(), p["participationtypemask"]) for p in parties] == [(C, 2)]
        assert client.get("opportunityclose", deletion_close_id(OPP), ["activityid"]) is None
        # The rollback is idempotent, and the records are candidates again for the next delta.
        assert execute_rollback(con, client, ["delta-1"], "rollback-2", log=lambda _m: None).ok
        assert _state(client) == before
        assert len(plan_deletions(con, TABLES).gone) == 6
    finally:
        client.close()


def test_a_won_opportunity_is_left_as_it_is_or_deleted_and_recreated_won_with_its_dates(
    server: EmulatorServer,
) -> None:
    won = id_for_key("contract-deleted:won")
    columns = ["name", "statecode", "statuscode", "actualclosedate", "actualvalue"]
    client = _client(server)
    try:
        client.delete("opportunity", won)
        client.create("opportunity", {"opportunityid": won, "name": "Won deal"})
        client.win_opportunity(
            won, 3, activityid=opportunityclose_id(won), actualend="2022-05-06", actualrevenue=1234
        )
        before = client.get("opportunity", won, columns)
        assert before and before["statecode"] == 1 and before["actualclosedate"] == "2022-05-06"
        con = duckdb.connect(":memory:")
        con.execute("CREATE SCHEMA staged")
        con.execute("CREATE SCHEMA close")
        con.execute(
            'CREATE TABLE staged.opportunity (opportunityid VARCHAR, name VARCHAR, "_close_id" VARCHAR)'
        )
        con.execute("CREATE TABLE close.opportunities (id VARCHAR)")
        Ledger(con, "migrate-1").record_done([Intent("opportunity", won, "oppo_won", "created")])
        tables = [t for t in TABLES if t.table == "opportunity"]
        staged = {"opportunity": ["opportunityid", "name", "_close_id"]}

        # Deactivate: a won deal is already inactive; ledgered as such, nothing sent, nothing to undo.
        report = DeletionApplier(client, Ledger(con, "delta-1", kind="delta"), "deactivate", staged).apply(
            plan_deletions(con, tables)
        )
        assert (report.already_inactive, report.deactivated) == (1, 0)
        assert client.get("opportunity", won, columns) == before
        assert execute_rollback(con, client, ["delta-1"], "rollback-1", log=lambda _m: None).ok
        assert client.get("opportunity", won, columns) == before

        # Delete, then roll back: re-created under its id, won again on its own date, its opportunityclose
        # under the id the load gave it.
        report = DeletionApplier(client, Ledger(con, "delta-2", kind="delta"), "delete", staged).apply(
            plan_deletions(con, tables)
        )
        assert report.deleted == 1 and client.get("opportunity", won, columns) is None
        rollback = execute_rollback(con, client, ["delta-2"], "rollback-2", log=lambda _m: None)
        assert rollback.ok and rollback.recreated == 1, rollback.failed
        after = client.get("opportunity", won, columns)
        assert {c: (after or {}).get(c) for c in columns} == {c: before.get(c) for c in columns}
        assert client.get("opportunityclose", opportunityclose_id(won), ["activityid"]) is not None
    finally:
        client.close()
