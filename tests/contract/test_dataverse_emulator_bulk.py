"""DV-CORE contract: CreateMultiple / UpdateMultiple / UpsertMultiple, sdkmessagefilters, store transactions (§4)."""

from __future__ import annotations

import threading

import pytest
from test_dataverse_emulator_support import Dv, core_config, error_of, new_id, string_column

T_ACCOUNT = "Microsoft.Dynamics.CRM.account"


@pytest.fixture
def dv() -> Dv:
    dv = Dv()
    dv.use_solution()  # the c2d_ names below belong to that publisher
    return dv


def _accounts(n: int, **extra: object) -> list[dict]:
    return [{"@odata.type": T_ACCOUNT, "accountid": new_id(), "name": f"A{i}", **extra} for i in range(n)]


def test_create_multiple_returns_ids_in_order(dv: Dv) -> None:
    targets = _accounts(3) + [{"@odata.type": T_ACCOUNT, "name": "no id"}]
    resp = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets})
    assert resp.status_code == 200
    body = resp.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    assert body["Ids"][:3] == [t["accountid"] for t in targets[:3]]
    assert len(body["Ids"]) == 4 and dv.row("account", body["Ids"][3])["name"] == "no id"


def test_create_multiple_is_all_or_nothing(dv: Dv) -> None:
    good = _accounts(3)
    bad = {"@odata.type": T_ACCOUNT, "name": "x" * 161}
    status, code, _ = error_of(
        dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": [*good, bad]})
    )
    assert (status, code) == (400, "0x80044331")
    assert dv.env.store.table("account") == {}
    # A duplicate id inside the request also rolls everything back.
    dup = _accounts(2)
    dup.append(dict(dup[0]))
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": dup}))[:2] == (
        412,
        "0x80040237",
    )
    assert dv.env.store.table("account") == {}


def test_bulk_requires_odata_type(dv: Dv) -> None:
    status, code, message = error_of(
        dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": [{"name": "x"}]})
    )
    assert (status, code) == (400, "0x80040203") and "@odata.type" in message
    wrong = [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "x"}]
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": wrong}))[0] == 400
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"targets": []}))[0] == 400
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.DeleteMultiple", {"Targets": []}))[0] == 404


def test_update_multiple(dv: Dv) -> None:
    ids = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": _accounts(2)}).json()["Ids"]
    targets = [
        {"@odata.type": T_ACCOUNT, "accountid": ids[0], "name": "first"},
        {"@odata.type": T_ACCOUNT, "accountid": ids[1], "name": "second"},
        {"@odata.type": T_ACCOUNT, "accountid": ids[0], "name": "ignored duplicate"},
    ]
    assert dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple", {"Targets": targets}).status_code == 204
    assert [dv.row("account", i)["name"] for i in ids] == ["first", "second"]
    missing = [
        {"@odata.type": T_ACCOUNT, "accountid": ids[0], "name": "x"},
        {"@odata.type": T_ACCOUNT, "accountid": new_id(), "name": "y"},
    ]
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple", {"Targets": missing}))[:2] == (
        404,
        "0x80040217",
    )
    assert dv.row("account", ids[0])["name"] == "first"  # rolled back
    assert (
        error_of(
            dv.post(
                "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                {"Targets": [{"@odata.type": T_ACCOUNT, "name": "x"}]},
            )
        )[0]
        == 400
    )


def _with_closeid_key(dv: Dv) -> None:
    assert dv.add_column("account", string_column("c2d_CloseId", 100)).status_code == 204
    resp = dv.post(
        "EntityDefinitions(LogicalName='account')/Keys",
        {"SchemaName": "c2d_account_closeid", "KeyAttributes": ["c2d_closeid"]},
    )
    assert resp.status_code == 204


def test_upsert_multiple_by_alternate_key_and_id(dv: Dv) -> None:
    _with_closeid_key(dv)
    existing = dv.create("accounts", {"name": "old", "c2d_closeid": "lead_1"})
    rid = new_id()
    targets = [
        {"@odata.type": T_ACCOUNT, "@odata.id": "accounts(c2d_closeid='lead_1')", "name": "updated"},
        {"@odata.type": T_ACCOUNT, "@odata.id": "accounts(c2d_closeid='lead_2')", "name": "created"},
        {"@odata.type": T_ACCOUNT, "@odata.id": f"accounts({rid})", "name": "by id"},
    ]
    assert dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": targets}).status_code == 204
    assert dv.row("account", existing)["name"] == "updated"
    created = [r for r in dv.env.store.table("account").values() if r.get("c2d_closeid") == "lead_2"]
    assert len(created) == 1 and created[0]["name"] == "created"
    assert dv.row("account", rid)["name"] == "by id"
    dup = [targets[0], dict(targets[0])]
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": dup}))[:2] == (
        400,
        "0x80040203",
    )
    # A key violation inside the request rolls back every upsert.
    clash = [
        {"@odata.type": T_ACCOUNT, "@odata.id": "accounts(c2d_closeid='lead_3')", "name": "new"},
        {"@odata.type": T_ACCOUNT, "@odata.id": f"accounts({rid})", "c2d_closeid": "lead_1"},
    ]
    assert error_of(dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": clash}))[:2] == (
        412,
        "0x80060892",
    )
    assert not [r for r in dv.env.store.table("account").values() if r.get("c2d_closeid") == "lead_3"]


