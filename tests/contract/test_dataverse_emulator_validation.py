"""DV-CORE contract: write validation with the real status codes, error codes and messages (§2.6, §12.3)."""

from __future__ import annotations

import base64

import pytest
from test_dataverse_emulator_support import APP_USER, Dv, core_config, error_of, new_id, user_id

from emulators.dataverse.config import AppUser


@pytest.fixture
def dv() -> Dv:
    return Dv()


def test_string_over_max_length(dv: Dv) -> None:
    assert error_of(dv.post("tasks", {"subject": "x" * 201})) == (
        400,
        "0x80044331",
        "A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the "
        "maximum allowed length of '200'.",
    )
    assert dv.post("tasks", {"subject": "x" * 200}).status_code == 204
    assert error_of(dv.post("leads", {"mobilephone": "1" * 21}))[1] == "0x80044331"


def test_choice_out_of_range(dv: Dv) -> None:
    assert error_of(dv.post("opportunities", {"name": "x", "salesstage": 7})) == (
        400,
        "0x8004431A",
        "A validation error occurred. The value 7 of 'salesstage' on record of type 'opportunity' is outside the "
        "valid range. Accepted Values: 0,1,2,3",
    )
    assert error_of(dv.post("opportunities", {"name": "x", "salesstage": "2"}))[:2] == (400, "0x80048d19")


def test_numbers_out_of_range(dv: Dv) -> None:
    status, code, message = error_of(dv.post("opportunities", {"name": "x", "closeprobability": 101}))
    assert (status, code) == (400, "0x80044330")
    assert message.startswith("A validation error occurred. The value 101 of 'closeprobability'")
    status, code, message = error_of(dv.post("opportunities", {"name": "x", "estimatedvalue": 2e12}))
    assert (status, code) == (400, "0x80044330")
    assert message.startswith(
        "A validation error occurred. A decimal value provided is outside of the allowed values for this attribute."
    )
    rid = dv.create("opportunities", {"name": "x", "estimatedvalue": 12.345})
    assert dv.row("opportunity", rid)["estimatedvalue"] == 12.35  # money precision 2
    assert dv.row("opportunity", rid)["transactioncurrencyid"] == ["transactioncurrency", dv.env.currency_id]


def test_wrong_json_types_are_rejected(dv: Dv) -> None:
    assert error_of(dv.post("accounts", {"name": 5}))[:2] == (400, "0x80048d19")
    assert error_of(dv.post("accounts", {"creditonhold": "yes"}))[:2] == (400, "0x80048d19")
    assert error_of(dv.post("accounts", {"numberofemployees": 1.5}))[:2] == (400, "0x80048d19")
    assert error_of(dv.post("accounts", {"accountid": "not-a-guid"}))[:2] == (400, "0x80048d19")


def test_datetimes_are_normalised(dv: Dv) -> None:
    rid = dv.create("opportunities", {"name": "x", "estimatedclosedate": "2024-05-31"})
    assert dv.row("opportunity", rid)["estimatedclosedate"] == "2024-05-31"
    tid = dv.create("tasks", {"subject": "t", "scheduledend": "2024-05-31T10:00:00+02:00"})
    assert dv.row("task", tid)["scheduledend"] == "2024-05-31T08:00:00Z"
    assert error_of(dv.post("tasks", {"subject": "t", "scheduledend": "yesterday"}))[:2] == (
        400,
        "0x80048d19",
    )
    found = dv.get(
        "tasks?$select=subject&$filter=scheduledend ge 2024-05-31T08:00:00Z and scheduledend lt 2024-06-01"
    ).json()
    assert len(found["value"]) == 1


def test_application_required_is_not_enforced_but_system_required_is(dv: Dv) -> None:
    # lead.lastname, account.name are ApplicationRequired: the API accepts them empty.
    assert dv.post("leads", {"firstname": "only"}).status_code == 204
    assert dv.post("accounts", {}).status_code == 204
    # team.name is SystemRequired.
    status, code, message = error_of(dv.post("teams", {"teamtype": 0}))
    assert (status, code) == (400, "0x80040200")
    assert message.startswith("Required field missing.") and "'name'" in message
    # ... and cannot be cleared.
    assert error_of(dv.patch(f"teams({dv.env.team_id})", {"name": None}))[1] == "0x80040200"


def test_columns_not_valid_for_write_are_ignored(dv: Dv) -> None:
    rid = dv.create(
        "phonecalls",
        {"subject": "call", "statecode": 1, "activitytypecode": "task", "createdon": "2001-01-01T00:00:00Z"},
    )
    row = dv.row("phonecall", rid)
    assert row["statecode"] == 0 and row["statuscode"] == 1
    assert row["createdon"] != "2001-01-01T00:00:00Z"
    assert row["activitytypecode"] == "phonecall"


def test_overriddencreatedon_sets_createdon(dv: Dv) -> None:
    rid = dv.create("accounts", {"name": "Old", "overriddencreatedon": "2019-03-01T10:00:00Z"})
    row = dv.row("account", rid)
    assert row["createdon"] == "2019-03-01T10:00:00Z"
    assert row["overriddencreatedon"] > "2020"
    assert row["createdby"] == ["systemuser", APP_USER.systemuserid]
    # Not valid for update: silently ignored.
    assert dv.patch(f"accounts({rid})", {"overriddencreatedon": "2000-01-01T00:00:00Z"}).status_code == 204
    assert dv.row("account", rid)["createdon"] == "2019-03-01T10:00:00Z"


