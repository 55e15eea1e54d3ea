"""Contacts, opportunities (with aggregates) and tasks: filtered, ordered, paged."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..errors import field_error
from ..filters import (
    Predicate,
    Window,
    apply,
    bounds_predicate,
    date_bounds,
    has_bounds,
    parse_bool,
    value_predicate,
    values,
)
from ..store import MISSING
from ..timeutil import to_key
from .base import Ctx, render_list, render_one


def _predicates(
    ctx: Ctx, eq: Iterable[str], with_in: Iterable[str], dates: Iterable[str], bools: Iterable[str] = ()
) -> tuple[list[Predicate], tuple[Any, ...]]:
    """Predicates for the declared filters, plus a hashable key identifying them (for the result cache)."""
    preds: list[Predicate] = []
    key: list[Any] = []
    for name in eq:
        accepted = values(ctx.params, name, allow_in=False)
        if accepted is not None:
            preds.append(value_predicate(name, accepted))
            key.append((name, accepted))
    for name in with_in:
        accepted = values(ctx.params, name)
        if accepted is not None:
            preds.append(value_predicate(name, accepted))
            key.append((name, accepted))
    for name in dates:
        bounds = date_bounds(ctx.params, name)
        if has_bounds(bounds):
            preds.append(bounds_predicate(name, bounds))
            key.append((name, bounds))
    for name in bools:
        raw = ctx.params.get(name)
        if raw:
            flag = parse_bool(raw)
            if flag is None:
                raise field_error(name, f"Invalid boolean value {raw!r} (expected true or false).")
            preds.append(lambda o, n=name, f=flag: bool(o.get(n)) is f)
            key.append((name, flag))
    return preds, tuple(key)


def _sort_key(field: str) -> Any:
    def key(obj: dict[str, Any]) -> tuple[int, Any, str]:
        value = obj.get(field)
        if value is None:
            return (0, 0, obj["id"])
        if field.startswith("date"):
            k = to_key(value)
            return (1, MISSING if k is None else k, obj["id"])
        if isinstance(value, int | float):
            return (1, value, obj["id"])
        return (1, str(value), obj["id"])

    return key


def _ordered(rows: list[dict[str, Any]], order: str | None) -> list[dict[str, Any]]:
    if not order:
        return rows
    field = order.lstrip("-")
    return sorted(rows, key=_sort_key(field), reverse=order.startswith("-"))


def _order_param(ctx: Ctx, allowed: Iterable[str]) -> str | None:
    order = ctx.params.get("_order_by")
    allowed_all = {a for f in allowed for a in (f, "-" + f)}
    return order if order in allowed_all else None  # a disallowed ordering is ignored, like the real API


# ----- contacts ----------------------------------------------------------------------------------------------
def list_contacts(ctx: Ctx) -> bytes:
    store = ctx.store
    lead = values(ctx.params, "lead_id", allow_in=False)
    if lead is not None:
        rows: Any = [c for lead_id in sorted(lead) for c in store.contacts_by_lead.get(lead_id, [])]
    else:
        rows = Window(store.contacts_by_created.items)
    return render_list(ctx, "contact", rows)


def get_contact(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.contacts_by_id.get(ctx.args["id"]), "Contact")


# ----- opportunities -----------------------------------------------------------------------------------------
OPPORTUNITY_ORDERING = (
    "date_won",
    "date_updated",
    "date_created",
    "confidence",
    "user_name",
    "value",
    "annualized_value",
    "annualized_expected_value",
)
_PERIODS = ("one_time", "monthly", "annual")


def _aggregates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates over all matching opportunities regardless of paging (close_api.md §4.3)."""
    counts: dict[str, int] = {}
    totals = dict.fromkeys(_PERIODS, 0)
    expected = dict.fromkeys(_PERIODS, 0)
    total_annualized = expected_annualized = 0
    for o in rows:
        period = o.get("value_period") or "one_time"
        counts[period] = counts.get(period, 0) + 1
        # Test data may hold values Close itself would refuse ("abc"): the sums skip them, the record is
        # still served as stored.
        value = o.get("value") if isinstance(o.get("value"), int | float) else 0
        confidence = o.get("confidence") if isinstance(o.get("confidence"), int | float) else 0
        if period in totals:
            totals[period] += value
            expected[period] += o.get("expected_value", value * confidence // 100) or 0
        total_annualized += o.get("annualized_value") or 0
        expected_annualized += o.get("annualized_expected_value") or 0
    out: dict[str, Any] = {"total_results": len(rows), "count_by_value_period": counts}
    for period in _PERIODS:
        out[f"total_value_{period}"] = totals[period]
    out["total_value_annualized"] = total_annualized
    for period in _PERIODS:
        out[f"expected_value_{period}"] = expected[period]
    out["expected_value_annualized"] = expected_annualized
    return out


def list_opportunities(ctx: Ctx) -> bytes:
    store = ctx.store
    preds, key = _predicates(
        ctx,
        eq=("lead_id", "organization_id", "is_stalled"),
        with_in=("user_id", "status_id", "status_type", "status_label", "value_period", "id"),
        dates=("date_won", "date_created", "date_updated"),
    )
    order = _order_param(ctx, OPPORTUNITY_ORDERING)

    def compute() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = _ordered(apply(store.opportunities_by_created.items, preds), order)
        return rows, _aggregates(rows)

    rows, aggregates = store.results.get_or_compute(("opportunity", key, order), compute)
    return render_list(ctx, "opportunity", rows, extra=aggregates)


def get_opportunity(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.opportunities_by_id.get(ctx.args["id"]), "Opportunity")


# ----- tasks -------------------------------------------------------------------------------------------------
def _view_predicate(ctx: Ctx, view: str) -> Predicate:
    """inbox = open up to the end of today, future = open from tomorrow, archive = completed."""
    now = datetime.fromtimestamp(ctx.config.clock() if ctx.config.clock else time.time(), tz=UTC)
    end_of_today = to_key(now.replace(hour=23, minute=59, second=59, microsecond=999999).isoformat()) or 0
    if view == "archive":
        return lambda t: bool(t.get("is_complete"))

    def due(t: dict[str, Any]) -> int:
        return to_key(t.get("date")) or MISSING

    if view == "inbox":
        return lambda t: not t.get("is_complete") and due(t) <= end_of_today
    if view == "future":
        return lambda t: not t.get("is_complete") and due(t) > end_of_today
    raise field_error("view", f"Invalid view {view!r} (expected inbox, future or archive).")


def list_tasks(ctx: Ctx) -> bytes:
    store = ctx.store
    preds, key = _predicates(
        ctx,
        eq=("lead_id", "assigned_to", "organization_id", "contact_id"),
        with_in=("id", "_type"),
        dates=("date", "due_date", "date_created", "date_updated"),
        bools=("is_complete",),
    )
    view = ctx.params.get("view")
    if view:
        preds.append(_view_predicate(ctx, view))
        key = (*key, ("view", view, int(ctx.config.clock() // 3600)))
    order = _order_param(ctx, ("date", "date_created"))

    def compute() -> list[dict[str, Any]]:
        return _ordered(apply(store.tasks_by_created.items, preds), order)

    rows = store.results.get_or_compute(("task", key, order), compute)
    return render_list(ctx, "task", rows)


def get_task(ctx: Ctx) -> bytes:
    return render_one(ctx, ctx.store.tasks_by_id.get(ctx.args["id"]), "Task")


ROUTES = [
    ("GET", "contact", list_contacts),
    ("GET", "contact/{id}", get_contact),
    ("GET", "opportunity", list_opportunities),
    ("GET", "opportunity/{id}", get_opportunity),
    ("GET", "task", list_tasks),
    ("GET", "task/{id}", get_task),
]
