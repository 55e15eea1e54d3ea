"""`/lead/` (embedded contacts, opportunities, tasks; `total_results`) and `/lead/{id}/`."""

from __future__ import annotations

from typing import Any

from ..filters import Window
from ..query import parse_lead_query
from .base import Ctx, render_list, render_one


def _matching_leads(ctx: Ctx) -> Window:
    store = ctx.store
    text = (ctx.params.get("query") or "").strip()
    parsed = parse_lead_query(text)
    if parsed.predicate is None and parsed.sort_field is None:
        return Window(store.leads_by_created.items, reverse=True)  # default: newest first
    view = store.leads_by_updated if parsed.sort_field == "date_updated" else store.leads_by_created
    reverse = parsed.descending if parsed.sort_field else True
    if parsed.predicate is None:
        return Window(view.items, reverse=reverse)
    predicate = parsed.predicate

    def compute() -> list[dict[str, Any]]:
        return [lead for lead in view.items if predicate(lead)]

    # The same query is paged many times: evaluate it once per distinct text.
    rows = store.results.get_or_compute(("lead", text), compute)
    return Window(rows, reverse=reverse)


def list_leads(ctx: Ctx) -> bytes:
    rows = _matching_leads(ctx)
    store = ctx.store
    return render_list(
        ctx,
        "lead",
        rows,
        extra={"total_results": len(rows)},
        expander=store.full_lead,
    )


def get_lead(ctx: Ctx) -> bytes:
    store = ctx.store
    return render_one(
        ctx,
        store.leads_by_id.get(ctx.args["id"]),
        "Lead",
        serializer=store.lead_bytes,
        expander=store.full_lead,
    )


ROUTES = [
    ("GET", "lead", list_leads),
    ("GET", "lead/{id}", get_lead),
]