def test_activity_tables_do_not_support_bulk(dv: Dv) -> None:
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.task", "subject": "t"}]
    status, code, message = error_of(
        dv.post("tasks/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets})
    )
    assert (status, code) == (400, "0x80040203") and "sdkmessagefilters" in message
    configured = Dv(core_config(bulk_message_tables=["task"]))
    assert (
        configured.post("tasks/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets}).status_code
        == 200
    )
    assert (
        error_of(
            configured.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": _accounts(1)})
        )[0]
        == 400
    )


def test_sdkmessagefilters_probe(dv: Dv) -> None:
    def probe(message: str, table: str) -> list:
        url = (
            "sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq @message and "
            f"primaryobjecttypecode eq @table&@message='{message}'&@table='{table}'"
        )
        resp = dv.get(url)
        assert resp.status_code == 200, resp.text
        return resp.json()["value"]

    for table in ("account", "contact", "lead", "opportunity", "annotation"):
        for message in ("CreateMultiple", "UpdateMultiple", "UpsertMultiple"):
            rows = probe(message, table)
            assert len(rows) == 1 and set(rows[0]) == {"sdkmessagefilterid"}
    for table in ("task", "phonecall", "email", "appointment"):
        assert probe("CreateMultiple", table) == []
        assert len(probe("Create", table)) == 1
    assert probe("CreateMultiple", "nosuchtable") == []
    assert error_of(dv.get("sdkmessagefilters?$filter=sdkmessageid/name eq @message"))[0] == 400


def test_store_transaction_rolls_back_and_nests(dv: Dv) -> None:
    store, ent = dv.env.store, dv.env.metadata.tables["account"]
    keep = dv.create("accounts", {"name": "keep"})
    with pytest.raises(RuntimeError):
        with store.transaction():
            dv.patch(f"accounts({keep})", {"name": "changed"})
            dv.create("accounts", {"name": "temp"})
            with store.transaction():
                dv.create("accounts", {"name": "inner"})
            raise RuntimeError("changeset part failed")
    assert [r["name"] for r in store.table("account").values()] == ["keep"]
    # An inner failure that is caught rolls back only the inner writes.
    with store.transaction():
        dv.create("accounts", {"name": "outer"})
        with pytest.raises(ValueError):
            with store.transaction():
                store.put(ent, "00000000-0000-0000-0000-000000000001", {"accountid": "x", "name": "inner"})
                raise ValueError
    assert sorted(r["name"] for r in store.table("account").values()) == ["keep", "outer"]


def test_store_is_thread_safe(dv: Dv) -> None:
    ent, store = dv.env.metadata.tables["account"], dv.env.store
    caller = dv.env.caller(None)

    def worker(n: int) -> None:
        for i in range(200):
            dv.app.state.api.writer.create(ent, {"name": f"t{n}-{i}"}, caller)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.table("account")) == 800
    versions = [r["versionnumber"] for r in store.table("account").values()]
    assert len(set(versions)) == 800


def test_bulk_delete_runs_as_a_completed_system_job(dv: Dv) -> None:
    ids = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": _accounts(4)}).json()["Ids"]
    body = {
        "JobName": "Bulk delete account records",
        "SendEmailNotification": False,
        "ToRecipients": [],
        "CCRecipients": [],
        "RecurrencePattern": "",
        "StartDateTime": "2025-01-01T00:00:00Z",
        "QuerySet": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.QueryExpression",
                "EntityName": "account",
                "ColumnSet": {
                    "@odata.type": "Microsoft.Dynamics.CRM.ColumnSet",
                    "AllColumns": False,
                    "Columns": [],
                },
                "Criteria": {
                    "@odata.type": "Microsoft.Dynamics.CRM.FilterExpression",
                    "FilterOperator": "And",
                    "Conditions": [
                        {
                            "@odata.type": "Microsoft.Dynamics.CRM.ConditionExpression",
                            "AttributeName": "accountid",
                            "Operator": "In",
                            "Values": [{"Value": i.upper(), "Type": "System.Guid"} for i in ids[:3]],
                        }
                    ],
                },
            }
        ],
    }
    resp = dv.post("BulkDelete", body)
    assert resp.status_code == 200
    job = resp.json()["JobId"]
    assert list(dv.env.store.table("account")) == [ids[3]]
    status = dv.get(f"asyncoperations({job})?$select=statecode,statuscode,message").json()
    assert (status["statecode"], status["statuscode"], status["message"]) == (3, 30, "3 records deleted.")
    bad = {
        "QuerySet": [
            {
                "EntityName": "account",
                "Criteria": {"Conditions": [{"AttributeName": "name", "Operator": "Like", "Values": []}]},
            }
        ]
    }
    assert error_of(dv.post("BulkDelete", bad))[0] == 400
    assert error_of(dv.post("BulkDelete", {"QuerySet": [{"EntityName": "nosuch"}]}))[0] == 400
