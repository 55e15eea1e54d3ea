"""Org-level configuration: organisation, users, statuses, pipelines, custom fields, custom activity types."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from .model import FileBlob, SizeProfile
from .util import ORG_CREATED_US, US_PER_DAY, Ids, ts, ts_naive

ORG_NAME = "Brightwave Analytics"
ORG_DOMAIN = "brightwave.example.com"

# (first, last, close email, dynamics email or None (no counterpart), dynamics disabled, active in Close)
USER_SPECS: tuple[tuple[str, str, str, str | None, bool, bool], ...] = (
    ("Jane", "Doe", "jane.doe@{d}", "Jane.Doe@{D}", False, True),
    ("Marco", "Rossi", "marco.rossi@{d}", "marco.rossi@{d}", False, True),
    ("Aiko", "Tanaka", "aiko.tanaka@{d}", "AIKO.TANAKA@{D}", False, True),
    ("Olusegun", "Adeyemi", "olusegun.adeyemi@{d}", "olusegun.adeyemi@{d}", False, True),
    ("Sofía", "Müller", "sofia.mueller@{d}", "Sofia.Mueller@{d}", False, True),
    ("Liam", "O'Brien", "liam.obrien@{d}", None, False, True),  # contractor: no Dynamics user
    ("Priya", "Raman", "priya.raman@{d}", "priya.raman@{d}", True, True),  # left: disabled in Dynamics
    ("Tom", "Baker", "tom.baker@{d}", "Tom.Baker@{d}", False, False),  # deactivated in Close, owns records
)
UNMATCHED_INDEX, DISABLED_INDEX, INACTIVE_INDEX = 5, 6, 7

LEAD_STATUS_LABELS = (
    "Potential",
    "Contacted",
    "Qualified",
    "Customer",
    "Bad Fit",
    "Not Interested",
    "Canceled",
)

PIPELINE_SPECS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Sales",
        (
            ("Demo Scheduled", "active"),
            ("Proposal Sent", "active"),
            ("Negotiation", "active"),
            ("Won", "won"),
            ("Lost", "lost"),
        ),
    ),
    (
        "Renewals",
        (
            ("Up for Renewal", "active"),
            ("Renewal Negotiation", "active"),
            ("Renewed", "won"),
            ("Churned", "lost"),
        ),
    ),
    ("Partnerships", (("Intro", "active"), ("Signed", "won"), ("Declined", "lost"))),
)

# (name, type, multiple, choices, description). Every Close field type appears on every object kind.
_CF_SPECS: dict[str, tuple[tuple[str, str, bool, tuple[str, ...] | None, str | None], ...]] = {
    "lead": (
        (
            "Industry",
            "choices",
            False,
            ("Software", "Real estate", "Healthcare", "Retail", "Manufacturing"),
            None,
        ),
        ("Product Interest", "choices", True, ("Analytics", "Dashboards", "API", "Consulting"), None),
        ("Employees", "number", False, None, "Headcount of the company"),
        ("Contract Start", "date", False, None, None),
        ("Last Demo At", "datetime", False, None, None),
        ("Lead Owner", "user", False, None, "User responsible for this lead"),
        ("Primary Contact", "contact", False, None, None),
        ("Internal Notes", "textarea", False, None, None),
        ("Referral Source", "text", False, None, None),
        ("Legacy CRM ID", "hidden", False, None, "Id in the CRM used before Close"),
        ("Account Team", "user", True, None, None),
    ),
    "contact": (
        ("Role", "choices", True, ("Decision Maker", "Gatekeeper", "Champion", "End User"), None),
        ("Seniority", "choices", False, ("Junior", "Senior", "Executive"), None),
        ("Birthday", "date", False, None, None),
        ("Last Contacted At", "datetime", False, None, None),
        ("Lead Score", "number", False, None, None),
        ("LinkedIn Handle", "text", False, None, None),
        ("Bio", "textarea", False, None, None),
        ("Relationship Owner", "user", False, None, None),
        ("Assistant", "contact", False, None, None),
        ("Import Hash", "hidden", False, None, None),
    ),
    "opportunity": (
        ("Deal Type", "choices", False, ("New Business", "Upsell", "Renewal"), None),
        ("Competitors", "choices", True, ("Tableau", "Looker", "Power BI", "In-house"), None),
        ("Seats", "number", False, None, None),
        ("Expected Go-Live", "date", False, None, None),
        ("Demo Done At", "datetime", False, None, None),
        ("Sales Engineer", "user", False, None, None),
        ("Champion", "contact", False, None, None),
        ("Loss Reason Detail", "textarea", False, None, None),
        ("PO Number", "text", False, None, None),
        ("Sync Token", "hidden", False, None, None),
    ),
}

# Custom activity types: (name, description, archived, fields as (name, type, multiple, choices, required)).
_CAT_SPECS = (
    (
        "Demo Feedback",
        "Structured feedback captured after every product demo",
        False,
        (
            ("Rating", "number", False, None, True),
            ("Outcome", "choices", False, ("Positive", "Neutral", "Negative"), True),
            ("Topics", "choices", True, ("Pricing", "Security", "Integrations", "Reporting"), False),
            ("Follow-up Date", "date", False, None, False),
            ("Demo Start", "datetime", False, None, False),
            ("Presenter", "user", False, None, False),
            ("Attendee", "contact", False, None, False),
            ("Comments", "textarea", False, None, False),
            ("Recording Link", "text", False, None, False),
            ("Internal Score", "hidden", False, None, False),
        ),
    ),
    (
        # The "broken" type: its instances still carry a value of a field deleted from the type.
        "Onboarding Checklist",
        "Customer onboarding milestones",
        False,
        (
            ("Stage", "choices", False, ("Kickoff", "Data Import", "Training", "Go-Live"), True),
            ("Kickoff Date", "date", False, None, False),
            ("Notes", "textarea", False, None, False),
        ),
    ),
    ("Site Visit", "Retired in 2024", True, (("Visit Summary", "text", False, None, False),)),
)


@dataclass
class Ctx:
    """Mutable state shared by the generator stages (one per `generate` call)."""

    rng: random.Random
    ids: Ids
    profile: SizeProfile
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
    rng = ctx.rng
    for i, (first, last, email, dyn_email, disabled, active) in enumerate(USER_SPECS):
        uid = ctx.ids.new("user")
        email = email.format(d=ORG_DOMAIN)
        created = ORG_CREATED_US + i * 7 * US_PER_DAY + rng.randrange(US_PER_DAY)
        user = {
            "id": uid,
            "first_name": first,
            "last_name": last,
            "email": email,
            "email_verified_at": ts(created + 3_600_000_000),
            "google_profile_image_url": None,
            "image": "https://secure.gravatar.com/avatar/" + hashlib.md5(email.encode()).hexdigest(),
            "organizations": [ctx.org_id],
            "last_used_timezone": rng.choice(("America/New_York", "Europe/Berlin", "America/Los_Angeles")),
            "date_created": ts(created),
            "date_updated": ts(created + rng.randrange(200) * US_PER_DAY),
        }
        ctx.user_names[uid] = f"{first} {last}"
        ctx.user_emails[uid] = user["email"]
        (ctx.users if active else ctx.inactive_users).append(user)
        if dyn_email is not None:
            ctx.dynamics_users.append(
                {
                    "firstname": first,
                    "lastname": last,
                    "internalemailaddress": dyn_email.format(d=ORG_DOMAIN, D=ORG_DOMAIN.title()),
                    "isdisabled": disabled,
                    "close_user_id": uid,
                }
            )
        if i == UNMATCHED_INDEX:
            ctx.edge["unmatched_user_id"] = uid
        elif i == DISABLED_INDEX:
            ctx.edge["disabled_user_id"] = uid
        elif i == INACTIVE_INDEX:
            ctx.edge["inactive_close_user_id"] = uid
    # A Dynamics-only administrator: real tenants always have users the Close org never had.
    ctx.dynamics_users.append(
        {
            "firstname": "CRM",
            "lastname": "Administrator",
            "internalemailaddress": "crm.admin@" + ORG_DOMAIN,
            "isdisabled": False,
            "close_user_id": None,
        }
    )
    # Owners weighted: the first users own most records; the three gotcha users own a visible share.
    all_ids = [u["id"] for u in ctx.users] + [u["id"] for u in ctx.inactive_users]
    weights = (6, 5, 4, 4, 3, 2, 2, 2)
    ctx.owner_ids = [uid for uid, w in zip(all_ids, weights, strict=True) for _ in range(w)]


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
    for label in LEAD_STATUS_LABELS:
        ctx.lead_statuses.append({"id": ctx.ids.new("stat"), "label": label, "organization_id": ctx.org_id})
    owner = ctx.users[0]["id"]
    for n, (name, statuses) in enumerate(PIPELINE_SPECS):
        pid = ctx.ids.new("pipe")
        created = ORG_CREATED_US + n * 30 * US_PER_DAY + ctx.rng.randrange(10**9)
        embedded = []
        for label, kind in statuses:
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
                "name": name,
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
    for kind, specs in _CF_SPECS.items():
        ctx.custom_fields[kind] = []
        for spec in specs:
            us += ctx.rng.randrange(10**9)
            ctx.custom_fields[kind].append(_field(ctx, spec, us, {}))
    ctx.custom_fields["activity"] = []
    owner = ctx.users[0]["id"]
    for n, (name, description, archived, fields) in enumerate(_CAT_SPECS):
        tid = ctx.ids.new("actitype")
        created = ORG_CREATED_US + (40 + 60 * n) * US_PER_DAY + ctx.rng.randrange(10**9)
        embedded = []
        for fname, kind, multiple, choices, required in fields:
            extra = {"custom_activity_type_id": tid, "required": required}
            fobj = _field(ctx, (fname, kind, multiple, choices, None), created, extra)
            ctx.custom_fields["activity"].append(fobj)
            # The type listing embeds field metadata without choices (close_api.md §4.9).
            embedded.append({k: fobj[k] for k in _EMBEDDED_FIELD_KEYS})
        ctx.custom_activity_types.append(
            {
                "api_create_only": False,
                "created_by": owner,
                "date_created": ts_naive(created),
                "date_updated": ts_naive(created + ctx.rng.randrange(10**10)),
                "description": description,
                "editable_with_roles": [],
                "fields": embedded,
                "id": tid,
                "is_archived": archived,
                "name": name,
                "organization_id": ctx.org_id,
                "updated_by": owner,
            }
        )
    # Id of the field deleted from "Onboarding Checklist": well-formed, defined nowhere.
    ctx.undefined_field_id = ctx.ids.new("cf")
    ctx.edge["broken_custom_activity_type_id"] = ctx.custom_activity_types[1]["id"]
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
        "name": ORG_NAME,
        "plan_type": "business",
        "currency": "USD",
        "currency_symbol": "$",
        "created_by": None,
        "updated_by": None,
        "date_created": stamp,
        "date_updated": ts(ORG_CREATED_US + 400 * US_PER_DAY),
        "memberships": [_membership(ctx, u, "admin" if i == 0 else "user") for i, u in enumerate(ctx.users)],
        "inactive_memberships": [_membership(ctx, u, "user") for u in ctx.inactive_users],
        "lead_statuses": [{"id": s["id"], "label": s["label"]} for s in ctx.lead_statuses],
        "pipelines": ctx.pipelines,
    }
