"""Users, organization, roles, statuses, pipelines, custom fields, custom activity types, sequences, smart views.

Roles (close_api.md §4.6; developer.close.com "Roles"): `GET /role/` lists the org's roles, built-in and
custom, in the offset-paged `{"data": [...], "has_more": ...}` envelope of the other config lists (Airbyte
pages it like its other streams, §2.3); `GET /role/{id}/` returns one, built-in ids (`admin`, `superuser`,
`user`, `restricteduser`) included; an unknown id gets the 404 of every other resource.
"""

from __future__ import annotations

from typing import Any

from ..errors import bad_request, not_found
from ..filters import values
from ..jsonutil import dumps
from .base import Ctx, render_all, render_list, render_one

CUSTOM_FIELD_KINDS = ("lead", "contact", "opportunity", "activity", "shared")
_CF_MODEL = {
    "lead": "LeadCustomField",
    "contact": "ContactCustomField",
    "opportunity": "OpportunityCustomField",
    "activity": "ActivityCustomField",
    "shared": "SharedCustomField",
}


def me(ctx: Ctx) -> bytes:
    org = ctx.store.org
    if not org.users:
        raise not_found("User")
    user = dict(org.users[0])  # the API key belongs to the first (admin) user
    memberships = [m for m in org.organization.get("memberships", []) if m.get("user_id") == user["id"]]
    summary = {k: v for k, v in org.organization.items() if k not in ("memberships", "inactive_memberships")}
    user.setdefault("memberships", memberships)
    user.setdefault("organizations", [summary])
    return _dumps(user)


def _dumps(obj: dict[str, Any]) -> bytes:
    return dumps(obj)


def list_users(ctx: Ctx) -> bytes:
    users = list(ctx.store.org.users)
    order = ctx.params.get("_order_by")
    if order == "last_name,first_name":
        users.sort(key=lambda u: (u.get("last_name") or "", u.get("first_name") or "", u["id"]))
    elif order == "first_name,last_name":
        users.sort(key=lambda u: (u.get("first_name") or "", u.get("last_name") or "", u["id"]))
    return render_list(ctx, "user", users)


def get_user(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.users_by_id.get(ctx.args["id"]), "User")


def get_organization(ctx: Ctx) -> bytes:
    org = ctx.store.org.organization
    if ctx.args["id"] != org.get("id"):
        raise not_found("Organization")
    expand = {e.strip() for e in ctx.params.get("_expand", "").split(",") if e.strip()}
    if not expand:
        return render_one(ctx, org, "Organization")
    out = dict(org)
    users = ctx.store.users_by_id
    for key in ("memberships", "inactive_memberships"):
        if f"{key}__user" in expand:
            out[key] = [{**m, "user": users.get(m.get("user_id"))} for m in org.get(key, [])]
    return render_one(ctx, out, "Organization", serializer=_dumps)


def list_roles(ctx: Ctx) -> bytes:
    return render_list(ctx, "role", ctx.store.org.roles)


def get_role(ctx: Ctx) -> bytes:
    role = next((r for r in ctx.store.org.roles if r["id"] == ctx.args["id"]), None)
    return render_one(ctx, role, "Role")


def list_lead_statuses(ctx: Ctx) -> bytes:
    return render_list(ctx, "status", ctx.store.org.lead_statuses)


def get_lead_status(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.lead_statuses_by_id.get(ctx.args["id"]), "LeadStatus")


def list_opportunity_statuses(ctx: Ctx) -> bytes:
    rows = ctx.store.org.opportunity_statuses
    pipeline = values(ctx.params, "pipeline_id")
    if pipeline is not None:
        rows = [s for s in rows if s.get("pipeline_id") in pipeline]
    return render_list(ctx, "status", rows)


def get_opportunity_status(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.opportunity_statuses_by_id.get(ctx.args["id"]), "OpportunityStatus")


def list_pipelines(ctx: Ctx) -> bytes:
    return render_all(ctx, ctx.store.org.pipelines)


def get_pipeline(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.pipelines_by_id.get(ctx.args["id"]), "Pipeline")


