"""`/event/`: the event log, newest first, cursor-paginated (`_cursor` / `cursor_next`), `_limit` <= 50.

Only the filter combinations Close documents are accepted (close_api.md §4.14); `date_updated__*` may be
added to any of them. A cursor remembers the position and the date bounds, so later pages may omit the
`date_updated` filters (the other filters must be repeated, as with the real API).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import bad_request, not_found
from ..filters import date_bounds, has_bounds, value_predicate, values
from ..jsonutil import dumps, loads
from ..pagination import project, requested_fields
from ..timeutil import to_key
from .base import Ctx, render_one

EVENT_PAGE_DEFAULT = 50  # "capped at and defaulting to 50" (close_api.md §2.3)

_FILTERS = ("object_type", "object_id", "lead_id", "action", "user_id", "request_id")
SUPPORTED_COMBINATIONS = frozenset(
    frozenset(c)
    for c in (
        (),
        ("object_type", "object_id"),
        ("object_type", "action"),
        ("object_id", "action"),
        ("lead_id", "object_type"),
        ("lead_id", "object_type", "action"),
        ("lead_id", "user_id", "object_type"),
        ("lead_id", "user_id", "object_type", "action"),
        ("lead_id", "user_id"),
        ("user_id", "object_id"),
        ("user_id", "object_id", "action"),
        ("user_id", "object_type"),
        ("user_id", "object_type", "action"),
        ("lead_id",),
        ("user_id",),
        ("request_id",),
    )
)


def _encode(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(dumps(payload)).decode("ascii").rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        raise bad_request(
            f"Invalid _cursor {cursor!r}: pass back cursor_next or cursor_previous unchanged."
        ) from None
    if not isinstance(payload, dict) or payload.get("d") not in ("n", "p"):
        raise bad_request(f"Invalid _cursor {cursor!r}: pass back cursor_next or cursor_previous unchanged.")
    return payload


def _event_key(ev: dict[str, Any]) -> tuple[int, str]:
    return (to_key(ev.get("date_updated")) or to_key(ev.get("date_created")) or 0, ev["id"])


def list_events(ctx: Ctx) -> bytes:
    params = ctx.params
    given = {name: values(params, name, allow_in=False) for name in _FILTERS}
    active = {k: v for k, v in given.items() if v is not None}
    if frozenset(active) not in SUPPORTED_COMBINATIONS:
        raise bad_request(
            f"Unsupported combination of filters: {', '.join(sorted(active))}. Supported: object_type+object_id, "
            "object_type+action, object_id+action, lead_id(+object_type(+action)), lead_id+user_id(+object_type"
            "(+action)), user_id+object_id(+action), user_id+object_type(+action), lead_id, user_id, request_id "
            "(date_updated filters may be added to any)."
        )
    raw_limit = params.get("_limit")
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise bad_request(f'_limit must be an integer (got "{raw_limit}" instead).') from None
        max_limit = ctx.config.max_limit("event")
        if max_limit is not None and limit > max_limit:
            raise bad_request(
                f"The limit you set is larger than the maximum limit for this resource (max_limit = {max_limit})."
            )
        limit = max(limit, 0)
    else:
        limit = ctx.config.max_limit("event") or EVENT_PAGE_DEFAULT

    cursor = _decode(params["_cursor"]) if params.get("_cursor") else None
    bounds = date_bounds(params, "date_updated")
    if cursor is not None and not has_bounds(bounds) and cursor.get("b"):
        bounds = tuple(cursor["b"])  # type: ignore[assignment]

    store = ctx.store
    cache_key = ("event", tuple(sorted((k, v) for k, v in active.items())), tuple(bounds))

    def compute() -> list[dict[str, Any]]:
        gt, gte, lt, lte = bounds
        lo, hi = store.events_by_updated.bounds(gt, gte, lt, lte)
        rows = store.events_by_updated.items[lo:hi]
        for name, accepted in active.items():
            check = value_predicate(name, accepted)
            rows = [e for e in rows if check(e)]
        rows.sort(key=_event_key, reverse=True)  # newest first, ties by id
        return rows

    rows: list[dict[str, Any]] = store.results.get_or_compute(cache_key, compute)
    start = 0
    if cursor is not None:
        mark = (int(cursor["k"]), str(cursor["i"]))
        if cursor["d"] == "n":  # older than the mark
            start = next((i for i, e in enumerate(rows) if _event_key(e) < mark), len(rows))
        else:  # newer than the mark: the page just before it
            end = next((i for i, e in enumerate(rows) if _event_key(e) <= mark), len(rows))
            start = max(0, end - limit)
            limit = end - start
    page = rows[start : start + limit]

    cursor_next = cursor_previous = None
    bound_list = list(bounds) if has_bounds(bounds) else None
    if page:
        last, first = _event_key(page[-1]), _event_key(page[0])
        if start + len(page) < len(rows):
            cursor_next = _encode({"d": "n", "k": last[0], "i": last[1], "b": bound_list})
        if start > 0:
            cursor_previous = _encode({"d": "p", "k": first[0], "i": first[1], "b": bound_list})
    fields = requested_fields(params)
    parts = [dumps(project(e, fields)) if fields else store.object_bytes(e) for e in page]
    ctx.served = len(parts)
    tail = {"cursor_next": cursor_next, "cursor_previous": cursor_previous}
    return b'{"data":[' + b",".join(parts) + b"]," + dumps(tail)[1:]


def get_event(ctx: Ctx) -> bytes:
    ev = ctx.store.events_by_id.get(ctx.args["id"])
    if ev is None:
        raise not_found("Event")
    return render_one(ctx, ev, "Event")


ROUTES = [
    ("GET", "event", list_events),
    ("GET", "event/{id}", get_event),
]
