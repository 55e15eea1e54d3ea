"""The security-role plan: for each Close user, its Close role, its matched Dynamics user with that user's
current security roles and teams, and a proposed Dynamics 365 Sales role with the reason (issue 16).

For admin review; nothing is assigned automatically: the plan only reads Close (close.users, close.roles),
the owner map (staged.owner_map) and Dataverse (each matched user's `systemuserroles_association` and
`teammembership_association`, the N:N relationships of systemuser; MicrosoftDocs/powerapps-docs
reference/entities/systemuser.md).

Close roles (close_api.md §4.6): built-in `admin`, `superuser`, `user`, `restricteduser` (not editable) and
the org's custom `role_…` roles; each has `permissions`, and a role without `view_all_leads` sees only the
leads a lead user field assigns to its users (`visibility_user_lcf_ids`, `visibility_user_lcf_behavior`).
The proposal rules, first match wins:

1. the role is unknown (close.roles lacks it: GET /role/ is refused to a non-admin key) -> Salesperson, the
   least-privileged sales role, until the admin decides;
2. `manage_organization` (organisation settings, users, roles) -> System Administrator;
3. any `manage_others_*` permission (works other users' opportunities, activities or tasks) -> Sales Manager;
4. otherwise -> Salesperson, with a note when the role's lead visibility is limited (no `view_all_leads`)
   or it is Close's Restricted User. `manage_customizations` without `manage_organization` adds a note:
   consider System Customizer as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import duckdb

from migration_assets.clients.dataverse.errors import DataverseApiError
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import table_exists

SYSTEM_ADMINISTRATOR = "System Administrator"
SALES_MANAGER = "Sales Manager"
SALESPERSON = "Salesperson"
SYSTEM_CUSTOMIZER = "System Customizer"
BUILT_IN_ROLE_IDS = ("admin", "superuser", "user", "restricteduser")
MANAGER_PERMISSIONS = ("manage_others_opportunities", "manage_others_activities", "manage_others_tasks")
REVIEW_NOTE = "for admin review; nothing is assigned automatically"
UNREADABLE = "not readable"
# One read per matched user: GET systemusers(<id>)?$select=fullname&$expand=<this>.
ACCESS_EXPAND = "systemuserroles_association($select=name),teammembership_association($select=name)"


@dataclass(frozen=True)
class CloseRole:
    """One Close role as GET /role/ returns it."""

    id: str
    name: str
    built_in: bool
    permissions: tuple[str, ...]
    visibility_behavior: str | None = None
    visibility_field_ids: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "built-in" if self.built_in else "custom"


@dataclass(frozen=True)
class DynamicsAccess:
    """A Dynamics user's current security roles and teams; None where Dataverse refused the read."""

    fullname: str | None
    roles: tuple[str, ...] | None
    teams: tuple[str, ...] | None
    error: str | None = None


@dataclass(frozen=True)
class Proposal:
    role: str
    reason: str


@dataclass(frozen=True)
class PlanRow:
    close_user_id: str
    close_user: str
    email: str | None
    active_in_close: bool
    close_role_id: str | None
    close_role: str
    close_role_kind: str  # built-in | custom | unknown
    close_permissions: str
    dynamics_user: str | None
    owner_map_status: str
    current_roles: str
    current_teams: str
    proposed_role: str
    reason: str
    action: str  # what the admin does: nothing (already holds it), assign, or match a user first
    review: str = REVIEW_NOTE


COLUMNS = list(PlanRow.__dataclass_fields__)


def parse_roles(raw_roles: Iterable[Mapping[str, Any]]) -> dict[str, CloseRole]:
    """Role id -> CloseRole, from the objects of close.roles."""
    out: dict[str, CloseRole] = {}
    for raw in raw_roles:
        role_id = str(raw["id"])
        out[role_id] = CloseRole(
            id=role_id,
            name=str(raw.get("name") or role_id),
            built_in=role_id in BUILT_IN_ROLE_IDS or raw.get("editable") is False,
            permissions=tuple(str(p) for p in raw.get("permissions") or ()),
            visibility_behavior=raw.get("visibility_user_lcf_behavior") or None,
            visibility_field_ids=tuple(str(f) for f in raw.get("visibility_user_lcf_ids") or ()),
        )
    return out


