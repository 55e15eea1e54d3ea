"""Synthetic Close organisation: deterministic from (size, seed, org), full of the cases a migration must handle.

`generate(size, seed, org=NAME)` builds the org shape NAME (one of `ORG_SHAPES`, default "brightwave", the
demo org; `shapes.py`) and returns a `CloseOrg` whose objects are in the exact JSON shape of the Close API
(close_api.md §4); the Close emulator serves it, the Dataverse emulator seeds `dynamics_users`, and tests
compare migration results with `org.truth`. See /work/brief/ORGDATA_SPEC.md for the contract.
"""

from __future__ import annotations

import random

from .activities import Picker, build_calls, build_emails, build_meetings, build_notes, build_sms
from .config import Ctx, build_custom_fields, build_organization, build_statuses, build_users
from .events import build_events
from .extras import build_sequences, build_smart_views, build_subscriptions, build_tasks
from .history import build_custom_activities, build_lead_status_changes, build_opportunity_status_changes
from .model import PROFILES, SIZES, CloseOrg, FileBlob, OrgDataError
from .records import build_leads, build_opportunities
from .shape import OrgShape
from .shapes import DEFAULT_SHAPE, ORG_SHAPES, SHAPES, get_shape
from .truth import compute_truth, org_summary
from .util import Ids

__all__ = [
    "DEFAULT_SHAPE",
    "ORG_SHAPES",
    "SHAPES",
    "SIZES",
    "CloseOrg",
    "FileBlob",
    "OrgDataError",
    "OrgShape",
    "generate",
    "org_summary",
]

# Share of each activity family in the total (the e-mail share covers Email + EmailThread objects).
ACTIVITY_MIX = {
    "emails": 0.35,
    "calls": 0.25,
    "notes": 0.15,
    "sms": 0.08,
    "meetings": 0.05,
    "lead_status_changes": 0.05,
    "opportunity_status_changes": 0.02,
    "custom_activities": 0.05,
}


def generate(size: str = "tiny", seed: int = 1, org: str = DEFAULT_SHAPE) -> CloseOrg:
    """Build the org; the same (size, seed, org) always yields an identical org."""
    if size not in SIZES:
        raise OrgDataError(f"unknown org size {size!r}; choose one of {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise OrgDataError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")
    shape = get_shape(org)
    # The default shape keeps its historical stream (its data is pinned by tests); the others get their own.
    stream = f"close2d365-orgdata:{size}:{seed}" + ("" if org == DEFAULT_SHAPE else f":{org}")
    rng = random.Random(stream)
    ctx = Ctx(rng=rng, ids=Ids(rng), profile=PROFILES[size], shape=shape)
    ctx.org_id = ctx.ids.new("orga")
    api_key = "api_" + ctx.ids.raw(43)
    build_users(ctx)
    build_statuses(ctx)
    build_custom_fields(ctx)
    organization = build_organization(ctx)

    leads, contacts = build_leads(ctx)
    contacts_by_lead: dict[str, list[dict]] = {}
    for c in contacts:
        contacts_by_lead.setdefault(c["lead_id"], []).append(c)
    leads_by_id = {x["id"]: x for x in leads}
    opportunities = build_opportunities(ctx, leads, contacts_by_lead)

    total = ctx.profile.activities
    share = {k: max(2, round(v * total)) for k, v in ACTIVITY_MIX.items()}
    pick = Picker(ctx, leads, contacts_by_lead)
    activities = build_calls(ctx, pick, share["calls"])
    activities += build_emails(ctx, pick, share["emails"])
    activities += build_sms(ctx, pick, share["sms"])
    activities += build_meetings(ctx, pick, share["meetings"])
    activities += build_notes(ctx, pick, share["notes"])
    activities += build_lead_status_changes(ctx, leads, share["lead_status_changes"])
    activities += build_opportunity_status_changes(
        ctx, opportunities, leads_by_id, share["opportunity_status_changes"]
    )
    activities += build_custom_activities(ctx, pick, share["custom_activities"])

    tasks = build_tasks(ctx, pick, activities, opportunities, leads_by_id)
    sequences = build_sequences(ctx)
    subscriptions = build_subscriptions(ctx, sequences, contacts)
    smart_views = build_smart_views(ctx)
    for obj in leads + opportunities:  # generator-private bookkeeping never leaves the package
        for key in [k for k in obj if k.startswith("_") and k != "_type"]:
            del obj[key]
    events = build_events(ctx, leads, contacts, opportunities, activities, tasks)

    result = CloseOrg(
        size=size,
        seed=seed,
        api_key=api_key,
        organization=organization,
        users=ctx.users,
        inactive_users=ctx.inactive_users,
        lead_statuses=ctx.lead_statuses,
        pipelines=ctx.pipelines,
        opportunity_statuses=ctx.opportunity_statuses,
        custom_fields=ctx.custom_fields,
        custom_activity_types=ctx.custom_activity_types,
        leads=leads,
        contacts=contacts,
        opportunities=opportunities,
        activities=activities,
        tasks=tasks,
        sequences=sequences,
        sequence_subscriptions=subscriptions,
        smart_views=smart_views,
        events=events,
        files=ctx.files,
        dynamics_users=ctx.dynamics_users,
        roles=ctx.roles,
        shape=shape.name,
    )
    result.truth = compute_truth(result, ctx.edge)
    return result