def _limited(*missing: str) -> Dv:
    user = AppUser(
        APP_USER.client_id, APP_USER.client_secret, APP_USER.systemuserid, missing_privileges=list(missing)
    )
    return Dv(core_config(app_users=[user]))


def test_missing_override_privilege_is_403() -> None:
    dv = _limited("prvOverrideCreatedOnCreatedBy")
    status, code, message = error_of(
        dv.post("accounts", {"name": "x", "overriddencreatedon": "2019-03-01T10:00:00Z"})
    )
    assert (status, code) == (403, "0x80040220")
    assert f"Principal user (Id={APP_USER.systemuserid}, type=8" in message
    assert "is missing prvOverrideCreatedOnCreatedBy privilege" in message
    assert dv.post("accounts", {"name": "x"}).status_code == 204
    global_switch = Dv(core_config(allow_override_createdon=False))
    assert (
        error_of(global_switch.post("accounts", {"overriddencreatedon": "2019-03-01T10:00:00Z"}))[1]
        == "0x80040220"
    )


def test_missing_table_and_bypass_privileges_are_403() -> None:
    dv = _limited("prvCreateAccount", "prvBypassCustomBusinessLogic", "prvReadLead")
    assert "missing prvCreateAccount privilege" in error_of(dv.post("accounts", {"name": "x"}))[2]
    assert dv.post("contacts", {"lastname": "x"}).status_code == 204
    status, code, message = error_of(
        dv.post(
            "contacts", {"lastname": "x"}, **{"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync"}
        )
    )
    assert (status, code) == (403, "0x80040220") and "prvBypassCustomBusinessLogic" in message
    assert error_of(dv.get("leads"))[:2] == (403, "0x80040220")
    # With the privilege, the bypass header is accepted.
    assert (
        Dv()
        .post("contacts", {"lastname": "x"}, **{"MSCRM.BypassBusinessLogicExecution": "CustomSync"})
        .status_code
        == 204
    )


def test_owner_binding(dv: Dv) -> None:
    ada = user_id("ada@example.com")
    rid = dv.create("accounts", {"name": "x", "ownerid@odata.bind": f"/systemusers({ada})"})
    assert dv.row("account", rid)["ownerid"] == ["systemuser", ada]
    assert dv.row("account", rid)["owninguser"] == ["systemuser", ada]
    tid = dv.create("accounts", {"name": "t", "ownerid@odata.bind": f"/teams({dv.env.team_id})"})
    assert dv.row("account", tid)["owningteam"] == ["team", dv.env.team_id]
    assert error_of(
        dv.post(
            "accounts", {"name": "x", "ownerid@odata.bind": f"/systemusers({user_id('gone@example.com')})"}
        )
    ) == (
        400,
        "0x80040225",
        "The specified user is either disabled or is not a member of any business unit",
    )
    assert error_of(dv.post("accounts", {"name": "x", "ownerid@odata.bind": f"/systemusers({new_id()})"}))[
        :2
    ] == (404, "0x80040217")


def test_annotation_document_limits(dv: Dv) -> None:
    acct = dv.create("accounts", {"name": "x"})
    body = base64.b64encode(b"%PDF-1.4 hello").decode()
    nid = dv.create(
        "annotations",
        {
            "subject": "Contract",
            "filename": "c.pdf",
            "mimetype": "application/pdf",
            "isdocument": True,
            "documentbody": body,
            "objectid_account@odata.bind": f"/accounts({acct})",
        },
    )
    row = dv.row("annotation", nid)
    assert (
        row["objecttypecode"] == "account" and row["filesize"] == 14 and row["objectid"] == ["account", acct]
    )
    assert dv.client.get(f"/api/data/v9.2/annotations({nid})/documentbody/$value").text == body
    small = Dv(core_config(max_upload_file_size=16))
    big = base64.b64encode(b"x" * 13).decode()  # 20 base64 characters > 16
    assert error_of(small.post("annotations", {"subject": "big", "documentbody": big})) == (
        400,
        "0x80044a02",
        "Attachment file size is too big.",
    )
    assert (
        small.post(
            "annotations", {"subject": "ok", "documentbody": base64.b64encode(b"x" * 12).decode()}
        ).status_code
        == 204
    )
    assert error_of(dv.post("annotations", {"subject": "bad", "documentbody": "@@@"}))[0] == 400
    assert (
        error_of(
            dv.post("annotations", {"subject": "n", "objectid_nosuch@odata.bind": f"/accounts({acct})"})
        )[1]
        == "0x80048d19"
    )


def test_impersonation_headers(dv: Dv) -> None:
    ada = user_id("ada@example.com")
    resp = dv.post("accounts", {"name": "as ada"}, MSCRMCallerID=ada)
    assert resp.status_code == 204
    rid = resp.headers["OData-EntityId"].rsplit("(", 1)[1][:-1]
    assert dv.row("account", rid)["createdby"] == ["systemuser", ada]
    assert dv.row("account", rid)["ownerid"] == ["systemuser", ada]
    aad = dv.row("systemuser", ada)["azureactivedirectoryobjectid"]
    assert dv.get("WhoAmI", CallerObjectId=aad).json()["UserId"] == ada
    assert (
        error_of(dv.post("accounts", {"name": "x"}, MSCRMCallerID=user_id("gone@example.com")))[1]
        == "0x80040225"
    )
    assert error_of(dv.post("accounts", {"name": "x"}, MSCRMCallerID=new_id()))[:2] == (404, "0x80040217")
    limited = _limited("prvActOnBehalfOfAnotherUser")
    assert error_of(limited.post("accounts", {"name": "x"}, MSCRMCallerID=ada))[:2] == (403, "0x80040220")