def propose_role(role: CloseRole | None, role_id: str | None, field_names: Mapping[str, str]) -> Proposal:
    """The Dynamics 365 Sales role proposed for a Close role, and why (the rules of the module docstring).
    `field_names`: lead custom field id -> name, to name the fields that limit a role's lead visibility."""
    if role is None:
        why = (
            "Close role unknown: no membership role extracted for the user (re-extract close/users)"
            if role_id is None
            else f"Close role {role_id} is unknown (not in close.roles: GET /role/ needs an admin's API key)"
        )
        return Proposal(SALESPERSON, f"{why}; least-privileged sales role until the admin decides")
    perms = set(role.permissions)
    label = f"Close {role.kind} role {role.name!r}"
    if "manage_organization" in perms:
        return Proposal(
            SYSTEM_ADMINISTRATOR,
            f"{label} grants manage_organization (organisation settings, users, roles)",
        )
    notes = []
    if "manage_customizations" in perms:
        notes.append(f"it also grants manage_customizations: consider {SYSTEM_CUSTOMIZER} as well")
    managed = [p for p in MANAGER_PERMISSIONS if p in perms]
    if managed:
        reason = f"{label} grants {', '.join(managed)} (works other users' records)"
        return Proposal(SALES_MANAGER, "; ".join([reason, *notes]))
    reason = f"{label} works its own records (no manage_others_* or manage_organization permission)"
    if "view_all_leads" not in perms:
        fields = ", ".join(field_names.get(f, f) for f in role.visibility_field_ids) or "no lead user field"
        behaviour = role.visibility_behavior or "unset"
        notes.append(
            f"limited visibility: sees only leads assigned to the user through {fields} "
            f"({behaviour}); keep access at user level, share or assign records as needed"
        )
    elif role.id == "restricteduser":
        notes.append(
            "limited rights in Close (Restricted User: changes only its own opportunities, activities and "
            "tasks; no bulk actions, exports or lead deletes): keep access at user level"
        )
    return Proposal(SALESPERSON, "; ".join([reason, *notes]))


def _action(proposed: str, systemuserid: str | None, access: DynamicsAccess | None, status: str) -> str:
    if systemuserid is None:
        return f"no enabled Dynamics user of its own (owner map: {status}): match or create one first (owners.yaml)"
    if access is None or access.roles is None:
        return f"assign {proposed} (current roles not readable)"
    if proposed in access.roles:
        return "none: already holds it"
    return f"assign {proposed}"


def _listed(values: tuple[str, ...] | None, error: str | None) -> str:
    if values is None:
        return f"{UNREADABLE}: {error}" if error else UNREADABLE
    return ", ".join(sorted(values)) or "(none)"


def build_plan(
    users: Sequence[Mapping[str, Any]],
    roles: Mapping[str, CloseRole],
    owner_map: Mapping[str, Mapping[str, Any]],
    access: Mapping[str, DynamicsAccess],
    field_names: Mapping[str, str] | None = None,
) -> list[PlanRow]:
    """One row per Close user (close.users order). `owner_map`: close user id -> its staged.owner_map row;
    `access`: systemuserid -> what Dataverse says about the user's roles and teams."""
    rows = []
    for user in users:
        uid = str(user["id"])
        role_id = user.get("role_id")
        role = roles.get(str(role_id)) if role_id is not None else None
        proposal = propose_role(role, role_id, field_names or {})
        owner = owner_map.get(uid) or {}
        systemuserid = owner.get("systemuserid")
        # A fallback owner receives the records of a user it is not: its roles are not this user's.
        matched = systemuserid if owner.get("status") in ("matched", "override") else None
        current = access.get(str(matched)) if matched else None
        status = str(owner.get("status") or "not in owner map")
        name = " ".join(str(x) for x in (user.get("first_name"), user.get("last_name")) if x)
        rows.append(
            PlanRow(
                close_user_id=uid,
                close_user=name or str(user.get("email") or uid),
                email=user.get("email"),
                active_in_close=bool(user.get("is_active", True)),
                close_role_id=None if role_id is None else str(role_id),
                close_role=role.name if role else "unknown",
                close_role_kind=role.kind if role else "unknown",
                close_permissions=", ".join(sorted(role.permissions)) if role else "",
                dynamics_user=(current.fullname if current and current.fullname else matched),
                owner_map_status=status,
                current_roles=_listed(current.roles, current.error) if current else "",
                current_teams=_listed(current.teams, current.error) if current else "",
                proposed_role=proposal.role,
                reason=proposal.reason,
                action=_action(proposal.role, matched, current, status),
            )
        )
    return rows


