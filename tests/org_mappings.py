"""A reviewed mappings root for a generated org, without an extraction: the org's objects go straight into
propose-mapping's input (`propose.OrgSnapshot`), then the scripted review. Unit tests load the mapping
config from it (the repository's mappings/ holds project defaults only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulators.orgdata import CloseOrg
from migration_assets.demo import copy_defaults, demo_decisions, first_enabled_user
from migration_assets.mapping.config import load_settings
from migration_assets.mapping.scripted_review import accept_proposals
from migration_assets.target.propose import OrgSnapshot, ProposalResult, propose_files


def _samples(org: CloseOrg) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for obj in [*org.leads, *org.contacts, *org.opportunities]:
        for key, value in obj.items():
            if key.startswith("custom.cf_") and value is not None:
                out.setdefault(key.removeprefix("custom."), []).append(value)
    return out


def snapshot(org: CloseOrg) -> OrgSnapshot:
    used: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for a in org.activities:
        type_id = a.get("custom_activity_type_id")
        if a.get("_type") != "CustomActivity" or not type_id:
            continue
        counts[type_id] = counts.get(type_id, 0) + 1
        for key, value in a.items():
            if key.startswith("custom.") and value not in (None, [], ""):
                fields = used.setdefault(type_id, {})
                fields[key.removeprefix("custom.")] = fields.get(key.removeprefix("custom."), 0) + 1
    users = [{**u, "is_active": True} for u in org.users] + [
        {**u, "is_active": False} for u in org.inactive_users
    ]
    return OrgSnapshot(
        str(org.organization.get("id")),
        None,
        list(org.lead_statuses),
        list(org.pipelines),
        dict(org.custom_fields),
        _samples(org),
        list(org.custom_activity_types),
        used,
        counts,
        users,
        {},
    )


def proposed_root(org: CloseOrg, root: Path) -> tuple[Path, ProposalResult]:
    copy_defaults(root)
    return root, propose_files(root, load_settings(root), snapshot(org))


def reviewed_root(org: CloseOrg, root: Path, demo: bool = False) -> Path:
    """Proposed and accepted as is (strict defaults: no fallback owner, no tolerated rejection), or with
    the demo's decisions (`demo`)."""
    proposed_root(org, root)
    accept_proposals(root, demo_decisions(first_enabled_user(org.dynamics_users)) if demo else None)
    return root
