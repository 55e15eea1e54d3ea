"""Emulator contract: the security roles a Dynamics 365 Sales org ships, the seeded users' roles and owner teams,
read as a security-role plan reads them (roles, systemuserroles_association, teammembership_association,
both as navigation properties and through $expand)."""

from __future__ import annotations

import pytest
from test_dataverse_emulator_support import Dv, core_config, user_id

from emulators.dataverse.config import default_seed_users
from emulators.dataverse.security import SHIPPED_ROLES, shipped_role_id, team_id_for

FN = "Microsoft.Dynamics.CRM."


@pytest.fixture(scope="module")
def dv() -> Dv:
    """Alice (first user), Bob, Dana (disabled): the emulator's default users."""
    return Dv(core_config(seed_users=default_seed_users()))


def role_names(dv: Dv, email: str) -> list[str]:
    resp = dv.get(f"systemusers({user_id(email)})/systemuserroles_association?$select=name")
    assert resp.status_code == 200, resp.text
    return [r["name"] for r in resp.json()["value"]]


def test_every_shipped_role_exists_once_in_the_business_unit(dv: Dv) -> None:
    roles = dv.get("roles?$select=name,_businessunitid_value").json()["value"]
    shipped = [r for r in roles if r["name"] in SHIPPED_ROLES]
    assert sorted(r["name"] for r in shipped) == sorted(SHIPPED_ROLES)
    assert {r["_businessunitid_value"] for r in shipped} == {dv.env.businessunit_id}
    by_name = {r["name"]: r["roleid"] for r in shipped}
    assert by_name["Salesperson"] == shipped_role_id(dv.env.businessunit_id, "Salesperson")


def test_system_administrator_holds_every_privilege_and_other_roles_none(dv: Dv) -> None:
    admin = shipped_role_id(dv.env.businessunit_id, "System Administrator")
    held = dv.get(f"roles({admin})/{FN}RetrieveRolePrivilegesRole").json()["RolePrivileges"]
    depths = {p["PrivilegeName"]: p["Depth"] for p in held}
    assert depths["prvCreateOpportunity"] == depths["prvWriteOpportunitySalesProcess"] == "Global"
    salesperson = shipped_role_id(dv.env.businessunit_id, "Salesperson")
    assert dv.get(f"roles({salesperson})/{FN}RetrieveRolePrivilegesRole").json()["RolePrivileges"] == []


def test_seeded_users_hold_plausible_roles(dv: Dv) -> None:
    assert role_names(dv, "alice@example.com") == ["System Administrator"]
    assert role_names(dv, "bob@example.com") == ["Sales Manager"]
    assert role_names(dv, "dana@example.com") == ["Salesperson"]


def test_users_with_their_roles_through_expand(dv: Dv) -> None:
    users = dv.get(
        "systemusers?$select=fullname,internalemailaddress&$filter=applicationid eq null"
        "&$expand=systemuserroles_association($select=name),teammembership_association($select=name)"
    ).json()["value"]
    got = {u["internalemailaddress"]: [r["name"] for r in u["systemuserroles_association"]] for u in users}
    teams = {
        u["internalemailaddress"]: sorted(t["name"] for t in u["teammembership_association"]) for u in users
    }
    assert teams["bob@example.com"] == sorted([dv.env.config.org_name, "Sales Leadership", "Sales Team"])
    assert got == {
        "alice@example.com": ["System Administrator"],
        "bob@example.com": ["Sales Manager"],
        "dana@example.com": ["Salesperson"],
    }
    holders = dv.get(
        f"roles({shipped_role_id(dv.env.businessunit_id, 'Salesperson')})/systemuserroles_association"
        "?$select=internalemailaddress"
    ).json()["value"]
    assert [u["internalemailaddress"] for u in holders] == ["dana@example.com"]


def test_owner_teams_and_their_members(dv: Dv) -> None:
    teams = dv.get(
        "teams?$select=name,teamtype,isdefault&$filter=teamtype eq 0"
        "&$expand=teammembership_association($select=internalemailaddress)"
    ).json()["value"]
    members = {
        t["name"]: sorted(m["internalemailaddress"] for m in t["teammembership_association"]) for t in teams
    }
    everyone = ["alice@example.com", "bob@example.com", "dana@example.com"]
    assert members == {
        dv.env.config.org_name: everyone,  # the business unit's default team
        "Sales Team": ["bob@example.com", "dana@example.com"],
        "Sales Leadership": ["alice@example.com", "bob@example.com"],
    }
    assert [t["isdefault"] for t in teams if t["name"] == dv.env.config.org_name] == [True]
    sales_team = team_id_for(dv.env.config.org_name, "Sales Team")
    direct = dv.get(f"teams({sales_team})/teammembership_association?$select=fullname").json()["value"]
    assert sorted(m["fullname"] for m in direct) == ["Bob Seller", "Dana Former"]
    of_dana = dv.get(f"systemusers({user_id('dana@example.com')})/teammembership_association?$select=name")
    assert sorted(t["name"] for t in of_dana.json()["value"]) == sorted(
        [dv.env.config.org_name, "Sales Team"]
    )


def test_seed_entries_may_name_roles_and_teams() -> None:
    users = [
        {"firstname": "Ann", "lastname": "One", "internalemailaddress": "ann@example.com"},
        {
            "firstname": "Max",
            "lastname": "Two",
            "internalemailaddress": "max@example.com",
            "roles": ["Marketing Manager", "Salesperson"],
            "teams": ["Marketing"],
        },
    ]
    dv = Dv(core_config(seed_users=users))
    assert role_names(dv, "ann@example.com") == ["System Administrator"]
    assert role_names(dv, "max@example.com") == ["Marketing Manager", "Salesperson"]
    marketing = team_id_for(dv.env.config.org_name, "Marketing")
    members = dv.get(f"teams({marketing})/teammembership_association?$select=internalemailaddress").json()
    assert [m["internalemailaddress"] for m in members["value"]] == ["max@example.com"]


def test_two_users_get_an_administrator_and_a_salesperson() -> None:
    dv = Dv(core_config())  # Ada and Gone (disabled)
    assert role_names(dv, "ada@example.com") == ["System Administrator"]
    assert role_names(dv, "gone@example.com") == ["Salesperson"]


def test_an_unknown_role_name_in_the_seed_is_a_clear_error() -> None:
    users = [{"firstname": "Z", "lastname": "Z", "internalemailaddress": "z@example.com", "roles": ["Boss"]}]
    with pytest.raises(ValueError, match="unknown roles \\['Boss'\\]"):
        Dv(core_config(seed_users=users))
