"""Contract tests of the Close emulator's roles (close_api.md §4.6): GET /role/ (offset-paged list envelope)
and GET /role/{id}/, built-in and custom roles, and memberships that name them; orgs differ by shape."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators.close import CloseEmulatorConfig
from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate

BUILT_IN = {"admin", "superuser", "user", "restricteduser"}
EPOCH_ZERO = "0001-01-01T00:00:00"


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny", org="pacifica")


@pytest.fixture(scope="module")
def api(org: CloseOrg) -> Iterator[httpx.Client]:
    cfg = CloseEmulatorConfig()
    cfg.rate_limit.enabled = False
    with (
        CloseEmulatorServer(org, cfg) as srv,
        httpx.Client(base_url=srv.base_url, auth=(org.api_key, ""), timeout=10) as client,
    ):
        yield client


def _all_roles(api: httpx.Client, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    skip = 0
    while True:
        body = api.get("role/", params={"_skip": skip, "_limit": limit}).raise_for_status().json()
        assert set(body) == {"data", "has_more"}
        rows += body["data"]
        if not body["has_more"]:
            return rows
        skip += limit


def test_role_list_pages_with_the_list_envelope(api: httpx.Client, org: CloseOrg) -> None:
    whole = api.get("role/").raise_for_status().json()
    assert whole["has_more"] is False and whole["data"] == org.roles
    assert _all_roles(api, 2) == org.roles
    assert api.get("role", params={"_fields": "id,name"}).json()["data"][0] == {
        "id": "admin",
        "name": "Admin",
    }


def test_built_in_roles_have_literal_ids_epoch_zero_dates_and_are_not_editable(api: httpx.Client) -> None:
    roles = {r["id"]: r for r in api.get("role/").json()["data"]}
    assert BUILT_IN <= roles.keys()
    for role_id in BUILT_IN:
        role = api.get(f"role/{role_id}/").raise_for_status().json()
        assert role == roles[role_id]
        assert role["editable"] is False
        assert role["date_created"] == role["date_updated"] == EPOCH_ZERO
        assert role["permissions"] and all(isinstance(p, str) for p in role["permissions"])
    assert "manage_organization" in roles["admin"]["permissions"]
    assert roles["restricteduser"]["permissions"] == [
        "delete_own_activities",
        "delete_own_opportunities",
        "delete_own_tasks",
        "calling",
        "view_all_leads",
    ]


def test_custom_roles_carry_permissions_and_lead_visibility(api: httpx.Client, org: CloseOrg) -> None:
    custom = [r for r in api.get("role/").json()["data"] if r["id"] not in BUILT_IN]
    assert custom
    lead_user_fields = {f["id"] for f in org.custom_fields["lead"] if f["type"] == "user"}
    for role in custom:
        assert re.fullmatch(r"role_[0-9A-Za-z]{22}", role["id"]) and role["editable"] is True
        assert api.get(f"role/{role['id']}/").json() == role
        # Developer docs: visibility fields empty with view_all_leads, set otherwise.
        if "view_all_leads" in role["permissions"]:
            assert not role["visibility_user_lcf_ids"] and role["visibility_user_lcf_behavior"] is None
        else:
            assert set(role["visibility_user_lcf_ids"]) <= lead_user_fields
            assert role["visibility_user_lcf_ids"]
            assert role["visibility_user_lcf_behavior"] in ("require_assignment", "allow_unassigned")


def test_unknown_role_is_the_404_of_every_resource(api: httpx.Client) -> None:
    r = api.get("role/role_doesnotexist0000000000/")
    assert r.status_code == 404
    assert r.json() == {"error": "Empty query: Role matching query does not exist."}


def test_every_membership_names_a_listed_role(api: httpx.Client, org: CloseOrg) -> None:
    listed = {r["id"] for r in api.get("role/").json()["data"]}
    body = api.get(f"organization/{org.organization['id']}/").json()
    memberships = body["memberships"] + body["inactive_memberships"]
    assert {m["role_id"] for m in memberships} <= listed
    assert {m["role_id"] for m in memberships} & (listed - BUILT_IN)  # custom roles are in use
    me = api.get("me/").json()
    assert me["memberships"][0]["role_id"] == "admin"


def test_orgs_differ_in_their_roles() -> None:
    shapes = {name: generate("tiny", org=name) for name in ("brightwave", "nordlicht", "pacifica")}
    custom = {
        name: sorted(r["name"] for r in o.roles if r["id"] not in BUILT_IN) for name, o in shapes.items()
    }
    assert custom["nordlicht"] == [] and custom["brightwave"] and custom["pacifica"]
    assert custom["brightwave"] != custom["pacifica"]
    held = {
        name: sorted(
            m["role_id"] for m in o.organization["memberships"] + o.organization["inactive_memberships"]
        )
        for name, o in shapes.items()
    }
    assert "superuser" in held["nordlicht"] and "restricteduser" in held["brightwave"]
