"""`POST /lead/merge/` {"source": lead_id, "destination": lead_id} -> {"status": "ok"} (close_api.md §4.1).

What happens, per developer.close.com: "The source lead is merged into the destination lead and then
deleted" (LeadMerge activities page), and the event log's `merged` action: "`lead_id` and `data` contain
the lead ID and data of the resulting (destination) lead. Note that you will also get `updated` and
`deleted` events for the leads and any related objects involved in the merge. All events related to the
merge contain `merge_source_lead_id` and `merge_destination_lead_id` in the `meta` field" (List of Event
Types). So: every contact, opportunity, activity and task of the source moves to the destination (its
`lead_id` and `date_updated` change; an `updated` event each), the destination gets an `updated` event
(its `contact_ids` grew), a LeadMerge activity is added to it, the source gets a `deleted` event (its
last state in `previous_data`, §4.14 deleted-lead pattern) and the destination a `merged` event.

Choices where the docs are silent: the destination keeps its own field values (the UI's merge dialog is
not documented for the API); the LeadMerge activity carries `source_lead_id`, `source_lead_name`,
`destination_lead_id` and `merge_status: "done"` (the docs name only `merge_status`) and gets no event of
its own (none is documented).
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError, field_error
from ..jsonutil import dumps
from .base import Ctx
from .write_fields import REQUIRED
from .write_records import lead_children, lead_event_view
from .write_session import WriteSession


def _lead_or_error(ctx: Ctx, body: dict[str, Any], role: str) -> dict[str, Any]:
    lead_id = body.get(role)
    if lead_id in (None, ""):
        raise field_error(role, REQUIRED)
    lead = ctx.store.leads_by_id.get(lead_id) if isinstance(lead_id, str) else None
    if lead is None:
        raise ApiError(400, {"errors": [f"{role.capitalize()} lead does not exist."]})
    return lead


def merge_leads(ctx: Ctx) -> bytes:
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        source = _lead_or_error(ctx, body, "source")
        destination = _lead_or_error(ctx, body, "destination")
        if source is destination:
            raise ApiError(400, {"errors": ["Source and destination leads must be different."]})
        w = WriteSession(ctx)
        w.merge_meta = {"merge_source_lead_id": source["id"], "merge_destination_lead_id": destination["id"]}
        source_state = lead_event_view(ctx, source)
        destination_before = lead_event_view(ctx, destination)
        for kind, rows in lead_children(ctx, source["id"]):
            for obj in rows:
                before = dict(obj)
                obj["lead_id"] = destination["id"]
                if "lead_name" in obj:
                    obj["lead_name"] = destination.get("name")
                w.stamp_updated(obj)
                store.changed(kind, obj, before)
                w.record("updated", kind, obj, before)
        plain_before = dict(destination)
        w.stamp_updated(destination)
        store.changed("lead", destination, plain_before)
        w.record("updated", "lead", lead_event_view(ctx, destination), destination_before)
        merge_activity = w.new_activity(
            "LeadMerge",
            destination["id"],
            source_lead_id=source["id"],
            source_lead_name=source.get("display_name") or source.get("name"),
            destination_lead_id=destination["id"],
            merge_status="done",
        )
        store.insert("activity", merge_activity)
        w.record("deleted", "lead", source_state)
        store.remove_many("lead", [source])
        w.record("merged", "lead", lead_event_view(ctx, destination))
    return dumps({"status": "ok"})


ROUTES = [("POST", "lead/merge", merge_leads)]
