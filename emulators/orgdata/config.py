"""Org-level configuration: organisation, users, roles, statuses, pipelines, custom fields, custom activity types.

Roles (close_api.md §4.6): the four built-in roles every org has (literal ids, epoch-zero naive dates,
`editable: false`) and, for the shapes in `ROLE_PLANS`, custom roles (`role_…`, Business/Enterprise plan) with
their permissions; each membership's `role_id` names the user's one role ("Each user has a single role set via
the Memberships API", developer.close.com Roles). Permission lists: Admin and Restricted User as the reference
quotes them (Airbyte's recorded `roles` stream), Super User from Airbyte's recorded record of it
(airbytehq/airbyte source-acceptance-test unit test `not_sorted_data`), User from Close's help page "User role"
(Restricted User's permissions plus bulk import, bulk email and sequence subscriptions, delete and merge
leads). A role without `view_all_leads` has its lead visibility set ("must be set otherwise"): the lead user
fields that grant it and `visibility_user_lcf_behavior`.
"""

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
    roles: list[dict] = field(default_factory=list)
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


RESTRICTED_PERMISSIONS = (
    "delete_own_activities",
    "delete_own_opportunities",
    "delete_own_tasks",
    "calling",
    "view_all_leads",
)
USER_PERMISSIONS = (
    *RESTRICTED_PERMISSIONS,
    "bulk_email",
    "bulk_import",
    "bulk_sequence_subscriptions",
    "delete_leads",
    "merge_leads",
)
SUPERUSER_PERMISSIONS = (
    "bulk_edit",
    "delete_own_opportunities",
    "export",
    "manage_group_numbers",
    "manage_email_sequences",
    "delete_leads",
    "call_coach_listen",
    "call_coach_barge",
    "manage_others_tasks",
    "manage_others_activities",
    "delete_own_tasks",
    "manage_customizations",
    "manage_team_smart_views",
    "bulk_delete",
    "manage_team_email_templates",
    "bulk_email",
    "merge_leads",
    "calling",
    "bulk_sequence_subscriptions",
    "bulk_import",
    "delete_own_activities",
    "manage_others_opportunities",
)
ADMIN_PERMISSIONS = (
    "bulk_delete",
    "bulk_edit",
    "bulk_email",
    "bulk_import",
    "bulk_sequence_subscriptions",
    "call_coach_barge",
    "call_coach_listen",
    "calling",
    "delete_leads",
    "delete_own_activities",
    "delete_own_opportunities",
    "delete_own_tasks",
    "export",
    "manage_customizations",
    "manage_email_sequences",
    "manage_group_numbers",
    "manage_organization",
    "manage_others_activities",
    "manage_others_opportunities",
    "manage_others_tasks",
    "manage_team_email_templates",
    "manage_team_smart_views",
    "merge_leads",
    "view_all_leads",
)
BUILT_IN_ROLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("admin", "Admin", ADMIN_PERMISSIONS),
    ("superuser", "Super User", SUPERUSER_PERMISSIONS),
    ("user", "User", USER_PERMISSIONS),
    ("restricteduser", "Restricted User", RESTRICTED_PERMISSIONS),
)
BUILT_IN_DATE = "0001-01-01T00:00:00"


@dataclass(frozen=True)
class RoleSpec:
    """A custom role; without `view_all_leads` its users see the leads a lead user field assigns them."""

    name: str
    permissions: tuple[str, ...]
    visibility_behavior: str = "require_assignment"  # or allow_unassigned (when view_all_leads is missing)


@dataclass(frozen=True)
class RolePlan:
    """An org's custom roles and each user's role (shape user order): a built-in id or a custom role's name."""

    custom: tuple[RoleSpec, ...]
    assignment: tuple[str, ...]


