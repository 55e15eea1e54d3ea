"""Changes made to a Close org through its public HTTP API (close_api.md §4), as a user working in Close
during the migration window would make them: the delta cutover's end-to-end tests apply them to the Close
emulator after a full migration. Written against the documented API only (no emulator internals), so the
same code would drive real Close."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx

from emulators.orgdata import CloseOrg

# A 1x1 PNG: the attachment added in Close must reach Dataverse byte for byte.
ATTACHMENT_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@dataclass
class Mutations:
    """What was changed, by Close id, for the assertions."""

    created: dict[str, list[str]] = field(default_factory=dict)  # Close object kind -> new ids
    updated: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    merged: tuple[str, str] | None = None  # (source lead, destination lead)
    attachment_note: str = ""

    def note(self, what: str, kind: str, object_id: str) -> None:
        getattr(self, what).setdefault(kind, []).append(object_id)


def close_http(base_url: str, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/") + "/", auth=(api_key, ""), timeout=30)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 204), (
        f"{response.request.method} {response.url}: {response.text}"
    )
    return response.json() if response.content else {}


def _first(items: list[dict[str, Any]], pred: Any = lambda _: True) -> dict[str, Any]:
    return next(i for i in items if pred(i))


def _activities(org: CloseOrg, type_: str, exclude: set[str]) -> list[dict[str, Any]]:
    return [a for a in org.activities if a.get("_type") == type_ and a.get("lead_id") not in exclude]


def mutate_every_type(http: httpx.Client, org: CloseOrg) -> Mutations:
    """Create, update and delete leads, contacts, opportunities, tasks and activities of every migrated
    type; add an attachment to a note; merge two leads. Leads touched by one change are kept out of the
    others, so each expectation has one cause."""
    m = Mutations()
    edge = org.truth["edge_cases"]
    avoid = set(edge.get("unnamed_lead_ids") or []) | set(edge.get("non_latin_lead_ids") or [])
    leads = [lead for lead in org.leads if lead["id"] not in avoid and lead.get("display_name")]
    with_children = [
        lead
        for lead in leads
        if any(c["lead_id"] == lead["id"] for c in org.contacts)
        and any(o["lead_id"] == lead["id"] for o in org.opportunities)
    ]
    merge_source, merge_destination, deleted_lead = with_children[0], with_children[1], with_children[2]
    busy = {merge_source["id"], merge_destination["id"], deleted_lead["id"]}
    lead = _first(leads, lambda x: x["id"] not in busy)
    busy.add(lead["id"])

    # Every existing record a change applies to is picked before any write: the emulator serves (and
    # edits) the org's own lists, so a pick made after a create could choose the record just created.
    contacts = [c for c in org.contacts if c["lead_id"] not in busy]
    edited_contact, deleted_contact = contacts[0], contacts[-1]
    opps = [o for o in org.opportunities if o["lead_id"] not in busy]
    edited_opp, deleted_opp = opps[0], opps[-1]
    open_task = _first(
        org.tasks,
        lambda t: t.get("_type") == "lead" and not t.get("is_complete") and t["lead_id"] not in busy,
    )
    call = _activities(org, "Call", busy)[0]
    email = _activities(org, "Email", busy)[-1]
    meeting = _activities(org, "Meeting", busy)[0]
    old_note = _activities(org, "Note", busy)[1]
    custom = _first(
        _activities(org, "CustomActivity", busy),
        lambda a: a.get("custom_activity_type_id") != edge["broken_custom_activity_type_id"],
    )

    # Leads: one new with a contact, one renamed, one deleted (with its children), two merged (below).
    status_id = org.lead_statuses[0]["id"]
    new_lead = _ok(http.post("lead/", json={"name": "Delta Cutover Ltd", "status_id": status_id}))
    m.note("created", "lead", new_lead["id"])
    new_contact = _ok(
        http.post(
            "contact/",
            json={
                "lead_id": new_lead["id"],
                "name": "Dana Delta",
                "title": "Head of Operations",
                "emails": [{"type": "office", "email": "dana.delta@example.com"}],
            },
        )
    )
    m.note("created", "contact", new_contact["id"])
    _ok(http.put(f"lead/{lead['id']}/", json={"name": (lead.get("display_name") or "Lead") + " (renamed)"}))
    m.note("updated", "lead", lead["id"])
    _ok(http.delete(f"lead/{deleted_lead['id']}/"))
    m.note("deleted", "lead", deleted_lead["id"])

    # Contacts: one updated, one deleted (on leads no other change touches).
    _ok(http.put(f"contact/{edited_contact['id']}/", json={"title": "Chief Delta Officer"}))
    m.note("updated", "contact", edited_contact["id"])
    _ok(http.delete(f"contact/{deleted_contact['id']}/"))
    m.note("deleted", "contact", deleted_contact["id"])

    # Opportunities: one created, one updated, one deleted.
    new_opp = _ok(
        http.post(
            "opportunity/",
            json={"lead_id": lead["id"], "note": "Delta deal", "value": 123400, "value_period": "one_time"},
        )
    )
    m.note("created", "opportunity", new_opp["id"])
    _ok(
        http.put(
            f"opportunity/{edited_opp['id']}/", json={"note": "Revised after the freeze", "value": 98700}
        )
    )
    m.note("updated", "opportunity", edited_opp["id"])
    _ok(http.delete(f"opportunity/{deleted_opp['id']}/"))
    m.note("deleted", "opportunity", deleted_opp["id"])

    # Tasks: one created, one completed.
    new_task = _ok(
        http.post(
            "task/", json={"_type": "lead", "lead_id": lead["id"], "text": "Call back", "date": "2026-12-09"}
        )
    )
    m.note("created", "task", new_task["id"])
    _ok(http.put(f"task/{open_task['id']}/", json={"is_complete": True}))
    m.note("updated", "task", open_task["id"])

    # Activities of every migrated type: old ones edited (invisible to date_created filters), new ones
    # created, one deleted where Close allows it.
    _ok(http.put(f"activity/call/{call['id']}/", json={"note": "Edited long after the call"}))
    m.note("updated", "call", call["id"])
    _ok(http.delete(f"activity/email/{email['id']}/"))
    m.note("deleted", "email", email["id"])
    sms = _ok(
        http.post(
            "activity/sms/",
            json={
                "lead_id": lead["id"],
                "text": "See you Monday",
                "status": "sent",
                "direction": "outbound",
                "local_phone": "+14155550100",
                "remote_phone": "+14155550199",
            },
        )
    )
    m.note("created", "sms", sms["id"])
    _ok(http.put(f"activity/meeting/{meeting['id']}/", json={"user_note": "Moved to the new office"}))
    m.note("updated", "meeting", meeting["id"])
    note = _ok(http.post("activity/note/", json={"lead_id": lead["id"], "note": "Signed the delta contract"}))
    m.note("created", "note", note["id"])
    _ok(http.delete(f"activity/note/{old_note['id']}/"))
    m.note("deleted", "note", old_note["id"])
    _ok(http.put(f"activity/custom/{custom['id']}/", json={"pinned": True}))
    m.note("updated", "custom_activity", custom["id"])

    # An attachment on a new note: upload (close_api.md §4.16), then reference the download URL.
    upload = _ok(http.post("files/upload/", json={"content_type": "image/png", "filename": "delta.png"}))
    fields = upload["upload"]["fields"]
    stored = httpx.post(
        upload["upload"]["url"], data=fields, files={"file": ("delta.png", ATTACHMENT_BYTES, "image/png")}
    )
    assert stored.status_code in (200, 201, 204), stored.text
    attached = _ok(
        http.post(
            "activity/note/",
            json={
                "lead_id": lead["id"],
                "note": "The signed page",
                "attachments": [
                    {
                        "url": upload["download"]["url"],
                        "filename": "delta.png",
                        "content_type": "image/png",
                        "size": len(ATTACHMENT_BYTES),
                    }
                ],
            },
        )
    )
    m.note("created", "note", attached["id"])
    m.attachment_note = attached["id"]

    # A merge: the source's contacts, opportunities and activities move to the destination.
    _ok(http.post("lead/merge/", json={"source": merge_source["id"], "destination": merge_destination["id"]}))
    m.merged = (merge_source["id"], merge_destination["id"])
    return m
