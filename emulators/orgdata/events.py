"""Event-log entries: a few recent updates and deletes for delta-cutover tests."""

from __future__ import annotations

import copy

from .config import Ctx
from .util import NOW_US, US_PER_DAY, US_PER_S, ts, ts_naive


def _event(
    ctx: Ctx,
    at: int,
    action: str,
    object_type: str,
    obj: dict,
    lead_id: str | None,
    user: str | None,
    changed: list[str],
    data: dict,
    previous: dict,
    path: str,
) -> dict:
    stamp = ts_naive(at)
    return {
        "id": ctx.ids.new("ev"),
        "action": action,
        "object_type": object_type,
        "object_id": obj["id"],
        "organization_id": ctx.org_id,
        "lead_id": lead_id,
        "user_id": user,
        "request_id": ctx.ids.new("req"),
        "api_key_id": None,
        "oauth_client_id": None,
        "oauth_scope": None,
        "date_created": stamp,
        "date_updated": stamp,
        "changed_fields": changed,
        "data": data,
        "previous_data": previous,
        "meta": {"request_method": "DELETE" if action == "deleted" else "PUT", "request_path": path},
    }


def build_events(
    ctx: Ctx,
    leads: list[dict],
    contacts: list[dict],
    opportunities: list[dict],
    activities: list[dict],
    tasks: list[dict],
) -> list[dict]:
    """A few recent changes (for delta tests); the changed records carry the new values and date_updated."""
    rng, events = ctx.rng, []
    user = ctx.users[1]["id"]
    at = NOW_US - 20 * US_PER_DAY

    def touch(obj: dict, changes: dict) -> tuple[dict, dict]:
        nonlocal at
        at += rng.randrange(1, 3 * US_PER_DAY)
        previous = {k: obj.get(k) for k in changes} | {"date_updated": obj["date_updated"]}
        obj.update(changes)
        obj["date_updated"] = ts(at)
        return copy.deepcopy(obj), previous

    lead = next(x for x in leads if x["name"] and x["name"].isascii())
    data, prev = touch(
        lead, {"name": lead["name"] + " (renamed)", "display_name": lead["name"] + " (renamed)"}
    )
    events.append(
        _event(
            ctx,
            at,
            "updated",
            "lead",
            lead,
            lead["id"],
            user,
            ["name", "display_name", "date_updated"],
            data,
            prev,
            f"/api/v1/lead/{lead['id']}/",
        )
    )
    for obj in opportunities + tasks:  # denormalised copies of the name follow the rename
        if obj["lead_id"] == lead["id"]:
            obj["lead_name"] = lead["name"]
    contact = contacts[len(contacts) // 2]
    data, prev = touch(contact, {"title": "Chief Revenue Officer"})
    events.append(
        _event(
            ctx,
            at,
            "updated",
            "contact",
            contact,
            contact["lead_id"],
            user,
            ["title", "date_updated"],
            data,
            prev,
            f"/api/v1/contact/{contact['id']}/",
        )
    )
    opp = opportunities[len(opportunities) // 2]
    note = "Updated after the last call: budget confirmed."
    data, prev = touch(opp, {"note": note, "note_html": f"<body><p>{note}</p></body>"})
    events.append(
        _event(
            ctx,
            at,
            "updated",
            "opportunity",
            opp,
            opp["lead_id"],
            user,
            ["note", "note_html", "date_updated"],
            data,
            prev,
            f"/api/v1/opportunity/{opp['id']}/",
        )
    )
    call = next(a for a in reversed(activities) if a["_type"] == "Call")  # not the overlong-note call
    note = "Edited later: customer confirmed the renewal."
    data, prev = touch(call, {"note": note, "note_html": f"<body><p>{note}</p></body>"})
    events.append(
        _event(
            ctx,
            at,
            "updated",
            "activity.call",
            call,
            call["lead_id"],
            user,
            ["note", "note_html", "date_updated"],
            data,
            prev,
            f"/api/v1/activity/call/{call['id']}/",
        )
    )
    task = next(t for t in tasks if t["_type"] == "lead" and not t["is_complete"])
    data, prev = touch(task, {"text": task["text"] + " (rescheduled)"})
    events.append(
        _event(
            ctx,
            at,
            "updated",
            "task.lead",
            task,
            task["lead_id"],
            user,
            ["text", "date_updated"],
            data,
            prev,
            f"/api/v1/task/{task['id']}/",
        )
    )
    # Deleted objects exist only in the event log: their last state is in previous_data.
    at += US_PER_DAY
    gone = copy.deepcopy(leads[0]) | {
        "id": ctx.ids.new("lead"),
        "name": "Deleted Dummy Lead",
        "display_name": "Deleted Dummy Lead",
    }
    gone["html_url"] = f"https://app.close.com/lead/{gone['id']}/"
    events.append(
        _event(
            ctx, at, "deleted", "lead", gone, gone["id"], user, [], {}, gone, f"/api/v1/lead/{gone['id']}/"
        )
    )
    at += 3600 * US_PER_S
    note_act = copy.deepcopy(next(a for a in activities if a["_type"] == "Note"))
    note_act["id"] = ctx.ids.new("acti")
    events.append(
        _event(
            ctx,
            at,
            "deleted",
            "activity.note",
            note_act,
            note_act["lead_id"],
            user,
            [],
            {},
            note_act,
            f"/api/v1/activity/note/{note_act['id']}/",
        )
    )
    events.reverse()  # the event log lists newest first
    return events
