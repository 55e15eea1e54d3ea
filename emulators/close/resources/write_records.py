"""POST / PUT / DELETE of leads, contacts, opportunities and tasks (close_api.md §4.1–§4.3, §4.8).

Create and update answer the object (a lead as GET /lead/{id}/ returns it), delete answers `{}` with 200
(§1.3). PUT behaves as PATCH. Events per developer.close.com "List of Event Types": a lead `updated` event
only for the lead's own fields, its addresses/custom fields, or a contact added/removed (`contact_ids`);
changes to a lead's opportunities and edits of its existing contacts are their own events only, "even
though they may affect the lead's `date_updated`" — which they do here, as close_api.md §7.7 has it
("updating a contact/opportunity bumps the parent lead's date_updated"); tasks and activities, which
§7.7 does not name, leave it alone. Deleting a lead deletes its contacts, opportunities, activities and tasks,
each with its own `deleted` event ("deleting a lead will cause additional deleted events on child
objects"). A lead status change adds a LeadStatusChange activity, an opportunity status change an
OpportunityStatusChange activity, a task completion a TaskCompleted activity (§4.7.7–§4.7.9), each with
its `created` event (`activity.lead_status_change`, ... are in the §4.14 catalog).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emulators.orgdata.util import CURRENCY_SYMBOLS, money_formatted

from ..errors import field_error, not_found
from ..ids import new_id
from .base import Ctx
from .write_fields import (
    BAD_CHOICE,
    REQUIRED,
    apply_custom,
    custom_field_ids,
    existing_lead,
    int_field,
    named_custom,
    note_pair,
    optional_ref,
    patch,
    user_name,
)
from .write_session import WriteSession

LEAD_FIELDS = frozenset({"name", "url", "description", "addresses"})
CONTACT_FIELDS = frozenset({"name", "title", "emails", "phones", "urls"})
OPPORTUNITY_FIELDS = frozenset(
    {
        "contact_id",
        "user_id",
        "value",
        "value_period",
        "value_currency",
        "confidence",
        "date_won",
        "date_lost",
    }
)
TASK_FIELDS = frozenset({"assigned_to", "date", "is_complete", "text", "contact_id"})
TASK_TYPES = ("lead", "outgoing_call")  # "Currently only tasks of type lead and outgoing_call can be created"


# ----- leads -------------------------------------------------------------------------------------------------
def lead_event_view(ctx: Ctx, lead: dict[str, Any]) -> dict[str, Any]:
    """A lead as its events carry it: with `contact_ids` (whose change makes a contact add/remove a lead
    update)."""
    return dict(lead) | {"contact_ids": [c["id"] for c in ctx.store.contacts_by_lead.get(lead["id"], [])]}


def _lead_status(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any] | None:
    """The status a body asks for (`status_id`, or `status` as a label); None when it names none."""
    store = ctx.store
    if body.get("status_id") is not None:
        status = store.lead_statuses_by_id.get(body["status_id"])
        if status is None:
            raise field_error("status", BAD_CHOICE)
        return status
    if body.get("status") is not None:
        status = next((s for s in store.org.lead_statuses if s.get("label") == body["status"]), None)
        if status is None:
            raise field_error("status", BAD_CHOICE)
        return status
    return None


def _derive_lead(ctx: Ctx, lead: dict[str, Any]) -> None:
    contacts = ctx.store.contacts_by_lead.get(lead["id"], [])
    # display_name = the name, else the first contact's name (close_api.md §4.1).
    lead["display_name"] = lead.get("name") or (contacts[0].get("name") if contacts else "") or ""
    lead["custom"] = named_custom(lead, custom_field_ids(ctx.store, ("lead", "shared")))


def _status_change_activity(w: WriteSession, lead: dict[str, Any], old: dict[str, Any]) -> None:
    act = w.new_activity(
        "LeadStatusChange",
        lead["id"],
        old_status_id=old.get("status_id"),
        old_status_label=old.get("status_label"),
        new_status_id=lead.get("status_id"),
        new_status_label=lead.get("status_label"),
    )
    w.store.insert("activity", act)
    w.record("created", "activity", act)


def _new_contact(ctx: Ctx, w: WriteSession, body: dict[str, Any], lead_id: str) -> dict[str, Any]:
    contact: dict[str, Any] = {
        "id": new_id("cont"),
        "lead_id": lead_id,
        "organization_id": ctx.store.organization_id,
        "name": "",
        "title": "",
        "emails": [],
        "phones": [],
        "urls": [],
        "integration_links": [],
    }
    patch(contact, body, CONTACT_FIELDS)
    apply_custom(contact, body)
    contact["display_name"] = contact.get("name") or ""
    w.stamp_created(contact, names=False)  # contacts carry no *_by_name fields (close_api.md §4.2)
    return contact


def _new_lead(ctx: Ctx, w: WriteSession, body: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    status = _lead_status(ctx, body) or (store.org.lead_statuses[0] if store.org.lead_statuses else {})
    lead_id = new_id("lead")
    lead: dict[str, Any] = {
        "id": lead_id,
        "name": "",
        "display_name": "",
        "url": None,
        "description": "",
        "status_id": status.get("id"),
        "status_label": status.get("label"),
        "addresses": [],
        "html_url": f"https://app.close.com/lead/{lead_id}/",
        "integration_links": [],
        "organization_id": store.organization_id,
    }
    patch(lead, body, LEAD_FIELDS)
    apply_custom(lead, body)
    w.stamp_created(lead)
    return lead


def _insert_lead(ctx: Ctx, w: WriteSession, lead: dict[str, Any], contact_bodies: list[Any]) -> None:
    contacts = [_new_contact(ctx, w, c, lead["id"]) for c in contact_bodies if isinstance(c, dict)]
    ctx.store.insert("lead", lead)
    for contact in contacts:
        ctx.store.insert("contact", contact)
    _derive_lead(ctx, lead)
    w.record("created", "lead", lead_event_view(ctx, lead))
    for contact in contacts:
        w.record("created", "contact", contact)


def create_lead(ctx: Ctx) -> bytes:
    """`POST /lead/`: "Contacts, addresses, and custom fields can all be nested in the lead"."""
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        w = WriteSession(ctx)
        lead = _new_lead(ctx, w, body)
        _insert_lead(ctx, w, lead, body.get("contacts") or [])
        return store.lead_bytes(lead)


def _get(ctx: Ctx, index: dict[str, dict[str, Any]], model: str) -> dict[str, Any]:
    obj = index.get(ctx.args["id"])
    if obj is None:
        raise not_found(model)
    return obj


def update_lead(ctx: Ctx) -> bytes:
    """`PUT /lead/{id}/`: a non-destructive patch; nested `contacts` cannot be updated here (§4.1)."""
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        lead = _get(ctx, store.leads_by_id, "Lead")
        status = _lead_status(ctx, body)
        w = WriteSession(ctx)
        before = dict(lead)
        patch(lead, body, LEAD_FIELDS)
        apply_custom(lead, body)
        if status is not None:
            lead["status_id"], lead["status_label"] = status["id"], status["label"]
        _derive_lead(ctx, lead)
        if lead == before:
            return store.lead_bytes(lead)
        w.stamp_updated(lead)
        store.changed("lead", lead, before)
        if lead.get("name") != before.get("name"):
            _rename_children(ctx, lead)
        w.record("updated", "lead", lead_event_view(ctx, lead), lead_event_view(ctx, before))
        if lead.get("status_id") != before.get("status_id"):
            _status_change_activity(w, lead, before)
        return store.lead_bytes(lead)


def _rename_children(ctx: Ctx, lead: dict[str, Any]) -> None:
    """`lead_name` on opportunities and tasks is a denormalised copy: it follows, without an event."""
    store = ctx.store
    for kind, rows in (
        ("opportunity", store.opportunities_by_lead.get(lead["id"], [])),
        ("task", [t for t in store.tasks_by_id.values() if t.get("lead_id") == lead["id"]]),
    ):
        for obj in rows:
            before = dict(obj)
            obj["lead_name"] = lead.get("name")
            store.changed(kind, obj, before)


def touch_lead(ctx: Ctx, w: WriteSession, lead_id: str | None) -> None:
    """Move the lead's `date_updated` for a change of one of its contacts or opportunities (no event)."""
    lead = ctx.store.leads_by_id.get(lead_id or "")
    if lead is None or lead.get("date_updated") == w.now:
        return
    before = dict(lead)
    lead["date_updated"] = w.now
    ctx.store.changed("lead", lead, before)


