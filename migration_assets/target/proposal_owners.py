"""Proposed `owners.yaml`: the owner map of a Close org (pure; `target/propose.py` writes the file).

The settings a human decides (overrides, fallback_owner, disabled_users) are kept from the existing file;
`users` lists every Close user (active and deactivated) with the Dataverse user it resolves to under those
settings, by the one owner matcher (`owner_match.match_owners`, the same the owner check runs). A user who
owns records and resolves to nobody gets a `review:` naming the setting that fixes their case. With the
org's Close roles known, each user also shows its Close role and the proposed Dynamics security role with
the reason (audit/security_roles): for admin review, never assigned, no `review:` (loading does not wait).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migration_assets.audit.security_roles import CloseRole, propose_role
from migration_assets.mapping.owners import fix_for, match_owners
from migration_assets.mapping.yaml_loc import REVIEW_KEY

DEFAULTS: dict[str, Any] = {"overrides": {}, "fallback_owner": None, "disabled_users": "queue"}


def propose_owners(
    existing: Mapping[str, Any] | None,
    close_users: Sequence[Mapping[str, Any]],
    systemusers: Sequence[Mapping[str, Any]] | None,
    records_owned: Mapping[str, int],
    roles: Mapping[str, CloseRole] | None = None,
    field_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The owners.yaml body. systemusers None: the target is not known (DATAVERSE_URL not set and no cached
    target metadata): users are listed `not checked`, and the owner check matches them at migration time.
    Raises owner_match.OwnerConfigError when the file's fallback_owner or an override names no enabled user.
    roles: close.roles by id (None: not extracted, the users show no security role)."""
    settings = {k: (existing or {}).get(k, v) for k, v in DEFAULTS.items()}
    active = {str(u["id"]): bool(u.get("is_active", True)) for u in close_users}
    role_of = {str(u["id"]): u.get("role_id") for u in close_users}

    def with_role(entry: dict[str, Any]) -> dict[str, Any]:
        if roles is None:
            return entry
        role_id = role_of.get(entry["close_user_id"])
        role = roles.get(str(role_id)) if role_id is not None else None
        proposal = propose_role(role, role_id, field_names or {})
        return {
            **entry,
            "close_role": f"{role.name} ({role.kind})" if role else f"unknown ({role_id})",
            "proposed_security_role": proposal.role,
            "security_role_reason": proposal.reason,
        }

    if systemusers is None:
        users = [
            {
                "close_user_id": str(u["id"]),
                "email": u.get("email"),
                "name": _name(u),
                "active": active[str(u["id"])],
                "records": int(records_owned.get(str(u["id"]), 0)),
                "dynamics_user": None,
                "status": "not checked",
            }
            for u in close_users
        ]
        return {**settings, "users": [with_role(u) for u in users]}
    overrides = {str(k).lower(): str(v).lower() for k, v in (settings["overrides"] or {}).items()}
    table = match_owners(
        close_users,
        systemusers,
        overrides,
        settings["fallback_owner"],
        settings["disabled_users"],
        records_owned,
    )
    emails = {str(s["systemuserid"]): s.get("internalemailaddress") for s in systemusers}
    users = []
    for row in table.iter_rows(named=True):
        uid = row["close_user_id"]
        entry = {
            "close_user_id": uid,
            "email": row["close_email"],
            "name": row["close_name"],
            "active": active.get(uid, False),
            "records": int(row["records_owned"] or 0),
            "dynamics_user": emails.get(row["systemuserid"] or ""),
            "status": row["status"],
            "reason": row["reason"],
        }
        if row["status"] in ("unmatched", "disabled") and entry["records"]:
            entry[REVIEW_KEY] = (
                f"owns {entry['records']} records and has no enabled Dataverse user: "
                + fix_for(row["status"], uid, settings["fallback_owner"])
            )
        users.append(with_role(entry))
    return {**settings, "users": users}


def _name(u: Mapping[str, Any]) -> str | None:
    return " ".join(str(x) for x in (u.get("first_name"), u.get("last_name")) if x) or None


OWNERS_HELP = """\
# Close users -> Dataverse systemusers, matched by email (case-insensitive); nothing is created.
# The decisions are the first three keys:
#   overrides:      Close user id or email -> email of the enabled Dataverse user who owns their records
#   fallback_owner: email of an enabled Dataverse user who receives the records of unmatched users
#                   (null: the owner check blocks loading while an unmatched user owns records)
#   disabled_users: queue (block, like unmatched) or fallback (records go to fallback_owner)
# users: what the match gives under those settings (regenerated by every propose-mapping run; the owner
# check matches again against the target at migration time). close_role / proposed_security_role /
# security_role_reason: the security-role plan, for admin review; nothing is assigned automatically
# (reports/<run_id>/security_roles.md adds each Dynamics user's current roles and teams).
"""
