"""Lead and opportunity status histories (consistent with the records' current statuses) and custom
activity instances, including the shape's orphaned-values type: its instances carry a field the type no longer
defines."""

from __future__ import annotations

from .activities import Picker, base
from .config import Ctx
from .records import _SKIP, cf_value
from .util import NOW_US, US_PER_S


def _group(ctx: Ctx, population: list[dict], n: int) -> dict[str, tuple[dict, int]]:
    """Spread n events over random members; insertion order follows the random draws (deterministic)."""
    groups: dict[str, tuple[dict, int]] = {}
    for _ in range(n):
        item = ctx.rng.choice(population)
        groups[item["id"]] = (item, groups.get(item["id"], (item, 0))[1] + 1)
    return groups


def build_lead_status_changes(ctx: Ctx, leads: list[dict], n: int) -> list[dict]:
    rng, out = ctx.rng, []
    by_id = {s["id"]: s for s in ctx.lead_statuses}
    for lead, k in _group(ctx, leads, n).values():
        # Walk backwards from the current status so that the last change lands on it.
        chain, new = [], by_id[lead["status_id"]]
        for _ in range(k):
            old = rng.choice([s for s in ctx.lead_statuses if s["id"] != new["id"]])
            chain.append((old, new))
            new = old
        created = lead["_created_us"]
        moments = sorted(
            created + 60 * US_PER_S + rng.randrange(NOW_US - created - 120 * US_PER_S) for _ in range(k)
        )
        for (old, new), at in zip(reversed(chain), moments, strict=True):
            act = base(ctx, "LeadStatusChange", lead, None, rng.choice(ctx.owner_ids), at)
            act.update(
                {
                    "old_status_id": old["id"],
                    "old_status_label": old["label"],
                    "new_status_id": new["id"],
                    "new_status_label": new["label"],
                }
            )
            out.append(act)
    return out


def build_opportunity_status_changes(
    ctx: Ctx, opportunities: list[dict], leads_by_id: dict[str, dict], n: int
) -> list[dict]:
    rng, out = ctx.rng, []
    by_id = {s["id"]: s for s in ctx.opportunity_statuses}
    pipeline_names = {p["id"]: p["name"] for p in ctx.pipelines}
    for opp, k in _group(ctx, opportunities, n).values():
        siblings = [s for s in ctx.opportunity_statuses if s["pipeline_id"] == opp["pipeline_id"]]
        chain, new = [], by_id[opp["status_id"]]
        for _ in range(k):
            candidates = [s for s in siblings if s["id"] != new["id"] and s["type"] == "active"] or [
                s for s in siblings if s["id"] != new["id"]
            ]
            old = rng.choice(candidates)
            chain.append((old, new))
            new = old
        start = opp["_created_us"]
        # A closed deal's last change is its closing; an active one moved last at some point until now.
        end = opp["_closed_us"] if opp["status_type"] != "active" else start + rng.randrange(NOW_US - start)
        span = max(1, end - start - US_PER_S)
        moments = sorted(start + rng.randrange(span) for _ in range(k - 1)) + [max(start, end - US_PER_S)]
        lead = leads_by_id[opp["lead_id"]]
        pipe = opp["pipeline_id"]
        date_won = opp["date_won"] + "T00:00:00+00:00" if opp["date_won"] else None
        for (old, new), at in zip(reversed(chain), moments, strict=True):
            act = base(ctx, "OpportunityStatusChange", lead, None, opp["user_id"], at)
            act.update(
                {
                    "opportunity_id": opp["id"],
                    "old_status_id": old["id"],
                    "old_status_label": old["label"],
                    "old_status_type": old["type"],
                    "new_status_id": new["id"],
                    "new_status_label": new["label"],
                    "new_status_type": new["type"],
                    "old_pipeline_id": pipe,
                    "old_pipeline_name": pipeline_names[pipe],
                    "new_pipeline_id": pipe,
                    "new_pipeline_name": pipeline_names[pipe],
                    "opportunity_value": opp["value"],
                    "opportunity_value_currency": opp["value_currency"],
                    "opportunity_value_period": opp["value_period"],
                    "opportunity_value_formatted": opp["value_formatted"],
                    "opportunity_confidence": opp["confidence"],
                    "opportunity_date_won": date_won,
                }
            )
            out.append(act)
    return out


def _instance_types(ctx: Ctx) -> tuple[list[dict], list[float], list[tuple[str, ...]]]:
    """The types that get instances, the cumulative thresholds of their shares, their orphaned values."""
    specs = {s.name: s for s in ctx.shape.activity_types}
    types = [t for t in ctx.custom_activity_types if specs[t["name"]].share > 0]
    shares = [specs[t["name"]].share for t in types]
    total, running, thresholds = sum(shares), 0.0, []
    for share in shares:
        running += share
        thresholds.append(running / total)
    return types, thresholds, [specs[t["name"]].orphaned_values for t in types]


def build_custom_activities(ctx: Ctx, pick: Picker, n: int) -> list[dict]:
    rng, out = ctx.rng, []
    types, thresholds, orphaned = _instance_types(ctx)
    fields = {
        t["id"]: [f for f in ctx.custom_fields["activity"] if f["custom_activity_type_id"] == t["id"]]
        for t in types
    }
    for i in range(n):
        if i < len(types):  # guarantee every type appears even in the smallest org
            k = i
        else:
            u = rng.random()
            k = next((j for j, limit in enumerate(thresholds) if u < limit), len(types) - 1)
        ctype = types[k]
        lead, contact = pick.lead()
        at = pick.moment(lead)
        act = base(ctx, "CustomActivity", lead, contact, rng.choice(ctx.owner_ids), at)
        draft = rng.random() < 0.04
        act.update(
            {
                "custom_activity_type_id": ctype["id"],
                "status": "draft" if draft else "published",
                "last_published_at": None if draft else act["activity_at"],
                "pinned": False,
                "pinned_at": None,
                "mentions": [],
                "mentions_updated_at": None,
                "source": "ui",
            }
        )
        contact_ids = [contact["id"]] if contact else []
        for f in fields[ctype["id"]]:
            if not f["required"] and rng.random() < 0.5:
                continue
            value = cf_value(ctx, f, contact_ids, at)
            if value is _SKIP:
                continue
            if f["accepts_multiple_values"] and f["type"] == "choices" and rng.random() < 0.1:
                value = value[0]  # Close returns a bare string when one choice of a multi field is set
            act["custom." + f["id"]] = value
        if orphaned[k]:  # a value of the field deleted from the type
            act["custom." + ctx.undefined_field_id] = rng.choice(orphaned[k])
        out.append(act)
    return out