def render_markdown(rows: Sequence[PlanRow], roles_readable: bool) -> str:
    """The report: a summary, then each user (the CSV has every column)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.proposed_role] = counts.get(r.proposed_role, 0) + 1
    lines = [
        "# Security-role plan",
        "",
        f"**{REVIEW_NOTE.capitalize()}.** Each Close user's role, its matched Dynamics user with that user's "
        "current security roles and teams, and the proposed Dynamics 365 Sales role with the reason.",
        "",
        "Proposed: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no users") + ".",
    ]
    if not roles_readable:
        lines += [
            "",
            "**Close roles unknown**: close.roles is empty (Close refused GET /role/: the API key's user is "
            "not an admin). Re-extract with an admin's API key to see each role's name and permissions.",
        ]
    shown = [
        "close_user",
        "close_role",
        "close_role_kind",
        "dynamics_user",
        "current_roles",
        "current_teams",
        "proposed_role",
        "reason",
        "action",
    ]
    return "\n".join([*lines, "", markdown_table([asdict(r) for r in rows], shown)])


# --- reads (the warehouse and Dataverse); the rules above are pure -----------------------------------------


def read_close(
    con: duckdb.DuckDBPyConnection,
) -> tuple[list[dict[str, Any]], dict[str, CloseRole], dict[str, str]]:
    """close.users (with each membership's role_id), close.roles, and lead custom field id -> name."""
    cols = {r[0] for r in con.execute("DESCRIBE close.users").fetchall()}
    role_col = "role_id" if "role_id" in cols else "NULL AS role_id"  # extracted before roles were
    cur = con.execute(
        f"SELECT id, email, first_name, last_name, is_active, {role_col} FROM close.users ORDER BY id"
    )
    names = [d[0] for d in cur.description]
    users = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    roles: dict[str, CloseRole] = {}
    if table_exists(con, "close", "roles"):
        roles = parse_roles(json.loads(r[0]) for r in con.execute("SELECT raw FROM close.roles").fetchall())
    fields: dict[str, str] = {}
    if table_exists(con, "close", "custom_fields"):
        fields = {
            str(i): str(n)
            for i, n in con.execute(
                "SELECT id, name FROM close.custom_fields WHERE object_type = 'lead'"
            ).fetchall()
        }
    return users, roles, fields


def read_owner_map(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """close user id -> its staged.owner_map row (none before the owner map is staged)."""
    if not table_exists(con, "staged", "owner_map"):
        return {}
    cur = con.execute("SELECT close_user_id, systemuserid, status FROM staged.owner_map")
    return {str(u): {"systemuserid": s, "status": st} for u, s, st in cur.fetchall()}


def read_access(
    get_user: Callable[[str], Mapping[str, Any] | None], systemuserids: Iterable[str]
) -> dict[str, DynamicsAccess]:
    """Each user's roles and teams through `get_user(systemuserid)`, which returns the systemuser row with
    `systemuserroles_association` and `teammembership_association` expanded (None: no such user). A read
    Dataverse refuses is recorded on that user (`error`), never raised: the plan still lists everyone."""
    out: dict[str, DynamicsAccess] = {}
    for sid in dict.fromkeys(systemuserids):
        try:
            row = get_user(sid)
        except DataverseApiError as exc:  # a refusal (403: missing prvReadRole, say) is reported per user
            out[sid] = DynamicsAccess(None, None, None, str(exc).splitlines()[0][:200])
            continue
        if row is None:
            out[sid] = DynamicsAccess(None, None, None, "systemuser not found")
            continue
        out[sid] = DynamicsAccess(
            row.get("fullname"),
            tuple(str(r.get("name")) for r in row.get("systemuserroles_association") or ()),
            tuple(str(t.get("name")) for t in row.get("teammembership_association") or ()),
        )
    return out
