"""Emulator contract: security roles and privileges as the Web API exposes them (roles, privileges,
systemuserroles_association, RetrieveUserPrivileges, AddPrivilegesRole / RemovePrivilegeRole), writes checked
against the application user's role, and a column made business-required the way an admin does it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dataverse_emulator_support import APP_USER, Dv, core_config, error_of, string_column

from emulators.dataverse.config import AppUser

FN = "Microsoft.Dynamics.CRM."


@pytest.fixture
def dv() -> Dv:
    return Dv()


def privilege(dv: Dv, name: str) -> str:
    found = dv.get(f"privileges?$select=name,privilegeid&$filter=name eq '{name}'").json()["value"]
    assert len(found) == 1, found
    return str(found[0]["privilegeid"])


def held(dv: Dv) -> dict[str, str]:
    resp = dv.get(f"systemusers({APP_USER.systemuserid})/{FN}RetrieveUserPrivileges()")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["@odata.context"].endswith("#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse")
    return {p["PrivilegeName"]: p["Depth"] for p in body["RolePrivileges"]}


def app_role(dv: Dv) -> str:
    roles = dv.get(f"systemusers({APP_USER.systemuserid})/systemuserroles_association").json()["value"]
    assert len(roles) == 1
    return str(roles[0]["roleid"])


def test_app_user_holds_every_privilege_at_global_depth(dv: Dv) -> None:
    privileges = held(dv)
    for name in (
        "prvCreateAccount",
        "prvAppendToContact",
        "prvCreateActivity",
        "prvCreateNote",
        "prvReadUser",
        "prvOverrideCreatedOnCreatedBy",
        "prvBypassCustomBusinessLogic",
        "prvDeleteLead",
    ):
        assert privileges[name] == "Global", name
    # Activities share the Activity privileges, annotations are Notes: no per-activity privilege exists.
    assert "prvCreatePhonecall" not in privileges and "prvCreateAnnotation" not in privileges
    resp = dv.get(f"systemusers({APP_USER.systemuserid})/{FN}RetrieveUserPrivileges()").json()
    first = resp["RolePrivileges"][0]
    assert set(first) == {"Depth", "PrivilegeId", "BusinessUnitId", "PrivilegeName"}
    assert first["BusinessUnitId"] == dv.env.businessunit_id


def test_roles_and_privileges_are_readable_entity_sets(dv: Dv) -> None:
    roles = dv.get("roles?$select=name,_businessunitid_value").json()["value"]
    assert {r["_businessunitid_value"] for r in roles} == {dv.env.businessunit_id}
    row = dv.get(
        f"privileges({privilege(dv, 'prvCreateAccount')})?$select=name,accessright,canbeglobal"
    ).json()
    assert (row["name"], row["accessright"], row["canbeglobal"]) == ("prvCreateAccount", 32, True)
    through_role = dv.get(f"roles({app_role(dv)})/roleprivileges_association").json()["value"]
    assert "prvWriteOpportunity" in {p["name"] for p in through_role}


def test_remove_privilege_role_denies_the_write_and_add_restores_it(dv: Dv) -> None:
    role, pid = app_role(dv), privilege(dv, "prvCreateAccount")
    resp = dv.post(
        f"roles({role})/{FN}RemovePrivilegeRole",
        {"Privilege": {"@odata.type": "Microsoft.Dynamics.CRM.privilege", "privilegeid": pid}},
    )
    assert resp.status_code == 204, resp.text
    assert "prvCreateAccount" not in held(dv)
    status, code, message = error_of(dv.post("accounts", {"name": "denied"}))
    assert (status, code) == (403, "0x80040220")
    assert f"missing prvCreateAccount privilege (Id={pid})" in message
    assert dv.env.store.table("account") == {}
    resp = dv.post(
        f"roles({role})/{FN}AddPrivilegesRole",
        {"Privileges": [{"Depth": "Local", "PrivilegeId": pid, "BusinessUnitId": dv.env.businessunit_id}]},
    )
    assert resp.status_code == 204, resp.text
    assert held(dv)["prvCreateAccount"] == "Local"
    assert dv.post("accounts", {"name": "allowed"}).status_code == 204


def test_unknown_privilege_and_bad_depth_are_refused(dv: Dv) -> None:
    role = app_role(dv)
    missing = "00000000-0000-0000-0000-000000000123"
    assert error_of(
        dv.post(f"roles({role})/{FN}RemovePrivilegeRole", {"Privilege": {"privilegeid": missing}})
    )[:2] == (404, "0x80040217")
    body = {"Privileges": [{"Depth": "Everywhere", "PrivilegeId": privilege(dv, "prvReadLead")}]}
    assert error_of(dv.post(f"roles({role})/{FN}AddPrivilegesRole", body))[0] == 400


def test_missing_privileges_seed_a_role_without_them() -> None:
    user = AppUser(
        APP_USER.client_id,
        APP_USER.client_secret,
        APP_USER.systemuserid,
        missing_privileges=["prvAppendToAccount", "prvOverrideCreatedOnCreatedBy"],
    )
    dv = Dv(core_config(app_users=[user]))
    privileges = held(dv)
    assert "prvAppendToAccount" not in privileges and "prvOverrideCreatedOnCreatedBy" not in privileges
    assert privileges["prvCreateAccount"] == "Global"


def test_custom_tables_get_privileges_granted_to_the_app_role(dv: Dv) -> None:
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_Gizmo",
        "DisplayName": {"LocalizedLabels": [{"Label": "Gizmo", "LanguageCode": 1033}]},
        "DisplayCollectionName": {"LocalizedLabels": [{"Label": "Gizmos", "LanguageCode": 1033}]},
        "OwnershipType": "UserOwned",
        "HasActivities": False,
        "HasNotes": False,
        "IsActivity": False,
        "Attributes": [{**string_column("new_Name"), "IsPrimaryName": True}],
    }
    resp = dv.post("EntityDefinitions", body)
    assert resp.status_code == 204, resp.text
    assert held(dv)["prvCreatenew_Gizmo"] == "Global"
    assert dv.post("new_gizmos", {"new_name": "one"}).status_code == 204


def test_user_role_association_by_ref(dv: Dv) -> None:
    role = app_role(dv)
    ada = dv.get("systemusers?$select=systemuserid&$filter=internalemailaddress eq 'ada@example.com'").json()
    ada_id = ada["value"][0]["systemuserid"]
    ref = {"@odata.id": f"https://dv.test/api/data/v9.2/roles({role})"}
    assert dv.post(f"systemusers({ada_id})/systemuserroles_association/$ref", ref).status_code == 204
    roles = dv.get(f"systemusers({ada_id})/systemuserroles_association").json()["value"]
    assert [r["roleid"] for r in roles][1:] == [role]  # after her seeded System Administrator role
    assert dv.delete(f"systemusers({ada_id})/systemuserroles_association({role})/$ref").status_code == 204
    roles = dv.get(f"systemusers({ada_id})/systemuserroles_association").json()["value"]
    assert [r["name"] for r in roles] == ["System Administrator"]  # the seeded role stays


def test_update_column_makes_it_application_required_and_only_system_required_is_enforced(dv: Dv) -> None:
    path = "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='jobtitle')"
    column = dv.get(path).json()
    assert column["RequiredLevel"]["Value"] == "None"
    # "Update a column": retrieve the definition, change it, PUT it back whole (MSCRM.MergeLabels keeps labels).
    column["RequiredLevel"] = {**column["RequiredLevel"], "Value": "ApplicationRequired"}
    resp = dv.put(path, column, **{"MSCRM.MergeLabels": "true"})
    assert resp.status_code == 204, resp.text
    after = dv.get(f"{path}?$select=RequiredLevel,MaxLength,IsValidForCreate").json()
    assert (after["RequiredLevel"]["Value"], after["MaxLength"], after["IsValidForCreate"]) == (
        "ApplicationRequired",
        100,
        True,
    )
    # ApplicationRequired is a form-level rule: the API still accepts a record without it (reference §6).
    assert dv.post("contacts", {"lastname": "No title"}).status_code == 204


def test_entity_metadata_declares_its_privilege_names(dv: Dv) -> None:
    def names(table: str) -> dict[str, str]:
        body = dv.get(f"EntityDefinitions(LogicalName='{table}')?$select=LogicalName,Privileges").json()
        return {p["PrivilegeType"]: p["Name"] for p in body["Privileges"]}

    assert names("phonecall")["Create"] == "prvCreateActivity"
    assert names("annotation")["AppendTo"] == "prvAppendToNote"
    assert names("account")["Assign"] == "prvAssignAccount"
    assert names("account")["Create"] in held(dv)


def test_setting_a_lookup_needs_append_and_append_to(dv: Dv) -> None:
    account = dv.create("accounts", {"name": "Parent"})
    body = {"lastname": "Child", "parentcustomerid_account@odata.bind": f"/accounts({account})"}
    role = app_role(dv)
    dv.post(
        f"roles({role})/{FN}RemovePrivilegeRole",
        {"Privilege": {"privilegeid": privilege(dv, "prvAppendToAccount")}},
    )
    status, code, message = error_of(dv.post("contacts", body))
    assert (status, code) == (403, "0x80040220") and "prvAppendToAccount" in message
    assert dv.post("contacts", {"lastname": "No lookup"}).status_code == 204  # the lookup is what needs it


def test_a_removed_privilege_stays_removed_across_a_save_and_load(tmp_path: Path) -> None:
    dv = Dv(core_config(persist_path=str(tmp_path / "org.json")))
    pid = privilege(dv, "prvWriteLead")
    assert (
        dv.post(
            f"roles({app_role(dv)})/{FN}RemovePrivilegeRole", {"Privilege": {"privilegeid": pid}}
        ).status_code
        == 204
    )
    dv.app.state.persistence.save(force=True)
    again = Dv(core_config(persist_path=str(tmp_path / "org.json")))
    privileges = held(again)
    assert "prvWriteLead" not in privileges and privileges["prvCreateLead"] == "Global"