# Per org shape (custom roles need Close's Business/Enterprise plan); a shape absent here has the built-in
# roles only, its first user Admin and every other User.
ROLE_PLANS: dict[str, RolePlan] = {
    "brightwave": RolePlan(
        (
            RoleSpec(
                "Sales Lead",
                (*USER_PERMISSIONS, "export", "manage_others_opportunities", "manage_others_tasks"),
            ),
            RoleSpec("Contractor (own leads)", ("calling", "delete_own_activities", "delete_own_tasks")),
        ),
        ("admin", "Sales Lead", "user", "user", "restricteduser", "Contractor (own leads)", "user", "user"),
    ),
    "nordlicht": RolePlan((), ("admin", "superuser", "user", "restricteduser", "user")),
    "pacifica": RolePlan(
        (
            RoleSpec(
                "Responsable de equipo",
                (*USER_PERMISSIONS, "manage_others_activities", "manage_others_opportunities", "export"),
            ),
            RoleSpec("Agence partenaire", ("calling", "delete_own_activities"), "allow_unassigned"),
            RoleSpec("Opérations CRM", (*USER_PERMISSIONS, "manage_customizations", "bulk_edit")),
        ),
        (
            "admin",
            "Responsable de equipo",
            "user",
            "Agence partenaire",
            "Opérations CRM",
            "user",
            "restricteduser",
            "Agence partenaire",
            "user",
            "superuser",
        ),
    ),
}


def build_roles(ctx: Ctx) -> dict[str, str]:
    """The org's roles into `ctx.roles`; returns each user id's role id (memberships carry it).

    Role ids come from their own random stream: the org's stream (and so every other id) stays as it was."""
    ctx.roles = [
        {
            "date_created": BUILT_IN_DATE,
            "date_updated": BUILT_IN_DATE,
            "editable": False,
            "id": role_id,
            "name": name,
            "organization_id": ctx.org_id,
            "permissions": list(permissions),
        }
        for role_id, name, permissions in BUILT_IN_ROLES
    ]
    users = ctx.users + ctx.inactive_users
    plan = ROLE_PLANS.get(ctx.shape.name)
    if plan is None:
        return {u["id"]: "admin" if n == 0 else "user" for n, u in enumerate(users)}
    ids = Ids(random.Random(f"{ctx.org_id}:roles"))
    lead_user_fields = [f["id"] for f in ctx.custom_fields.get("lead", []) if f["type"] == "user"]
    owner = ctx.users[0]["id"]
    by_name: dict[str, str] = {}
    for n, spec in enumerate(plan.custom):
        created = ORG_CREATED_US + (20 + 45 * n) * US_PER_DAY
        role: dict = {
            "created_by": owner,
            "date_created": ts_naive(created),
            "date_updated": ts_naive(created + 9 * US_PER_DAY),
            "editable": True,
            "id": ids.new("role"),
            "name": spec.name,
            "organization_id": ctx.org_id,
            "permissions": list(spec.permissions),
            "updated_by": owner,
            "visibility_user_lcf_behavior": None,
            "visibility_user_lcf_ids": [],
        }
        if "view_all_leads" not in spec.permissions:
            role["visibility_user_lcf_behavior"] = spec.visibility_behavior
            role["visibility_user_lcf_ids"] = lead_user_fields
        ctx.roles.append(role)
        by_name[spec.name] = role["id"]
    # The plan names roles in the shape's user order; ctx lists active users first, so match by e-mail.
    order = [u.email.format(d=ctx.shape.domain) for u in ctx.shape.users]
    assigned = dict(zip(order, plan.assignment, strict=True))
    return {u["id"]: by_name.get(assigned[u["email"]], assigned[u["email"]]) for u in users}


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
    role_of = build_roles(ctx)
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
        "memberships": [_membership(ctx, u, role_of[u["id"]]) for u in ctx.users],
        "inactive_memberships": [_membership(ctx, u, role_of[u["id"]]) for u in ctx.inactive_users],
        "lead_statuses": [{"id": s["id"], "label": s["label"]} for s in ctx.lead_statuses],
        "pipelines": ctx.pipelines,
    }
