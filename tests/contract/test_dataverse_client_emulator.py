"""Contract: the Dataverse client against the real emulator over HTTPS, msal running for real against the
emulator's identity provider. Only the URL, authority, CA bundle and credentials differ from production.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _dv_emulator import emulator_client, post_faults

from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.batch import BatchRequest, ChangeSet
from migration_assets.clients.dataverse.client import (
    DataverseApiError,
    DataverseAuthError,
    DataverseClient,
    odata_bind,
)
from migration_assets.resources.dataverse import DataverseResource

USERS = [
    AppUser("c2d36500-0000-4000-8000-00000000a101", "secret-one", deterministic_id("systemuser", "a101")),
    AppUser("c2d36500-0000-4000-8000-00000000a102", "secret-two", deterministic_id("systemuser", "a102")),
]


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(DataverseEmulatorConfig(app_users=list(USERS))) as srv:
        yield srv


@pytest.fixture(autouse=True)
def calm(server: EmulatorServer) -> Iterator[None]:
    yield
    post_faults(
        server,
        {
            "faults": {
                "error_5xx_rate": 0,
                "drop_rate": 0,
                "drop_after_work_rate": 0,
                "throttle_storm_rate": 0,
                "slow_rate": 0,
            },
            "protection": {"enabled": False},
            "reset_protection": True,
        },
    )


def _client(server: EmulatorServer, users: list[AppUser] = USERS[:1], **kw: Any) -> DataverseClient:
    return emulator_client(server, users, **kw)


def _contacts(n: int, account_id: str | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"contactid": str(uuid.uuid4()), "firstname": f"Ada{i}", "lastname": f"Lovelace{i}"}
        if account_id:
            row["parentcustomerid_account@odata.bind"] = odata_bind("accounts", account_id)
        rows.append(row)
    return rows


def _count(client: DataverseClient, ids: list[str]) -> int:
    return len(client.existing_ids("contact", ids))


def test_resource_with_real_msal_whoami(server: EmulatorServer) -> None:
    res = DataverseResource(
        environment_url=server.base_url,
        tenant_id=server.config.tenant_id,
        client_ids=",".join(u.client_id for u in USERS),
        client_secrets=",".join(u.client_secret for u in USERS),
        authority_host=server.base_url,
        ca_bundle=server.ca_bundle,
    )
    client = res.get_client()
    try:
        me = client.whoami()
        assert me["UserId"] in {u.systemuserid for u in USERS}
        assert client.transport.dop_hint == server.config.dop_hint
    finally:
        client.close()


def test_wrong_secret_is_a_clear_auth_error(server: EmulatorServer) -> None:
    bad = AppUser(USERS[0].client_id, "wrong-secret", USERS[0].systemuserid)
    with _client(server, [bad]) as client, pytest.raises(DataverseAuthError) as info:
        client.whoami()
    assert USERS[0].client_id in str(info.value) and "AADSTS" in str(info.value)
    assert "wrong-secret" not in str(info.value)


def test_expired_token_is_refreshed(server: EmulatorServer) -> None:
    with _client(server) as client:
        client.whoami()
        post_faults(server, {"advance_clock_seconds": server.config.token_lifetime_seconds + 60})
        assert client.whoami()["UserId"] == USERS[0].systemuserid
        assert client.stats()[USERS[0].client_id]["token_refreshes"] == 1


def test_metadata_model(server: EmulatorServer) -> None:
    with _client(server) as client:
        contact = client.metadata("contact")
        assert contact.entity_set_name == "contacts" and contact.primary_id == "contactid"
        assert contact.attribute("lastname").max_length == 50
        assert contact.bind_name("parentcustomerid", "account") == "parentcustomerid_account"
        assert {o.value for o in contact.attribute("statuscode").options} >= {1, 2}
        assert client.metadata("contact") is contact  # cached per client (per run)
        assert client.supports_bulk("CreateMultiple", "contact") is True
        assert client.supports_bulk("CreateMultiple", "phonecall") is False


def test_records_crud_query_and_paging(server: EmulatorServer) -> None:
    with _client(server) as client:
        acc = str(uuid.uuid4())
        assert client.create("account", {"accountid": acc, "name": "Contoso"}) == acc
        assert client.get("account", acc, ["name"])["name"] == "Contoso"
        client.update("account", acc, {"name": "Contoso Ltd"})
        assert client.get("account", acc, ["name"])["name"] == "Contoso Ltd"
        fresh = str(uuid.uuid4())
        client.upsert("account", fresh, {"name": "Upserted"})
        assert client.get("account", fresh, ["name"])["name"] == "Upserted"
        with pytest.raises(DataverseApiError) as info:
            client.update("account", str(uuid.uuid4()), {"name": "nobody"})
        assert info.value.status == 404 and info.value.code == "0x80040217"
        rows = _contacts(23, acc)
        result = client.create_multiple("contact", rows, batch_size=10)
        assert len(result.succeeded) == 23 and result.requests == 3
        pages = list(
            client.query_pages(
                "contact", ["lastname"], filter=f"_parentcustomerid_value eq {acc}", page_size=10
            )
        )
        assert [len(p) for p in pages] == [10, 10, 3]
        assert client.delete("account", fresh) is True
        assert client.delete("account", fresh) is False
        assert client.get("account", fresh) is None


def test_upsert_and_update_multiple(server: EmulatorServer) -> None:
    with _client(server) as client:
        rows = _contacts(30)
        assert len(client.upsert_multiple("contact", rows).succeeded) == 30
        changes = [{"contactid": r["contactid"], "lastname": "Changed"} for r in rows[:5]]
        assert client.update_multiple("contact", changes).rejected == []
        assert client.get("contact", rows[0]["contactid"], ["lastname"])["lastname"] == "Changed"
        again = client.upsert_multiple("contact", rows)  # re-run: idempotent
        assert len(again.succeeded) == 30 and _count(client, [r["contactid"] for r in rows]) == 30


def test_bulk_with_one_bad_row(server: EmulatorServer) -> None:
    with _client(server) as client:
        rows = _contacts(40)
        rows[17]["lastname"] = "x" * 51
        result = client.create_multiple("contact", rows)
        assert [e.index for e in result.rejected] == [17]
        err = result.rejected[0]
        assert err.code == "0x80044331" and "maximum allowed length of '50'" in err.message
        good = [r["contactid"] for i, r in enumerate(rows) if i != 17]
        assert _count(client, good) == 39 and _count(client, [rows[17]["contactid"]]) == 0


def test_batch_fallback_rejects_bad_row(server: EmulatorServer) -> None:
    with _client(server, use_bulk_messages=False) as client:
        rows = _contacts(12)
        rows[4]["lastname"] = "y" * 60
        result = client.create_multiple("contact", rows)
        assert [e.index for e in result.rejected] == [4] and result.rejected[0].code == "0x80044331"
        assert result.requests == 1 and len(result.succeeded) == 11


@pytest.mark.parametrize("bulk", [True, False], ids=["CreateMultiple", "$batch"])
def test_file_bodies_beyond_one_request_go_in_several_sent_at_once(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    import base64

    from migration_assets.clients.dataverse import bulk as bulk_writes

    monkeypatch.setattr(bulk_writes, "MAX_REQUEST_VALUE_BYTES", 300_000)
    bodies = [base64.b64encode(bytes([i]) * 75_000).decode() for i in range(7)]  # 100,000 bytes each
    notes = [
        {
            "annotationid": str(uuid.uuid4()),
            "subject": f"file {i}",
            "filename": f"f{i}.bin",
            "documentbody": b,
        }
        for i, b in enumerate(bodies)
    ]
    notes.insert(3, {"annotationid": str(uuid.uuid4()), "subject": "no file"})
    with _client(server, use_bulk_messages=bulk) as client:
        result = client.create_multiple("annotation", notes)
        assert not result.rejected and len(result.succeeded) == 8
        assert result.requests == 3  # 3 + 3 + 1 bodies of 100,000 bytes under a bound of 300,000
        for note in notes:
            got = client.get("annotation", note["annotationid"], select=["documentbody", "filesize"])
            assert got.get("documentbody") == note.get("documentbody")


def test_a_large_body_is_sent_with_its_length_and_not_held_once_answered(server: EmulatorServer) -> None:
    """httpx keeps a response and its request in a reference cycle that only the cyclic garbage collector
    frees: a large body goes to httpx as a SentBody the client empties once answered, so with the collector
    off no object holds the bytes after the call; it is sent with its Content-Length, as bytes would be."""
    import base64
    import gc
    import inspect
    import json

    from migration_assets.clients.dataverse.transport import RELEASED_BODY_BYTES

    note_id = str(uuid.uuid4())
    document = base64.b64encode(bytes(range(256)) * 6_000).decode()
    note = {"annotationid": note_id, "filename": "f.bin", "documentbody": document}
    body = json.dumps({"Targets": [{**note, "@odata.type": "Microsoft.Dynamics.CRM.annotation"}]}).encode()
    assert len(body) > RELEASED_BODY_BYTES
    sent: list[httpx.Headers] = []
    with _client(server) as client:
        for lane in client.transport.lanes:
            lane.http.event_hooks["request"].append(lambda request: sent.append(request.headers))
        gc.disable()
        try:
            resp = client.transport.request(
                "POST",
                "annotations/Microsoft.Dynamics.CRM.CreateMultiple",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert resp.status_code == 200, resp.text
            del resp
            holders = [r for r in gc.get_referrers(body) if not inspect.isframe(r)]
        finally:
            gc.enable()
        assert holders == []
        assert [(h.get("Content-Length"), h.get("Transfer-Encoding")) for h in sent] == [
            (str(len(body)), None)
        ]
        got = client.get("annotation", note_id, select=["documentbody", "filesize"])
        assert got["documentbody"] == document and got["filesize"] == 256 * 6_000


def test_missing_column_surfaces_real_error_unchanged(server: EmulatorServer) -> None:
    with _client(server) as client:
        rows = _contacts(5)
        for r in rows:
            r["c2d_notyet"] = "v"
        with pytest.raises(DataverseApiError) as bulk_err:
            client.create_multiple("contact", rows)
        with pytest.raises(DataverseApiError) as single_err:
            client.create("contact", _contacts(1)[0] | {"c2d_notyet": "v"})
        assert bulk_err.value.status == single_err.value.status == 400
        assert "c2d_notyet" in bulk_err.value.message and "c2d_notyet" in single_err.value.message


def test_execute_batch_with_changeset(server: EmulatorServer) -> None:
    with _client(server) as client:
        call = str(uuid.uuid4())
        items = [
            ChangeSet(
                [
                    BatchRequest("POST", "phonecalls", {"activityid": call, "subject": "Intro call"}),
                    BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": 2}),
                ]
            ),
            BatchRequest("GET", f"phonecalls({call})?$select=statecode"),
            BatchRequest("DELETE", f"accounts({uuid.uuid4()})"),
        ]
        parts = client.execute_batch(items)
        assert [p.status if p else None for p in parts][:2] == [204, 204]
        assert parts[2] is not None and parts[2].json()["statecode"] == 1
        assert parts[3] is not None and parts[3].status == 404 and parts[3].error[0] == "0x80040217"


def test_win_and_lose_opportunity(server: EmulatorServer) -> None:
    with _client(server) as client:
        acc = client.create("account", {"accountid": str(uuid.uuid4()), "name": "Fabrikam"})
        won, lost = str(uuid.uuid4()), str(uuid.uuid4())
        for opp in (won, lost):
            client.create(
                "opportunity",
                {
                    "opportunityid": opp,
                    "name": "Deal",
                    "customerid_account@odata.bind": odata_bind("accounts", acc),
                },
            )
        client.win_opportunity(won, actualrevenue=1000)
        client.lose_opportunity(lost, status=5)
        client.win_opportunity(won)  # a re-run of a landed action is a no-op
        state = client.get("opportunity", won, ["statecode", "statuscode"]) or {}
        assert (state.get("statecode"), state.get("statuscode")) == (1, 3)
        assert client.get("opportunity", lost, ["statecode"])["statecode"] == 2


def test_metadata_writes_and_alternate_key_upsert(server: EmulatorServer) -> None:
    prefix = "new"  # no solution named: the Default Solution's publisher prefix, as Microsoft's examples use
    col = f"{prefix}_closeid"
    with _client(server) as client:
        client.create_column(
            "account",
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "AttributeType": "String",
                "AttributeTypeName": {"Value": "StringType"},
                "SchemaName": f"{prefix}_CloseId",
                "MaxLength": 100,
                "FormatName": {"Value": "Text"},
                "RequiredLevel": {
                    "Value": "None",
                    "CanBeChanged": True,
                    "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
                },
                "DisplayName": {"LocalizedLabels": [{"Label": "Close Id", "LanguageCode": 1033}]},
            },
        )
        client.publish_xml(["account"])
        assert client.metadata("account").attribute(col).max_length == 100
        client.create_key("account", f"{prefix}_account_closeid_key", [col], "Close Id key")
        assert client.wait_for_key("account", f"{prefix}_account_closeid_key", timeout=30) == "Active"
        new_id = client.upsert("account", {col: "lead_abc"}, {"name": "By key"})
        assert new_id and client.get("account", {col: "lead_abc"}, ["name"])["name"] == "By key"
        client.upsert("account", {col: "lead_abc"}, {"name": "By key, again"})
        rows = list(client.query("account", [col], filter=f"{col} eq 'lead_abc'"))
        assert len(rows) == 1


def test_429_storm_with_several_users(server: EmulatorServer) -> None:
    post_faults(server, {"faults": {"seed": 7, "throttle_storm_rate": 0.3}})
    with _client(server, USERS) as client:
        rows = _contacts(100)
        result = client.create_multiple("contact", rows, batch_size=20)
        stats = client.stats()
    assert result.rejected == [] and len(result.succeeded) == 100
    assert sum(s["throttled"] for s in stats.values()) > 0  # the storm hit (metadata reads included)
    assert all(s["requests"] > 0 for s in stats.values())
    with _client(server) as check:
        assert _count(check, [r["contactid"] for r in rows]) == 100


def test_service_protection_limits_with_one_user(server: EmulatorServer) -> None:
    post_faults(
        server,
        {"protection": {"enabled": True, "window_seconds": 1.0, "max_requests": 4}, "reset_protection": True},
    )
    with _client(server) as client:
        rows = _contacts(120)
        result = client.create_multiple("contact", rows, batch_size=10)  # 12 requests, 4 per second allowed
    assert result.rejected == [] and len(result.succeeded) == 120 and result.throttled > 0


def test_5xx_and_dropped_connections_mid_batch(server: EmulatorServer) -> None:
    post_faults(
        server, {"faults": {"seed": 3, "error_5xx_rate": 0.15, "drop_rate": 0.1, "drop_after_work_rate": 0.2}}
    )
    with _client(server, USERS) as client:
        rows = _contacts(400)
        result = client.create_multiple("contact", rows, batch_size=25)
        assert result.rejected == [] and len(result.succeeded) == 400 and result.retries > 0
        ups = client.upsert_multiple(
            "contact", [{**r, "firstname": "Again"} for r in rows[:100]], batch_size=25
        )
        assert ups.rejected == []
    post_faults(server, {"faults": {"error_5xx_rate": 0, "drop_rate": 0, "drop_after_work_rate": 0}})
    with _client(server) as check:
        assert _count(check, [r["contactid"] for r in rows]) == 400  # each exactly once (ids are unique)


def test_short_token_lifetime_is_refreshed_by_msal() -> None:
    config = DataverseEmulatorConfig(app_users=[USERS[0]], token_lifetime_seconds=1)
    with EmulatorServer(config) as srv, _client(srv) as client:
        assert client.whoami()["UserId"] == USERS[0].systemuserid
        time.sleep(1.5)  # the token is now expired on the server; msal (or the 401 path) gets a new one
        assert client.whoami()["UserId"] == USERS[0].systemuserid


def test_table_without_bulk_messages_uses_batch(server: EmulatorServer) -> None:
    with _client(server) as client:
        assert client.supports_bulk("CreateMultiple", "task") is False
        tasks = [{"activityid": str(uuid.uuid4()), "subject": f"Follow up {i}"} for i in range(15)]
        tasks[9]["subject"] = "s" * 201
        result = client.create_multiple("task", tasks)
        assert [e.index for e in result.rejected] == [9] and result.rejected[0].code == "0x80044331"
        assert len(result.succeeded) == 14 and result.requests == 1
        again = client.create_multiple("task", tasks[:5])  # re-run: ids exist, nothing created twice
        assert sorted(again.existing) == [0, 1, 2, 3, 4]


def test_upsert_multiple_by_alternate_key(server: EmulatorServer) -> None:
    prefix = "new"  # no solution named: the Default Solution's publisher prefix
    col, key = f"{prefix}_legacyref", f"{prefix}_contact_legacyref_key"
    with _client(server) as client:
        client.create_column(
            "contact",
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "AttributeType": "String",
                "AttributeTypeName": {"Value": "StringType"},
                "SchemaName": f"{prefix}_LegacyRef",
                "MaxLength": 50,
                "RequiredLevel": {"Value": "None"},
                "DisplayName": {"LocalizedLabels": [{"Label": "Legacy ref", "LanguageCode": 1033}]},
            },
        )
        client.create_key("contact", key, [col], "Legacy ref key")
        client.wait_for_key("contact", key, timeout=30)
        rows = [{col: f"ref-{i}", "lastname": f"Key{i}"} for i in range(8)]
        assert client.upsert_multiple("contact", rows, key_columns=[col]).rejected == []
        rows[0]["lastname"] = "Updated"
        assert client.upsert_multiple("contact", rows, key_columns=[col]).rejected == []
        found = list(client.query("contact", ["lastname", col], filter=f"startswith({col},'ref-')"))
        assert len(found) == 8 and {"Updated"} <= {r["lastname"] for r in found}


def test_dropped_connections_mid_dollar_batch(server: EmulatorServer) -> None:
    """$batch path (no bulk messages): a batch that landed before its connection dropped is re-sent; the
    creates already there answer 412 0x80040237 per part and count as existing, nothing is created twice."""
    post_faults(server, {"faults": {"seed": 11, "drop_after_work_rate": 0.35, "error_5xx_rate": 0.1}})
    with _client(server, use_bulk_messages=False) as client:
        rows = _contacts(120)
        result = client.create_multiple("contact", rows, batch_size=20)
        assert result.rejected == [] and len(result.succeeded) == 120 and result.retries > 0
    post_faults(server, {"faults": {"drop_after_work_rate": 0, "error_5xx_rate": 0}})
    with _client(server) as check:
        assert _count(check, [r["contactid"] for r in rows]) == 120


def test_requests_sent_one_at_a_time_spread_over_every_application_user(server: EmulatorServer) -> None:
    """Each user has its own service-protection budget: sequential requests use them all, not the first
    user's alone until a 429 pauses it."""
    with _client(server, USERS) as client:
        for _ in range(10):
            client.whoami()
        sent = sorted(s["requests"] for s in client.stats().values())
    assert sent == [5, 5], sent