def lead_children(ctx: Ctx, lead_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Everything that belongs to a lead, by kind (tasks of every `_type`, not only lead tasks)."""
    store = ctx.store
    return [
        ("contact", list(store.contacts_by_lead.get(lead_id, []))),
        ("opportunity", list(store.opportunities_by_lead.get(lead_id, []))),
        ("activity", list(store.activities_by_lead.get(lead_id, []))),
        ("task", [t for t in store.tasks_by_id.values() if t.get("lead_id") == lead_id]),
    ]


def delete_lead(ctx: Ctx) -> bytes:
    store = ctx.store
    with store.write_lock:
        lead = _get(ctx, store.leads_by_id, "Lead")
        w = WriteSession(ctx)
        last_state = lead_event_view(ctx, lead)
        for kind, rows in lead_children(ctx, lead["id"]):
            for obj in rows:
                w.record("deleted", kind, obj)
            store.remove_many(kind, rows)
        w.record("deleted", "lead", last_state)
        store.remove_many("lead", [lead])
    return b"{}"


# ----- contacts ----------------------------------------------------------------------------------------------
def create_contact(ctx: Ctx) -> bytes:
    """`POST /contact/`: "If you do not provide a `lead_id` then a new lead will be created, named after
    the contact" (close_api.md §4.2)."""
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        lead_id = body.get("lead_id")
        lead = existing_lead(store, lead_id) if lead_id is not None else None
        w = WriteSession(ctx)
        if lead is None:
            new_lead = _new_lead(ctx, w, {"name": body.get("name") or ""})
            _insert_lead(ctx, w, new_lead, [body])
            return store.object_bytes(store.contacts_by_lead[new_lead["id"]][0])
        contact = _new_contact(ctx, w, body, lead["id"])
        lead_before = lead_event_view(ctx, lead)
        store.insert("contact", contact)
        w.record("created", "contact", contact)
        _lead_contacts_changed(ctx, w, lead, lead_before)
        return store.object_bytes(contact)


def _lead_contacts_changed(ctx: Ctx, w: WriteSession, lead: dict[str, Any], before: dict[str, Any]) -> None:
    store = ctx.store
    plain_before = {k: v for k, v in before.items() if k != "contact_ids"}
    _derive_lead(ctx, lead)
    w.stamp_updated(lead)
    store.changed("lead", lead, plain_before)
    w.record("updated", "lead", lead_event_view(ctx, lead), before)


def update_contact(ctx: Ctx) -> bytes:
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        contact = _get(ctx, store.contacts_by_id, "Contact")
        w = WriteSession(ctx)
        before = dict(contact)
        patch(contact, body, CONTACT_FIELDS)
        apply_custom(contact, body)
        contact["display_name"] = contact.get("name") or ""
        if contact == before:
            return store.object_bytes(contact)
        w.stamp_updated(contact)
        store.changed("contact", contact, before)
        w.record("updated", "contact", contact, before)
        lead = store.leads_by_id.get(contact.get("lead_id") or "")
        if lead is not None and not lead.get("name"):
            _derive_lead(ctx, lead)  # display_name may come from this contact's name
        touch_lead(ctx, w, contact.get("lead_id"))
        return store.object_bytes(contact)


def delete_contact(ctx: Ctx) -> bytes:
    store = ctx.store
    with store.write_lock:
        contact = _get(ctx, store.contacts_by_id, "Contact")
        w = WriteSession(ctx)
        lead = store.leads_by_id.get(contact.get("lead_id") or "")
        lead_before = lead_event_view(ctx, lead) if lead is not None else None
        w.record("deleted", "contact", contact)
        store.remove_many("contact", [contact])
        if lead is not None and lead_before is not None:
            _lead_contacts_changed(ctx, w, lead, lead_before)
    return b"{}"


# ----- opportunities -----------------------------------------------------------------------------------------
def _opportunity_status(ctx: Ctx, status_id: Any) -> dict[str, Any]:
    status = ctx.store.opportunity_statuses_by_id.get(status_id) if isinstance(status_id, str) else None
    if status is None:
        raise field_error("status", BAD_CHOICE)
    return status


def _derive_opportunity(ctx: Ctx, opp: dict[str, Any], w: WriteSession) -> None:
    store = ctx.store
    status = store.opportunity_statuses_by_id.get(opp.get("status_id") or "", {})
    pipeline = store.pipelines_by_id.get(status.get("pipeline_id") or "", {})
    opp.update(
        status_label=status.get("label"),
        status_display_name=status.get("label"),
        status_type=status.get("type"),
        pipeline_id=pipeline.get("id"),
        pipeline_name=pipeline.get("name"),
    )
    lead = store.leads_by_id.get(opp.get("lead_id") or "", {})
    contact = store.contacts_by_id.get(opp.get("contact_id") or "", {})
    opp["lead_name"] = lead.get("name")
    opp["contact_name"] = contact.get("name") if contact else None
    opp["user_name"] = user_name(store, opp.get("user_id"))
    value = opp.get("value") or 0
    period = opp.get("value_period") or "one_time"
    confidence = opp.get("confidence") or 0
    annualized = value * 12 if period == "monthly" else value
    opp.update(
        value_formatted=money_formatted(value, opp.get("value_currency") or "USD", period),
        expected_value=value * confidence // 100,
        annualized_value=annualized,
        annualized_expected_value=annualized * confidence // 100,
    )
    if status.get("type") == "won" and not opp.get("date_won"):
        # "setting a won status auto-fills date_won with today" (§4.3); the emulator's today is UTC.
        opp["date_won"] = datetime.fromisoformat(w.now).astimezone(UTC).date().isoformat()


def _check_opportunity_body(ctx: Ctx, body: dict[str, Any]) -> None:
    store = ctx.store
    optional_ref(store.contacts_by_id, body, "contact_id")
    optional_ref(store.users_by_id, body, "user_id")
    int_field(body, "value")
    int_field(body, "confidence", 0, 100)
    if body.get("value_period") is not None and body["value_period"] not in ("one_time", "monthly", "annual"):
        raise field_error("value_period", BAD_CHOICE)
    if body.get("value_currency") is not None and body["value_currency"] not in CURRENCY_SYMBOLS:
        raise field_error("value_currency", BAD_CHOICE)
    if body.get("status_id") is not None:
        _opportunity_status(ctx, body["status_id"])


def _opportunity_status_change(w: WriteSession, opp: dict[str, Any], old: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"opportunity_id": opp["id"]}
    for side, source in (("old", old), ("new", opp)):
        for name in ("status_id", "status_label", "status_type", "pipeline_id", "pipeline_name"):
            fields[f"{side}_{name}"] = source.get(name)
    for name in ("value", "value_currency", "value_period", "value_formatted", "confidence"):
        fields[f"opportunity_{name}"] = opp.get(name)
    # A datetime here, where the opportunity has a date (close_api.md §1.5).
    fields["opportunity_date_won"] = f"{opp['date_won']}T00:00:00+00:00" if opp.get("date_won") else None
    act = w.new_activity("OpportunityStatusChange", opp["lead_id"], **fields)
    w.store.insert("activity", act)
    w.record("created", "activity", act)


def create_opportunity(ctx: Ctx) -> bytes:
    """`POST /opportunity/`: without `lead_id` a new lead is created for it (§4.3)."""
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        lead = existing_lead(store, body["lead_id"]) if body.get("lead_id") is not None else None
        _check_opportunity_body(ctx, body)
        w = WriteSession(ctx)
        if lead is None:
            lead = _new_lead(ctx, w, {"name": "Untitled"})
            _insert_lead(ctx, w, lead, [])
        default_status = next((s for s in store.org.opportunity_statuses if s.get("type") == "active"), {})
        opp: dict[str, Any] = {
            "id": new_id("oppo"),
            "lead_id": lead["id"],
            "organization_id": store.organization_id,
            "status_id": body.get("status_id") or default_status.get("id"),
            "contact_id": None,
            "user_id": w.user_id,
            "value": 0,
            "value_currency": store.org.organization.get("currency") or "USD",
            "value_period": "one_time",
            "confidence": 0,
            "date_won": None,
            "date_lost": None,
            "note": "",
            "note_html": "",
            "integration_links": [],
        }
        patch(opp, body, OPPORTUNITY_FIELDS)
        note_pair(opp, body)
        apply_custom(opp, body)
        _derive_opportunity(ctx, opp, w)
        w.stamp_created(opp)
        store.insert("opportunity", opp)
        w.record("created", "opportunity", opp)
        touch_lead(ctx, w, opp["lead_id"])
        return store.object_bytes(opp)


def update_opportunity(ctx: Ctx) -> bytes:
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        opp = _get(ctx, store.opportunities_by_id, "Opportunity")
        _check_opportunity_body(ctx, body)
        w = WriteSession(ctx)
        before = dict(opp)
        patch(opp, body, OPPORTUNITY_FIELDS | {"status_id"})
        note_pair(opp, body)
        apply_custom(opp, body)
        _derive_opportunity(ctx, opp, w)
        if opp == before:
            return store.object_bytes(opp)
        w.stamp_updated(opp)
        store.changed("opportunity", opp, before)
        w.record("updated", "opportunity", opp, before)
        if opp.get("status_id") != before.get("status_id"):
            _opportunity_status_change(w, opp, before)
        touch_lead(ctx, w, opp["lead_id"])
        return store.object_bytes(opp)


def delete_opportunity(ctx: Ctx) -> bytes:
    store = ctx.store
    with store.write_lock:
        opp = _get(ctx, store.opportunities_by_id, "Opportunity")
        w = WriteSession(ctx)
        w.record("deleted", "opportunity", opp)
        store.remove_many("opportunity", [opp])
        touch_lead(ctx, w, opp.get("lead_id"))
    return b"{}"


# ----- tasks -------------------------------------------------------------------------------------------------
def _derive_task(ctx: Ctx, task: dict[str, Any]) -> None:
    store = ctx.store
    lead = store.leads_by_id.get(task.get("lead_id") or "", {})
    contact = store.contacts_by_id.get(task.get("contact_id") or "")
    task["lead_name"] = lead.get("name")
    task["contact_name"] = contact.get("name") if contact else None
    task["assigned_to_name"] = user_name(store, task.get("assigned_to"))
    date = task.get("date")
    task["due_date"] = date[:10] if isinstance(date, str) else None
    task["is_dateless"] = not date
    if task.get("is_complete"):
        task["view"] = "archive"
    else:
        # inbox = due up to the end of today, future = from tomorrow (§4.8); the emulator's day is UTC.
        today = (task.get("date_updated") or "")[:10]
        task["view"] = "future" if isinstance(date, str) and date[:10] > today else "inbox"


def _check_task_body(ctx: Ctx, body: dict[str, Any]) -> None:
    store = ctx.store
    optional_ref(store.contacts_by_id, body, "contact_id")
    if body.get("assigned_to") is not None and body["assigned_to"] not in store.users_by_id:
        raise field_error("assigned_to", "Object does not exist.")
    if "is_complete" in body and not isinstance(body["is_complete"], bool):
        raise field_error("is_complete", "Not a valid boolean.")


def create_task(ctx: Ctx) -> bytes:
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        if body.get("lead_id") in (None, ""):
            raise field_error("lead", REQUIRED)
        existing_lead(store, body["lead_id"])
        kind = body.get("_type") or "lead"
        if kind not in TASK_TYPES:
            raise field_error("_type", BAD_CHOICE)
        if kind == "lead" and not body.get("text"):
            raise field_error("text", REQUIRED)
        _check_task_body(ctx, body)
        w = WriteSession(ctx)
        task: dict[str, Any] = {
            "_type": kind,
            "id": new_id("task" if kind == "lead" else "noti"),
            "organization_id": store.organization_id,
            "lead_id": body["lead_id"],
            "contact_id": None,
            "assigned_to": w.user_id,
            "date": None,
            "is_complete": False,
            "object_type": None,
            "object_id": None,
            "text": "",
        }
        patch(task, body, TASK_FIELDS)
        w.stamp_created(task)
        _derive_task(ctx, task)
        store.insert("task", task)
        w.record("created", "task", task)
        return store.object_bytes(task)


def update_task(ctx: Ctx) -> bytes:
    """`PUT /task/{id}/`: `assigned_to`, `date`, `is_complete` on all tasks, plus `text` on lead tasks."""
    body = ctx.body or {}
    store = ctx.store
    with store.write_lock:
        task = _get(ctx, store.tasks_by_id, "Task")
        _check_task_body(ctx, body)
        w = WriteSession(ctx)
        before = dict(task)
        writable = TASK_FIELDS if task.get("_type") == "lead" else TASK_FIELDS - {"text", "contact_id"}
        patch(task, body, writable)
        if task == before:
            return store.object_bytes(task)
        w.stamp_updated(task)
        if task.get("is_complete") and not before.get("is_complete"):
            _task_completed_activity(w, task)
        _derive_task(ctx, task)
        store.changed("task", task, before)
        w.record("updated", "task", task, before)
        return store.object_bytes(task)


def _task_completed_activity(w: WriteSession, task: dict[str, Any]) -> None:
    """Completing a task adds a TaskCompleted activity, and the task then points at it with
    `object_type: "taskcompleted"` / `object_id` (close_api.md §4.7.9)."""
    act = w.new_activity(
        "TaskCompleted",
        task.get("lead_id"),
        contact_id=task.get("contact_id"),
        task_id=task["id"],
        task_text=task.get("text"),
        task_assigned_to=task.get("assigned_to"),
        task_assigned_to_name=task.get("assigned_to_name"),
    )
    w.store.insert("activity", act)
    w.record("created", "activity", act)
    task["object_type"], task["object_id"] = "taskcompleted", act["id"]


def delete_task(ctx: Ctx) -> bytes:
    store = ctx.store
    with store.write_lock:
        task = _get(ctx, store.tasks_by_id, "Task")
        w = WriteSession(ctx)
        w.record("deleted", "task", task)
        store.remove_many("task", [task])
    return b"{}"


ROUTES = [
    ("POST", "lead", create_lead),
    ("PUT", "lead/{id}", update_lead),
    ("DELETE", "lead/{id}", delete_lead),
    ("POST", "contact", create_contact),
    ("PUT", "contact/{id}", update_contact),
    ("DELETE", "contact/{id}", delete_contact),
    ("POST", "opportunity", create_opportunity),
    ("PUT", "opportunity/{id}", update_opportunity),
    ("DELETE", "opportunity/{id}", delete_opportunity),
    ("POST", "task", create_task),
    ("PUT", "task/{id}", update_task),
    ("DELETE", "task/{id}", delete_task),
]
