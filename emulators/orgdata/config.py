"""Org-level configuration: organisation, users, statuses, pipelines, custom fields, custom activity types."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from .model import FileBlob, SizeProfile
from .shape import OrgShape
from .util import CURRENCY_SYMBOLS, ORG_CREATED_US, US_PER_DAY, Ids, ts, ts_naive


@dataclass
class Ctx:
    """Mutable state shared by the generator stages (one per `generate` call)."""

    rng: random.Random
    ids: Ids
    profile: SizeProfile
    shape: OrgShape
    org_id: str = ""
    users: list[dict] = field(default_factory=list)
    inactive_users: list[dict] = field(default_factory=list)
    user_names: dict[str, str] = field(default_factory=dict)
    user_emails: dict[str, str] = field(default_factory=dict)
    owner_ids: list[str] = field(default_factory=list)  # record owners, incl. the deactivated user
    lead_statuses: list[dict] = field(default_factory=list)
    pipelines: list[dict] = field(default_factory=list)
    opportunity_statuses: list[dict] = field(default_factory=list)
    custom_fields: dict[str, list[dict]] = field(default_factory=dict)
    custom_activity_types: list[dict] = field(default_factory=list)
    undefined_field_id: str = ""
    files: dict[str, FileBlob] = field(default_factory=dict)
    dynamics_users: list[dict] = field(default_factory=list)
    edge: dict = field(default_factory=dict)

    def user_name(self, user_id: str | None) -> str | None:
        return None if user_id is None else self.user_names[user_id]


def _audit(ctx: Ctx, us: int, creator: str | None) -> dict:
    stamp = ts(us)
    return {
        "created_by": creator,
        "updated_by": creator,
        "date_created": stamp,
        "date_updated": stamp,
        "organization_id": ctx.org_id,
    }


def build_users(ctx: Ctx) -> None:
    rng, domain = ctx.rng, ctx.shape.domain
    weights: dict[str, int] = {}
    for i, spec in enumerate(ctx.shape.users):
        uid = ctx.ids.new("user")
        email = spec.email.format(d=domain)
        created = ORG_CREATED_US + i * 7 * US_PER_DAY + rng.randrange(US_PER_DAY)
        user = {
            "id": uid,
            "first_name": spec.first,
            "last_name": spec.last,
            "email": email,
            "email_verified_at": ts(created + 3_600_000_000),
            "google_profile_image_url": None,
            "image": "https://secure.gravatar.com/avatar/" + hashlib.md5(email.encode()).hexdigest(),
            "organizations": [ctx.org_id],
            "last_used_timezone": rng.choice(("America/New_York", "Europe/Berlin", "America/Los_Angeles")),
            "date_created": ts(created),
            "date_updated": ts(created + rng.randrange(200) * US_PER_DAY),
        }
        ctx.user_names[uid] = f"{spec.first} {spec.last}"
        ctx.user_emails[uid] = user["email"]
        weights[uid] = spec.owner_weight
        (ctx.users if spec.close_active else ctx.inactive_users).append(user)
        if spec.dynamics_email is not None:
            ctx.dynamics_users.append(
                {
                    "firstname": spec.first,
                    "lastname": spec.last,
                    "internalemailaddress": spec.dynamics_email.format(d=domain, D=domain.title()),
                    "isdisabled": spec.dynamics_disabled,
                    "close_user_id": uid,
                }
            )
            if spec.dynamics_disabled:
                ctx.edge.setdefault("disabled_user_ids", []).append(uid)
        else:
            ctx.edge.setdefault("unmatched_user_ids", []).append(uid)
        if not spec.close_active:
            ctx.edge.setdefault("inactive_close_user_ids", []).append(uid)
    for key in ("unmatched_user_id", "disabled_user_id", "inactive_close_user_id"):
        ctx.edge[key] = ctx.edge[key[:-3] + "_ids"][0]
    # A Dynamics-only administrator: real tenants always have users the Close org never had.
    ctx.dynamics_users.append(
        {
            "firstname": "CRM",
            "lastname": "Administrator",
            "internalemailaddress": "crm.admin@" + domain,
            "isdisabled": False,
            "close_user_id": None,
        }
    )
    # Owners weighted: the first users own most records; the gotcha users own a visible share.
    all_ids = [u["id"] for u in ctx.users] + [u["id"] for u in ctx.inactive_users]
    ctx.owner_ids = [uid for uid in all_ids for _ in range(weights[uid])]


def _membership(ctx: Ctx, user: dict, role: str) -> dict:
    return {
        "id": ctx.ids.new("memb"),
        "auto_record_calls": "unset",
        "organization_id": ctx.org_id,
        "permissions_granted": ["bulk_edit", "export"] if role == "admin" else [],
        "role_id": role,
        "track_email_opens": True,
        "user_id": user["id"],
        "user_email": user["email"],
        "user_first_name": user["first_name"],
        "user_last_name": user["last_name"],
        "user_full_name": f"{user['first_name']} {user['last_name']}",
        "user_phone": None,
    }


def build_statuses(ctx: Ctx) -> None:
    for label in ctx.shape.lead_status_labels:
        ctx.lead_statuses.append({"id": ctx.ids.new("stat"), "label": label, "organization_id": ctx.org_id})
    owner = ctx.users[0]["id"]
    for n, spec in enumerate(ctx.shape.pipelines):
        pid = ctx.ids.new("pipe")
        created = ORG_CREATED_US + n * 30 * US_PER_DAY + ctx.rng.randrange(10**9)
        embedded = []
        for label, kind in spec.statuses:
            sid = ctx.ids.new("stat")
            embedded.append({"id": sid, "label": label, "type": kind})
            ctx.opportunity_statuses.append(
                {"id": sid, "organization_id": ctx.org_id, "label": label, "type": kind, "pipeline_id": pid}
            )
        ctx.pipelines.append(
            {
                "created_by": None if n == 0 else owner,
                "date_created": ts_naive(created),
                "date_updated": ts_naive(created + ctx.rng.randrange(10**10)),
                "id": pid,
                "name": spec.name,
                "organization_id": ctx.org_id,
                "statuses": embedded,
                "updated_by": None if n == 0 else owner,
            }
        )


def _field(ctx: Ctx, spec: tuple, us: int, extra: dict) -> dict:
    name, kind, multiple, choices, description = spec
    obj = {
        "accepts_multiple_values": multiple,
        "back_reference_is_visible": None,
        "choices": list(choices) if choices else None,
        "converting_to_type": None,
        "description": description,
        "editable_with_roles": ["admin"] if kind == "hidden" else [],
        "id": ctx.ids.new("cf"),
        "is_shared": False,
        "name": name,
        "referenced_custom_type_id": None,
        "type": kind,
    }
    obj.update(extra)
    obj.update(_audit(ctx, us, ctx.users[0]["id"]))
    return obj


def build_custom_fields(ctx: Ctx) -> None:
    us = ORG_CREATED_US + 2 * US_PER_DAY
    for kind, specs in ctx.shape.custom_fields:
        ctx.custom_fields[kind] = []
        for spec in specs:
            us += ctx.rng.randrange(10**9)
            field_tuple = (spec.name, spec.type, spec.multiple, spec.choices, spec.description)
            ctx.custom_fields[kind].append(_field(ctx, field_tuple, us, {}))
    ctx.custom_fields["activity"] = []
    owner = ctx.users[0]["id"]
    for n, tspec in enumerate(ctx.shape.activity_types):
        tid = ctx.ids.new("actitype")
        created = ORG_CREATED_US + (40 + 60 * n) * US_PER_DAY + ctx.rng.randrange(10**9)
        embedded = []
        for f in tspec.fields:
            extra = {"custom_activity_type_id": tid, "required": f.required}
            fobj = _field(ctx, (f.name, f.type, f.multiple, f.choices, None), created, extra)
            ctx.custom_fields["activity"].append(fobj)
            # The type listing embeds field metadata without choices (close_api.md §4.9).
            embedded.append({k: fobj[k] for k in _EMBEDDED_FIELD_KEYS})
        ctx.custom_activity_types.append(
            {
                "api_create_only": False,
                "created_by": owner,
                "date_created": ts_naive(created),
                "date_updated": ts_naive(created + ctx.rng.randrange(10**10)),
                "description": tspec.description,
                "editable_with_roles": [],
                "fields": embedded,
                "id": tid,
                "is_archived": tspec.archived,
                "name": tspec.name,
                "organization_id": ctx.org_id,
                "updated_by": owner,
            }
        )
        if tspec.orphaned_values:
            ctx.edge["broken_custom_activity_type_id"] = tid
        if tspec.archived:
            ctx.edge.setdefault("archived_custom_activity_type_ids", []).append(tid)
    # Id of the field deleted from the orphaned-values type: well-formed, defined nowhere.
    ctx.undefined_field_id = ctx.ids.new("cf")
    ctx.edge["undefined_field_id"] = ctx.undefined_field_id


_EMBEDDED_FIELD_KEYS = (
    "accepts_multiple_values",
    "back_reference_is_visible",
    "converting_to_type",
    "description",
    "editable_with_roles",
    "id",
    "is_shared",
    "name",
    "referenced_custom_type_id",
    "required",
    "type",
)


def build_organization(ctx: Ctx) -> dict:
    stamp = ts(ORG_CREATED_US)
    return {
        "id": ctx.org_id,
        "name": ctx.shape.org_name,
        "plan_type": "business",
        "currency": ctx.shape.currencies[0],
        "currency_symbol": CURRENCY_SYMBOLS[ctx.shape.currencies[0]],
        "created_by": None,
        "updated_by": None,
        "date_created": stamp,
        "date_updated": ts(ORG_CREATED_US + 400 * US_PER_DAY),
        "memberships": [_membership(ctx, u, "admin" if i == 0 else "user") for i, u in enumerate(ctx.users)],
        "inactive_memberships": [_membership(ctx, u, "user") for u in ctx.inactive_users],
        "lead_statuses": [{"id": s["id"], "label": s["label"]} for s in ctx.lead_statuses],
        "pipelines": ctx.pipelines,
    }