def _custom_fields(ctx: Ctx, kind: str) -> list[dict[str, Any]]:
    if kind not in CUSTOM_FIELD_KINDS:
        raise not_found("CustomField")
    return list(ctx.store.org.custom_fields.get(kind, []))


def list_custom_fields(ctx: Ctx) -> bytes:
    return render_list(ctx, "custom_field", _custom_fields(ctx, ctx.args["kind"]))


def get_custom_field(ctx: Ctx) -> bytes:
    kind = ctx.args["kind"]
    match = next((f for f in _custom_fields(ctx, kind) if f["id"] == ctx.args["id"]), None)
    return render_one(ctx, match, _CF_MODEL.get(kind, "CustomField"))


def custom_field_schema(ctx: Ctx) -> bytes:
    kind = ctx.args["kind"]
    fields = _custom_fields(ctx, kind)
    schema = {
        "object_type": kind,
        "name": kind.capitalize(),
        "organization_id": ctx.store.organization_id,
        "fields": fields,
    }
    return _dumps(schema)


def list_custom_activity_types(ctx: Ctx) -> bytes:
    return render_all(ctx, ctx.store.org.custom_activity_types)


def get_custom_activity_type(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.custom_activity_types_by_id.get(ctx.args["id"]), "CustomActivityType")


def list_sequences(ctx: Ctx) -> bytes:
    return render_list(ctx, "sequence", ctx.store.org.sequences)


def get_sequence(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.sequences_by_id.get(ctx.args["id"]), "Sequence")


def list_subscriptions(ctx: Ctx) -> bytes:
    filters = {
        name: values(ctx.params, name, allow_in=False) for name in ("sequence_id", "contact_id", "lead_id")
    }
    given = {k: v for k, v in filters.items() if v is not None}
    if not given:
        raise bad_request("At least one of sequence_id, contact_id, and lead_id is required.")
    rows = [s for s in ctx.store.org.sequence_subscriptions if all(s.get(k) in v for k, v in given.items())]
    return render_list(ctx, "sequence_subscription", rows)


def get_subscription(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.subscriptions_by_id.get(ctx.args["id"]), "SequenceSubscription")


def list_saved_searches(ctx: Ctx) -> bytes:
    types = values(ctx.params, "type") or frozenset(["lead"])
    rows = [s for s in ctx.store.org.smart_views if s.get("type", "lead") in types]
    return render_list(ctx, "saved_search", rows)


def get_saved_search(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.smart_views_by_id.get(ctx.args["id"]), "SavedSearch")


ROUTES = [
    ("GET", "me", me),
    ("GET", "user", list_users),
    ("GET", "user/{id}", get_user),
    ("GET", "organization/{id}", get_organization),
    ("GET", "role", list_roles),
    ("GET", "role/{id}", get_role),
    ("GET", "status/lead", list_lead_statuses),
    ("GET", "status/lead/{id}", get_lead_status),
    ("GET", "status/opportunity", list_opportunity_statuses),
    ("GET", "status/opportunity/{id}", get_opportunity_status),
    ("GET", "pipeline", list_pipelines),
    ("GET", "pipeline/{id}", get_pipeline),
    ("GET", "custom_field/{kind}", list_custom_fields),
    ("GET", "custom_field/{kind}/{id}", get_custom_field),
    # Legacy plural path, still served (changelog 2020-09-18).
    ("GET", "custom_fields/{kind}", list_custom_fields),
    ("GET", "custom_fields/{kind}/{id}", get_custom_field),
    ("GET", "custom_field_schema/{kind}", custom_field_schema),
    ("GET", "custom_activity", list_custom_activity_types),
    ("GET", "custom_activity/{id}", get_custom_activity_type),
    ("GET", "sequence", list_sequences),
    ("GET", "sequence/{id}", get_sequence),
    ("GET", "sequence_subscription", list_subscriptions),
    ("GET", "sequence_subscription/{id}", get_subscription),
    ("GET", "saved_search", list_saved_searches),
    ("GET", "saved_search/{id}", get_saved_search),
]
