"""`/activity/` and `/activity/<kind>/` with the filters the real API supports (close_api.md §2.6, §4.7).

Dates: only `date_created` and `activity_at` (gt/gte/lt/lte). `date_updated__*` is not a filter here and is
silently ignored like any unknown parameter — the trap every incremental client must handle.
"""

from __future__ import annotations

from typing import Any

from ..errors import bad_request, not_found
from ..filters import (
    Predicate,
    Window,
    apply,
    bounds_predicate,
    date_bounds,
    has_bounds,
    value_predicate,
    values,
)
from ..store import ACTIVITY_KINDS, SortedView
from ..timeutil import to_key
from .base import Ctx, render_list, render_one

_ORDERINGS = ("date_created", "-date_created", "activity_at", "-activity_at")


def _type_predicate(accepted: frozenset[str]) -> Predicate:
    """`_type` accepts activity type names, custom activity type ids, or `Custom` for any custom type."""

    def check(act: dict[str, Any]) -> bool:
        kind = act.get("_type")
        if kind in accepted:
            return True
        if kind == "CustomActivity":
            return "Custom" in accepted or act.get("custom_activity_type_id") in accepted
        return False

    return check


def _base_view(ctx: Ctx, kind: str | None) -> tuple[SortedView | None, Predicate | None]:
    """The date_created-sorted view for the endpoint, plus a predicate selecting its types (for per-lead lists)."""
    store = ctx.store
    if kind is not None:
        type_name = ACTIVITY_KINDS[kind]
        return store.activities_by_type.get(type_name), (lambda a: a.get("_type") == type_name)
    thread_emails = (ctx.params.get("thread_emails") or "").lower()
    if thread_emails == "only":
        return store.activities_by_type.get("EmailThread"), (lambda a: a.get("_type") == "EmailThread")
    if thread_emails == "true":
        return store.activities_all, None
    return store.activities_no_threads, (lambda a: a.get("_type") != "EmailThread")


def _select(ctx: Ctx, kind: str | None) -> Window | list[dict[str, Any]]:
    params = ctx.params
    store = ctx.store
    leads = values(params, "lead_id")  # `lead_id` or `lead_id__in`
    single_lead = bool(params.get("lead_id")) and leads is not None and len(leads) == 1

    preds: list[Predicate] = []
    key: list[Any] = [kind, params.get("thread_emails")]
    for name in ("contact_id", "user_id"):
        accepted = values(params, name)
        if accepted is not None:
            if kind is None and not single_lead:
                raise bad_request(
                    "The user_id, contact_id and _type filters can only be used together with a single lead_id."
                )
            preds.append(value_predicate(name, accepted))
            key.append((name, accepted))
    if kind is None:
        types = values(params, "_type")
        if types is not None:
            if not single_lead:
                raise bad_request(
                    "The user_id, contact_id and _type filters can only be used together with a single lead_id."
                )
            preds.append(_type_predicate(types))
            key.append(("_type", types))
    if kind == "custom":
        type_ids = values(params, "custom_activity_type_id")
        if type_ids is not None:
            if leads is None:
                raise bad_request(
                    "If you're filtering by custom_activity_type_id, the lead_id parameter is required as well."
                )
            preds.append(value_predicate("custom_activity_type_id", type_ids))
            key.append(("custom_activity_type_id", type_ids))
    for name in ("id", "organization_id"):
        accepted = values(params, name, allow_in=(name == "id"))
        if accepted is not None:
            preds.append(value_predicate(name, accepted))
            key.append((name, accepted))

    order = params.get("_order_by")
    if order not in _ORDERINGS:
        order = "-date_created"  # default (and any disallowed ordering): newest first
    sort_field = order.lstrip("-")
    descending = order.startswith("-")
    if order == "-activity_at" and not single_lead:
        raise bad_request("Ordering by -activity_at is only supported together with a single lead_id filter.")
    created = date_bounds(params, "date_created")
    happened = date_bounds(params, "activity_at")
    other = happened if sort_field == "date_created" else created
    if has_bounds(other):
        raise bad_request(
            "You can only use the date-based filters of the field you're currently sorting on "
            f"(_order_by={order}); use date_created__* with date_created ordering and activity_at__* with "
            "_order_by=activity_at or -activity_at."
        )
    bounds = created if sort_field == "date_created" else happened

    view, type_pred = _base_view(ctx, kind)
    if leads is not None:
        # Per-lead lists are small: gather, filter, sort. Memoised per query.
        def compute_lead() -> list[dict[str, Any]]:
            rows = [a for lead_id in sorted(leads) for a in store.activities_by_lead.get(lead_id, [])]
            all_preds = list(preds)
            if type_pred is not None:
                all_preds.append(type_pred)
            if has_bounds(bounds):
                all_preds.append(bounds_predicate(sort_field, bounds))
            rows = apply(rows, all_preds)
            rows.sort(key=lambda a: (to_key(a.get(sort_field)) or 0, a["id"]), reverse=descending)
            return rows

        return store.results.get_or_compute(
            ("activity-lead", tuple(key), tuple(sorted(leads)), order, bounds), compute_lead
        )

    if view is None:
        return []
    if sort_field == "activity_at":
        base_items = view.items
        view = store.view(f"activity:{kind}:{params.get('thread_emails')}", lambda: base_items, "activity_at")
    lo, hi = view.bounds(*bounds)
    window = Window(view.items, lo, hi, reverse=descending)
    if not preds:
        return window  # pure bisect: O(page) per request

    def compute() -> list[dict[str, Any]]:
        return apply(window.page(0, len(window)), preds)

    return store.results.get_or_compute(("activity", tuple(key), order, bounds), compute)


def _lister(kind: str | None):  # noqa: ANN202 - returns a handler
    def handler(ctx: Ctx) -> bytes:
        return render_list(ctx, "activity", _select(ctx, kind))

    return handler


def _getter(kind: str | None):  # noqa: ANN202 - returns a handler
    def handler(ctx: Ctx) -> bytes:
        act = ctx.store.activities_by_id.get(ctx.args["id"])
        model = ACTIVITY_KINDS.get(kind, "Activity") if kind else "Activity"
        if act is None or (kind is not None and act.get("_type") != ACTIVITY_KINDS[kind]):
            raise not_found(model)
        return render_one(ctx, act, model)

    return handler


def _get_any(ctx: Ctx) -> bytes:
    act = ctx.store.activities_by_id.get(ctx.args["id"])
    if act is None:
        raise not_found("Activity")
    return render_one(ctx, act, "Activity")


ROUTES: list[tuple[str, str, Any]] = [("GET", "activity", _lister(None)), ("GET", "activity/{id}", _get_any)]
for _kind in ACTIVITY_KINDS:
    ROUTES.append(("GET", f"activity/{_kind}", _lister(_kind)))
    ROUTES.append(("GET", f"activity/{_kind}/{{id}}", _getter(_kind)))
