"""DV-CORE contract: record create / retrieve / query / paging / update / upsert / delete (reference §2)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from test_dataverse_emulator_support import APP_USER, Dv, error_of, new_id


@pytest.fixture
def dv() -> Dv:
    return Dv()


def test_create_returns_204_with_entity_id_and_odata_headers(dv: Dv) -> None:
    resp = dv.post(
        "accounts", {"name": "Contoso", "revenue": 5000000, "creditonhold": False, "accountcategorycode": 1}
    )
    assert resp.status_code == 204
    assert resp.headers["OData-Version"] == "4.0"
    assert resp.headers["REQ_ID"]
    entity_id = resp.headers["OData-EntityId"]
    assert entity_id.startswith("https://dv.test/api/data/v9.2/accounts(")
    record_id = entity_id.rsplit("(", 1)[1][:-1]
    row = dv.row("account", record_id)
    assert row["name"] == "Contoso" and row["revenue"] == 5000000.0
    assert row["ownerid"] == ["systemuser", APP_USER.systemuserid]
    assert row["statecode"] == 0 and row["statuscode"] == 1


def test_create_with_client_id_and_representation(dv: Dv) -> None:
    rid = new_id()
    resp = dv.post(
        "contacts?$select=fullname,firstname",
        {"contactid": rid, "firstname": "Ada", "lastname": "Lovelace"},
        Prefer="return=representation",
    )
    assert resp.status_code == 201
    assert resp.headers["Preference-Applied"] == "return=representation"
    assert "OData-EntityId" not in resp.headers
    assert resp.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    body = resp.json()
    assert (
        body["@odata.context"]
        == "https://dv.test/api/data/v9.2/$metadata#contacts(fullname,firstname)/$entity"
    )
    assert body["@odata.etag"].startswith('W/"')
    assert body == {**body, "contactid": rid, "fullname": "Ada Lovelace", "firstname": "Ada"}
    assert set(body) == {"@odata.context", "@odata.etag", "contactid", "fullname", "firstname"}


def test_duplicate_primary_key_is_412(dv: Dv) -> None:
    rid = new_id()
    dv.create("accounts", {"accountid": rid, "name": "A"})
    status, code, message = error_of(dv.post("accounts", {"accountid": rid, "name": "B"}))
    assert (status, code) == (412, "0x80040237")
    assert "duplicate key" in message


def test_retrieve_lookup_value_and_annotations(dv: Dv) -> None:
    acct = dv.create("accounts", {"name": "Contoso"})
    contact = dv.create(
        "contacts", {"lastname": "Smith", "parentcustomerid_account@odata.bind": f"/accounts({acct})"}
    )
    resp = dv.get(
        f"contacts({contact})?$select=fullname,_parentcustomerid_value",
        Prefer='odata.include-annotations="*"',
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["contactid"] == contact
    assert body["_parentcustomerid_value"] == acct
    assert body["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert (
        body["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"]
        == "parentcustomerid_account"
    )
    assert body["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Contoso"


def test_retrieve_missing_record_is_404(dv: Dv) -> None:
    rid = new_id()
    assert error_of(dv.get(f"accounts({rid})")) == (
        404,
        "0x80040217",
        f"Entity 'account' With Id = {rid} Does Not Exist",
    )


def test_names_are_case_sensitive(dv: Dv) -> None:
    assert error_of(dv.get("Accounts")) == (
        404,
        "0x8006088a",
        "Resource not found for the segment 'Accounts'.",
    )
    assert error_of(dv.get("accounts?$select=Name")) == (
        400,
        "0x0",
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
    )
    assert error_of(dv.post("accounts", {"Name": "x"})) == (
        400,
        "0x80060888",
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
    )
    # A lookup cannot be selected by its logical name, only as _x_value.
    assert error_of(dv.get("contacts?$select=parentcustomerid"))[1] == "0x0"
    status, code, _ = error_of(dv.post("WhoAmI"))
    assert (status, code) == (404, "")


def test_whoami(dv: Dv) -> None:
    for path in ("WhoAmI", "WhoAmI()"):
        body = dv.get(path).json()
        assert body["UserId"] == APP_USER.systemuserid
        assert body["BusinessUnitId"] == dv.env.businessunit_id
        assert body["OrganizationId"] == dv.env.organization_id
        assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")


def _seed_accounts(dv: Dv, n: int) -> None:
    for i in range(n):
        dv.create(
            "accounts",
            {"name": f"Acct {i:03d}", "numberofemployees": i, "telephone1": "555" if i % 2 else None},
        )


def test_filter_operators(dv: Dv) -> None:
    _seed_accounts(dv, 10)

    def names(flt: str) -> list[str]:
        resp = dv.get(f"accounts?$select=name&$filter={flt}&$orderby=name")
        assert resp.status_code == 200, resp.text
        return [r["name"] for r in resp.json()["value"]]

    assert names("numberofemployees eq 3") == ["Acct 003"]
    assert len(names("numberofemployees ne 3")) == 9
    assert names("numberofemployees gt 7") == ["Acct 008", "Acct 009"]
    assert names("numberofemployees ge 8 and numberofemployees le 8") == ["Acct 008"]
    assert names("numberofemployees lt 1 or numberofemployees eq 9") == ["Acct 000", "Acct 009"]
    assert names("contains(name,'cct 00') and startswith(name,'ACCT') and numberofemployees lt 2") == [
        "Acct 000",
        "Acct 001",
    ]
    assert names("endswith(name,'7')") == ["Acct 007"]
    assert names("name eq 'acct 004'") == ["Acct 004"]  # string comparison is case-insensitive, as in SQL
    assert len(names("telephone1 eq null")) == 5
    assert names("not (numberofemployees lt 9)") == ["Acct 009"]
    assert names("Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=['1','2'])") == [
        "Acct 001",
        "Acct 002",
    ]
    assert error_of(dv.get("accounts?$filter=nosuch eq 1"))[:2] == (400, "0x0")


def test_orderby_top_count(dv: Dv) -> None:
    _seed_accounts(dv, 6)
    body = dv.get("accounts?$select=name&$orderby=numberofemployees desc&$top=2&$count=true").json()
    assert [r["name"] for r in body["value"]] == ["Acct 005", "Acct 004"]
    assert body["@odata.count"] == 6
    assert "@odata.nextLink" not in body


def test_paging_with_maxpagesize_and_skiptoken(dv: Dv) -> None:
    _seed_accounts(dv, 7)
    resp = dv.get("accounts?$select=name&$orderby=name", Prefer="odata.maxpagesize=3")
    assert resp.headers["Preference-Applied"] == "odata.maxpagesize=3"
    seen, pages = [], 0
    body = resp.json()
    while True:
        pages += 1
        seen += [r["name"] for r in body["value"]]
        link = body.get("@odata.nextLink")
        if not link:
            break
        assert "$skiptoken=" in link and "$skip=" not in link
        parts = urlsplit(link)
        body = dv.client.get(f"{parts.path}?{parts.query}", headers={"Prefer": "odata.maxpagesize=3"}).json()
    assert pages == 3
    assert seen == [f"Acct {i:03d}" for i in range(7)]
    assert error_of(dv.get("accounts?$skip=3"))[:2] == (400, "0x0")
    assert error_of(dv.get("accounts?$skiptoken=garbage"))[0] == 400


def test_update_and_etag_concurrency(dv: Dv) -> None:
    rid = dv.create("accounts", {"name": "Old"})
    etag = dv.get(f"accounts({rid})?$select=name").json()["@odata.etag"]
    assert dv.patch(f"accounts({rid})", {"name": "New"}, **{"If-Match": etag}).status_code == 204
    assert dv.row("account", rid)["name"] == "New"
    status, code, message = error_of(dv.patch(f"accounts({rid})", {"name": "Stale"}, **{"If-Match": etag}))
    assert (status, code) == (412, "0x80060882")
    assert message == "The version of the existing record doesn't match the RowVersion property provided."
    resp = dv.patch(f"accounts({rid})?$select=name", {"name": "Newer"}, Prefer="return=representation")
    assert resp.status_code == 200 and resp.json()["name"] == "Newer"


def test_patch_upsert_semantics(dv: Dv) -> None:
    rid = new_id()
    # No If-Match: PATCH creates a missing record with the given id.
    resp = dv.patch(f"accounts({rid})", {"name": "Created by PATCH"})
    assert resp.status_code == 204 and resp.headers["OData-EntityId"].endswith(f"accounts({rid})")
    assert dv.row("account", rid)["name"] == "Created by PATCH"
    # If-None-Match: * never updates.
    assert error_of(dv.patch(f"accounts({rid})", {"name": "x"}, **{"If-None-Match": "*"})) == (
        412,
        "0x80040237",
        "A record with matching key values already exists.",
    )
    # If-Match: * never creates.
    other = new_id()
    assert error_of(dv.patch(f"accounts({other})", {"name": "x"}, **{"If-Match": "*"}))[:2] == (
        404,
        "0x80040217",
    )
    assert dv.row("account", other) is None
    # A header value of "null" (sent by many clients) is not "*".
    assert dv.patch(f"accounts({rid})", {"name": "Updated"}, **{"If-None-Match": "null"}).status_code == 204


def test_put_and_delete_single_column(dv: Dv) -> None:
    rid = dv.create("accounts", {"name": "A", "description": "text"})
    assert dv.put(f"accounts({rid})/name", {"value": "B"}).status_code == 204
    assert dv.delete(f"accounts({rid})/description").status_code == 204
    row = dv.row("account", rid)
    assert row["name"] == "B" and row["description"] is None
    assert dv.get(f"accounts({rid})/name").json()["value"] == "B"


def test_delete(dv: Dv) -> None:
    rid = dv.create("accounts", {"name": "A"})
    assert dv.delete(f"accounts({rid})").status_code == 204
    assert dv.row("account", rid) is None
    assert error_of(dv.delete(f"accounts({rid})"))[:2] == (404, "0x80040217")


def test_bind_validation(dv: Dv) -> None:
    acct = dv.create("accounts", {"name": "A"})
    status, code, message = error_of(
        dv.post("contacts", {"lastname": "x", "parentcustomerid@odata.bind": f"/accounts({acct})"})
    )
    assert (status, code) == (400, "0x80048d19")
    assert "An undeclared property 'parentcustomerid' which only has property annotations" in message
    missing = new_id()
    assert error_of(
        dv.post("contacts", {"lastname": "x", "parentcustomerid_account@odata.bind": f"/accounts({missing})"})
    ) == (
        404,
        "0x80040217",
        f"Entity 'account' With Id = {missing} Does Not Exist",
    )
    # Writing a GUID straight into a lookup is rejected; the bind forms with and without slash or URL work.
    assert error_of(dv.post("contacts", {"lastname": "x", "_parentcustomerid_value": acct}))[:2] == (
        400,
        "0x80048d19",
    )
    for ref in (f"accounts({acct})", f"https://dv.test/api/data/v9.2/accounts({acct})"):
        cid = dv.create("contacts", {"lastname": "y", "parentcustomerid_account@odata.bind": ref})
        assert dv.row("contact", cid)["parentcustomerid"] == ["account", acct]
    opp = dv.create(
        "opportunities",
        {
            "name": "Deal",
            "customerid_contact@odata.bind": f"/contacts({cid})",
            "parentaccountid@odata.bind": f"/accounts({acct})",
        },
    )
    body = dv.get(f"opportunities({opp})?$select=_customerid_value,_parentaccountid_value").json()
    assert body["_customerid_value"] == cid and body["_parentaccountid_value"] == acct
    # Clearing a lookup with a null bind.
    assert dv.patch(f"opportunities({opp})", {"parentaccountid@odata.bind": None}).status_code == 204
    assert dv.row("opportunity", opp)["parentaccountid"] is None
    # A bind to the wrong table for the navigation property.
    assert error_of(
        dv.post("contacts", {"lastname": "z", "parentcustomerid_account@odata.bind": f"/contacts({cid})"})
    )[:2] == (
        400,
        "0x80048d19",
    )


def test_single_valued_ref_routes(dv: Dv) -> None:
    acct = dv.create("accounts", {"name": "A"})
    opp = dv.create("opportunities", {"name": "Deal"})
    assert (
        dv.put(
            f"opportunities({opp})/customerid_account/$ref", {"@odata.id": f"accounts({acct})"}
        ).status_code
        == 204
    )
    assert dv.row("opportunity", opp)["customerid"] == ["account", acct]
    assert dv.delete(f"opportunities({opp})/customerid_account/$ref").status_code == 204
    assert dv.row("opportunity", opp)["customerid"] is None


def test_expand_single_valued_navigation(dv: Dv) -> None:
    acct = dv.create("accounts", {"name": "Contoso"})
    dv.create("contacts", {"lastname": "Smith", "parentcustomerid_account@odata.bind": f"/accounts({acct})"})
    body = dv.get("contacts?$select=fullname&$expand=parentcustomerid_account($select=name)").json()
    assert body["value"][0]["parentcustomerid_account"]["name"] == "Contoso"
    assert body["value"][0]["parentcustomerid_account"]["accountid"] == acct


def test_malformed_json_body(dv: Dv) -> None:
    resp = dv.client.post(
        "/api/data/v9.2/accounts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert error_of(resp)[:2] == (400, "0x80048d19")


def test_organizations_and_systemusers(dv: Dv) -> None:
    body = dv.get("organizations?$select=maxuploadfilesize").json()
    assert body["value"][0]["maxuploadfilesize"] == 5_242_880
    org_id = body["value"][0]["organizationid"]
    assert dv.patch(f"organizations({org_id})", {"maxuploadfilesize": 131072000}).status_code == 204
    assert error_of(dv.patch(f"organizations({org_id})", {"maxuploadfilesize": 131072001}))[:2] == (
        400,
        "0x80044330",
    )
    users = dv.get(
        "systemusers?$select=fullname,internalemailaddress,isdisabled,applicationid&$filter=internalemailaddress eq 'ADA@example.com'"
    ).json()
    assert [u["fullname"] for u in users["value"]] == ["Ada Lovelace"]
    app = dv.get(f"systemusers?$filter=applicationid eq {APP_USER.client_id}").json()["value"]
    assert [u["systemuserid"] for u in app] == [APP_USER.systemuserid]
    disabled = dv.get("systemusers?$select=fullname&$filter=isdisabled eq true").json()["value"]
    assert [u["fullname"] for u in disabled] == ["Gone Away"]
    aad = dv.row("systemuser", app[0]["systemuserid"])["azureactivedirectoryobjectid"]
    assert dv.get(f"systemusers(azureactivedirectoryobjectid={aad})?$select=fullname").status_code == 200


def test_next_link_keeps_an_encoded_filter(dv: Dv) -> None:
    for i in range(5):
        dv.create("accounts", {"name": f"R&D #{i}"})
    body = dv.get(
        "accounts?$select=name&$filter=startswith(name,'R%26D %23')&$orderby=name",
        Prefer="odata.maxpagesize=2",
    ).json()
    names = [r["name"] for r in body["value"]]
    while "@odata.nextLink" in body:
        parts = urlsplit(body["@odata.nextLink"])
        body = dv.client.get(f"{parts.path}?{parts.query}", headers={"Prefer": "odata.maxpagesize=2"}).json()
        names += [r["name"] for r in body["value"]]
    assert names == [f"R&D #{i}" for i in range(5)]


def test_csdl_metadata_document(dv: Dv) -> None:
    resp = dv.get("$metadata")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/xml")
    assert '<EntitySet Name="accounts" EntityType="Microsoft.Dynamics.CRM.account" />' in resp.text
    assert '<NavigationProperty Name="regardingobjectid_lead_task" Type="mscrm.lead"' in resp.text
    assert '<Property Name="_parentcustomerid_value" Type="Edm.Guid" />' in resp.text


def test_collection_navigation_properties(dv: Dv) -> None:
    acct = dv.create("accounts", {"name": "Contoso"})
    other = dv.create("accounts", {"name": "Other"})
    task = dv.create(
        "tasks", {"subject": "Call back", "regardingobjectid_account_task@odata.bind": f"/accounts({acct})"}
    )
    dv.create(
        "tasks", {"subject": "Elsewhere", "regardingobjectid_account_task@odata.bind": f"/accounts({other})"}
    )
    body = dv.get(f"accounts({acct})/Account_Tasks?$select=subject").json()
    assert [(t["activityid"], t["subject"]) for t in body["value"]] == [(task, "Call back")]
    contact = dv.create(
        "contacts", {"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({acct})"}
    )
    expanded = dv.get(
        f"accounts({acct})?$select=name&$expand=contact_customer_accounts($select=fullname)"
    ).json()
    assert [c["contactid"] for c in expanded["contact_customer_accounts"]] == [contact]
    assert error_of(dv.get(f"accounts({acct})?$expand=nosuch"))[:2] == (400, "0x0")


def test_default_page_is_5000_and_count_is_capped(dv: Dv) -> None:
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": f"n{i}"} for i in range(5001)]
    assert dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets}).status_code == 200
    body = dv.get("accounts?$select=name&$count=true").json()
    assert len(body["value"]) == 5000 and "@odata.nextLink" in body
    assert (
        body["@odata.count"] == 5000 and body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True
    )
    assert len(dv.get("accounts?$select=name", Prefer="odata.maxpagesize=9000").json()["value"]) == 5000


def test_patch_creating_with_representation_and_delete_by_key(dv: Dv) -> None:
    rid = new_id()
    resp = dv.patch(
        f"contacts({rid})?$select=fullname",
        {"firstname": "New", "lastname": "Person"},
        Prefer="return=representation",
    )
    assert resp.status_code == 201 and resp.json()["fullname"] == "New Person"
    aad = dv.row("systemuser", APP_USER.systemuserid)["azureactivedirectoryobjectid"]
    assert (
        dv.get(f"systemusers(azureactivedirectoryobjectid={aad})?$select=fullname").json()["systemuserid"]
        == APP_USER.systemuserid
    )
    assert dv.delete(f"contacts({rid})", **{"If-Match": 'W/"1"'}).status_code == 412
    assert dv.delete(f"contacts({rid})", **{"If-Match": "*"}).status_code == 204
