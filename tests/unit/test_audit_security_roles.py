"""The security-role plan's rules (audit/security_roles), its reads' failure handling, the owner review's
security-role keys (target/proposal_owners) and the extraction of roles when Close refuses them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from emulators.orgdata import generate
from migration_assets.audit.audit_pack import render_index
from migration_assets.audit.security_roles import (
    REVIEW_NOTE,
    SALES_MANAGER,
    SALESPERSON,
    SYSTEM_ADMINISTRATOR,
    CloseRole,
    DynamicsAccess,
    build_plan,
    parse_roles,
    propose_role,
    read_access,
    render_markdown,
)
from migration_assets.clients.close.client import CloseAPIError
from migration_assets.clients.dataverse.errors import DataverseApiError
from migration_assets.extract.sources import api_config
from migration_assets.target.proposal_owners import propose_owners

BUILT_IN = parse_roles(generate("tiny", org="nordlicht").roles)


def _custom(permissions: tuple[str, ...], **kw: Any) -> CloseRole:
    return CloseRole("role_x", "Custom", False, permissions, **kw)


def test_built_in_roles_are_parsed_as_built_in() -> None:
    assert sorted(BUILT_IN) == ["admin", "restricteduser", "superuser", "user"]
    assert all(r.built_in and r.kind == "built-in" for r in BUILT_IN.values())
    assert parse_roles([{"id": "role_a", "name": "A", "editable": True, "permissions": []}])[
        "role_a"
    ].kind == ("custom")


@pytest.mark.parametrize(
    ("role_id", "proposed", "in_reason"),
    [
        ("admin", SYSTEM_ADMINISTRATOR, "manage_organization"),
        ("superuser", SALES_MANAGER, "System Customizer"),
        ("user", SALESPERSON, "works its own records"),
        ("restricteduser", SALESPERSON, "limited rights"),
    ],
)
def test_built_in_role_proposals(role_id: str, proposed: str, in_reason: str) -> None:
    proposal = propose_role(BUILT_IN[role_id], role_id, {})
    assert proposal.role == proposed
    assert in_reason in proposal.reason


def test_custom_roles_are_proposed_by_their_permissions() -> None:
    manager = propose_role(_custom(("calling", "manage_others_tasks", "view_all_leads")), "role_x", {})
    assert manager.role == SALES_MANAGER and "manage_others_tasks" in manager.reason
    assert "custom role 'Custom'" in manager.reason
    admin = propose_role(_custom(("manage_organization",)), "role_x", {})
    assert admin.role == SYSTEM_ADMINISTRATOR
    limited = propose_role(
        _custom(("calling",), visibility_behavior="require_assignment", visibility_field_ids=("cf_1",)),
        "role_x",
        {"cf_1": "Lead Owner"},
    )
    assert limited.role == SALESPERSON
    assert "limited visibility" in limited.reason and "Lead Owner (require_assignment)" in limited.reason
    plain = propose_role(_custom(("calling", "view_all_leads")), "role_x", {})
    assert plain.role == SALESPERSON and "limited" not in plain.reason


def test_unknown_or_missing_role_is_said_and_gets_the_least_privileged_role() -> None:
    unknown = propose_role(None, "role_gone", {})
    assert unknown.role == SALESPERSON and "role_gone is unknown" in unknown.reason
    none = propose_role(None, None, {})
    assert none.role == SALESPERSON and "no membership role extracted" in none.reason


USERS = [
    {
        "id": "user_a",
        "email": "a@x",
        "first_name": "Ann",
        "last_name": "A",
        "is_active": True,
        "role_id": "admin",
    },
    {
        "id": "user_b",
        "email": "b@x",
        "first_name": "Bo",
        "last_name": None,
        "is_active": True,
        "role_id": "user",
    },
    {
        "id": "user_c",
        "email": "c@x",
        "first_name": None,
        "last_name": None,
        "is_active": False,
        "role_id": "user",
    },
    {
        "id": "user_d",
        "email": "d@x",
        "first_name": "Di",
        "last_name": "D",
        "is_active": True,
        "role_id": "role_q",
    },
]
OWNERS = {
    "user_a": {"systemuserid": "s-a", "status": "matched"},
    "user_b": {"systemuserid": "s-b", "status": "override"},
    "user_c": {"systemuserid": None, "status": "unmatched"},
    "user_d": {"systemuserid": "s-fallback", "status": "fallback"},
}


def test_plan_lists_every_user_with_a_proposal_a_reason_and_the_admin_action() -> None:
    access = {
        "s-a": DynamicsAccess("Ann A", (SYSTEM_ADMINISTRATOR,), ("Sales Leadership",)),
        "s-b": DynamicsAccess(None, None, None, "Dataverse returned HTTP 403"),
        "s-fallback": DynamicsAccess("Fallback", (SALES_MANAGER,), ()),
    }
    rows = build_plan(USERS, BUILT_IN, OWNERS, access)
    by_user = {r.close_user_id: r for r in rows}
    assert [r.close_user_id for r in rows] == ["user_a", "user_b", "user_c", "user_d"]
    assert all(r.proposed_role and r.reason and r.review == REVIEW_NOTE for r in rows)
    a = by_user["user_a"]
    assert (a.close_role, a.dynamics_user, a.current_teams) == ("Admin", "Ann A", "Sales Leadership")
    assert a.action == "none: already holds it"
    b = by_user["user_b"]
    assert b.current_roles.startswith("not readable: Dataverse returned HTTP 403")
    assert b.action == "assign Salesperson (current roles not readable)"
    assert (
        by_user["user_c"].action.startswith("no enabled Dynamics user of its own (owner map: unmatched)")
        and by_user["user_c"].close_user == "c@x"
    )
    d = by_user["user_d"]  # the fallback owner's roles are not the user's own
    assert d.close_role_kind == "unknown" and d.dynamics_user is None and d.current_roles == ""
    md = render_markdown(rows, roles_readable=False)
    assert "Close roles unknown" in md and REVIEW_NOTE.capitalize() in md


def test_read_access_records_a_refusal_per_user_and_never_raises() -> None:
    def get_user(sid: str) -> dict[str, Any] | None:
        if sid == "refused":
            raise DataverseApiError(403, "0x80040220", "missing prvReadRole", "GET", "systemusers(x)")
        if sid == "gone":
            return None
        return {
            "fullname": "Ok User",
            "systemuserroles_association": [{"name": SALESPERSON}],
            "teammembership_association": [{"name": "Sales Team"}, {"name": "Org"}],
        }

    access = read_access(get_user, ["ok", "refused", "gone", "ok"])
    assert access["ok"] == DynamicsAccess("Ok User", (SALESPERSON,), ("Sales Team", "Org"))
    assert access["refused"].roles is None and "403" in (access["refused"].error or "")
    assert access["gone"].error == "systemuser not found"


def test_owner_review_shows_each_users_close_role_and_proposal() -> None:
    body = propose_owners(None, USERS, None, {"user_a": 3}, BUILT_IN, {})
    entries = {u["close_user_id"]: u for u in body["users"]}
    assert entries["user_a"]["close_role"] == "Admin (built-in)"
    assert entries["user_a"]["proposed_security_role"] == SYSTEM_ADMINISTRATOR
    assert entries["user_d"]["close_role"] == "unknown (role_q)"
    assert all(u["security_role_reason"] and "review" not in u for u in body["users"])
    without = propose_owners(None, USERS, None, {}, None)
    assert all("proposed_security_role" not in u for u in without["users"])


class _RefusingClient:
    def __init__(self, status: int) -> None:
        self.status = status

    def list_all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        raise CloseAPIError("Forbidden", status=self.status, endpoint=path)


def test_roles_refused_to_a_non_admin_key_extract_empty_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert api_config(_RefusingClient(403), "roles") == []  # type: ignore[arg-type]
    assert "403" in caplog.text and "admin" in caplog.text
    with pytest.raises(CloseAPIError):
        api_config(_RefusingClient(500), "roles")  # type: ignore[arg-type]


def test_audit_pack_names_the_plan_for_the_admin(tmp_path: Path) -> None:
    assert '<ul id="admin"></ul>' in render_index("run1", "migrate", tmp_path)
    (tmp_path / "security_roles.md").write_text("# Security-role plan\n", encoding="utf-8")
    page = render_index("run1", "migrate", tmp_path)
    assert '<ul id="admin"><li><a href="security_roles.md">security_roles.md</a>: security-role plan' in page
