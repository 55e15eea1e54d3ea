"""POST / PUT / DELETE of activities, on the endpoints close_api.md §4.7 lists as writable.

POST: note, call, email, sms, whatsapp_message, custom (meetings come from calendar sync: PUT and DELETE
only). DELETE also on the read-mostly kinds the table allows (emailthread, status changes, task_completed,
form_submission). Every activity needs an existing `lead_id` ("lead": "This field is required." /
"Object does not exist.", §1.4). Custom activities validate their type and, when published (the default),
its required fields (§4.9; `draft` skips validation). Attachments of emails and notes go through the Files
API (uploads.py). An email joins the EmailThread named by `thread_id`, or starts one (every Email has a
thread, §4.7.2/§4.7.3), and the thread's summary follows its emails.

Choices where the reference is silent: an email created without `status` is a `draft`; `direction`
follows the status (`inbox` -> incoming, else outgoing) unless given; PUT may edit any writable field of
any email (the "only drafts can be modified" rule is not enforced); a custom activity's required fields are
checked when it is published (created published, or PUT from draft to published), not on every later PUT.
"""

from __future__ import annotations

import re
from typing import Any

from emulators.orgdata.activities import _STRIPPED_KEYS as STRIPPED_EMAIL_KEYS  # the threads' email shape

from ..errors import field_error, not_found
from ..jsonutil import dumps
from ..store import ACTIVITY_KINDS
from ..uploads import persist_attachments
from .base import Ctx
from .write_fields import (
    BAD_CHOICE,
    REQUIRED,
    apply_custom,
    existing_lead,
    note_pair,
    optional_ref,
    patch,
    user_name,
)
from .write_session import WriteSession

CREATABLE = ("note", "call", "email", "sms", "whatsapp_message", "custom")
UPDATABLE = ("note", "call", "email", "sms", "whatsapp_message", "custom", "meeting")
DELETABLE = (
    *UPDATABLE,
    "emailthread",
    "status_change/lead",
    "status_change/opportunity",
    "task_completed",
    "form_submission",
)
WITH_ATTACHMENTS = ("Note", "Email")
WITH_NOTE = ("Note", "Call", "Meeting")
_NOT_ON_UPDATE = frozenset({"lead_id", "custom_activity_type_id", "thread_id"})

# Defaults of a created activity, per type (fields as the generated orgs and close_api.md §4.7.x show them).
DEFAULTS: dict[str, dict[str, Any]] = {
    "Note": {"note": "", "note_html": "", "title": None, "pinned": False, "attachments": [], "source": "api"},
    "Call": {
        "direction": "outbound",
        "status": "completed",  # "status defaults to completed" (§4.7.1)
        "disposition": None,
        "duration": 0,
        "note": "",
        "note_html": "",
        "phone": None,
        "local_phone": None,
        "remote_phone": None,
        "recording_url": None,
        "voicemail_url": None,
        "voicemail_duration": 0,
        "has_recording": False,
        "call_method": "external",
        "source": "External",
    },
    "Email": {
        "status": "draft",
        "subject": "",
        "sender": None,
        "to": [],
        "cc": [],
        "bcc": [],
        "body_text": "",
        "body_html": "",
        "attachments": [],
        "envelope": None,
        "template_id": None,
        "date_sent": None,
        "date_scheduled": None,
    },
    "SMS": {
        "status": "draft",
        "direction": "outbound",
        "text": "",
        "local_phone": None,
        "remote_phone": None,
        "attachments": [],
        "template_id": None,
        "source": "External",
        "date_sent": None,
        "date_scheduled": None,
    },
    "WhatsAppMessage": {"direction": "outbound", "message_markdown": "", "attachments": [], "source": "api"},
    "CustomActivity": {"status": "published", "pinned": False, "mentions": [], "source": "api"},
}
_SUBJECT_PREFIX = re.compile(r"^(?:(?:re|fwd?|aw)\s*:\s*)+", re.IGNORECASE)


def _model(kind: str) -> str:
    return ACTIVITY_KINDS[kind]


def _check_refs(ctx: Ctx, body: dict[str, Any]) -> None:
    store = ctx.store
    optional_ref(store.contacts_by_id, body, "contact_id")
    optional_ref(store.users_by_id, body, "user_id")


def _check_custom(ctx: Ctx, act: dict[str, Any]) -> None:
    """The type must exist; a published instance needs every required field (§4.9)."""
    type_id = act.get("custom_activity_type_id")
    if not type_id:
        raise field_error("custom_activity_type_id", REQUIRED)
    kind = ctx.store.custom_activity_types_by_id.get(type_id)
    if kind is None:
        raise field_error("custom_activity_type_id", "Object does not exist.")
    if act.get("status") not in ("published", "draft"):
        raise field_error("status", BAD_CHOICE)
    if act["status"] == "published":
        for f in kind.get("fields", []):
            if f.get("required") and act.get("custom." + f["id"]) in (None, "", []):
                raise field_error("custom." + f["id"], REQUIRED)


def _derive(ctx: Ctx, act: dict[str, Any], body: dict[str, Any], w: WriteSession) -> None:
    type_name = act["_type"]
    if type_name in WITH_NOTE:
        note_pair(act, body)
    act["user_name"] = user_name(ctx.store, act.get("user_id"))
    if type_name == "Email":
        if "direction" not in body:
            act["direction"] = "incoming" if act.get("status") == "inbox" else "outgoing"
        text = act.get("body_text") or ""
        act["body_preview"] = text[:200]
        if act.get("status") in ("sent", "inbox") and not act.get("date_sent"):
            act["date_sent"] = act.get("activity_at")
    if type_name == "SMS" and act.get("status") in ("sent", "inbox") and not act.get("date_sent"):
        act["date_sent"] = act.get("activity_at")
    if (
        type_name == "CustomActivity"
        and act.get("status") == "published"
        and not act.get("last_published_at")
    ):
        act["last_published_at"] = w.now
    if type_name == "CustomActivity" and "pinned" in body:
        act["pinned_at"] = w.now if act.get("pinned") else None


def _attachments(ctx: Ctx, act: dict[str, Any], body: dict[str, Any]) -> None:
    if act["_type"] in WITH_ATTACHMENTS and "attachments" in body:
        object_type = "activity." + act["_type"].lower()
        act["attachments"] = persist_attachments(ctx, body.get("attachments"), act, object_type)


# ----- email threads -----------------------------------------------------------------------------------------
def _thread_summary(ctx: Ctx, thread: dict[str, Any]) -> None:
    emails = [
        a
        for a in ctx.store.activities_by_lead.get(thread["lead_id"], [])
        if a.get("_type") == "Email" and a.get("thread_id") == thread["id"]
    ]
    emails.sort(key=lambda e: (e.get("activity_at") or "", e["id"]), reverse=True)  # newest first
    thread["emails"] = [{k: e.get(k) for k in STRIPPED_EMAIL_KEYS} for e in emails]
    thread["n_emails"] = len(emails)
    latest = emails[0] if emails else {}
    thread["latest_normalized_subject"] = _SUBJECT_PREFIX.sub("", latest.get("subject") or "").strip()
    participants: dict[str, dict[str, Any]] = {}
    for e in emails:
        for address in [e.get("sender"), *(e.get("to") or []), *(e.get("cc") or [])]:
            if isinstance(address, str) and address:
                email = address.rsplit("<", 1)[-1].rstrip(">").strip()
                name = address.rsplit("<", 1)[0].strip() if "<" in address else ""
                participants.setdefault(email, {"email": email, "name": name})
    thread["participants"] = list(participants.values())


def _new_thread(w: WriteSession, email: dict[str, Any]) -> dict[str, Any]:
    return w.new_activity(
        "EmailThread",
        email["lead_id"],
        contact_id=email.get("contact_id"),
        user_id=email.get("user_id"),
        user_name=email.get("user_name"),
        users=[email["user_id"]] if email.get("user_id") else [],
        activity_at=email.get("activity_at"),
    )


def _refresh_thread(ctx: Ctx, w: WriteSession, thread_id: str | None) -> None:
    """After an email changed: the thread's summary follows (an update), an emptied thread goes."""
    store = ctx.store
    thread = store.activities_by_id.get(thread_id or "")
    if thread is None or thread.get("_type") != "EmailThread":
        return
    before = dict(thread)
    _thread_summary(ctx, thread)
    if not thread["emails"]:
        w.record("deleted", "activity", thread)
        store.remove_many("activity", [thread])
        return
    if thread != before:
        w.stamp_updated(thread)
        store.changed("activity", thread, before)
        w.record("updated", "activity", thread, before)


# ----- handlers ----------------------------------------------------------------------------------------------
def _creator(kind: str):  # noqa: ANN202 - returns a handler
    type_name = _model(kind)

    def handler(ctx: Ctx) -> bytes:
        body = ctx.body or {}
        store = ctx.store
        with store.write_lock:
            if body.get("lead_id") in (None, ""):
                raise field_error("lead", REQUIRED)
            lead = existing_lead(store, body["lead_id"])
            _check_refs(ctx, body)
            thread = store.activities_by_id.get(body.get("thread_id") or "")
            if (
                type_name == "Email"
                and body.get("thread_id")
                and (
                    thread is None
                    or thread.get("_type") != "EmailThread"
                    or thread.get("lead_id") != lead["id"]
                )
            ):
                raise field_error("thread", "Object does not exist.")
            w = WriteSession(ctx)
            act = w.new_activity(type_name, lead["id"], **DEFAULTS.get(type_name, {}))
            patch(act, body, None)
            apply_custom(act, body)
            if type_name == "CustomActivity":
                _check_custom(ctx, act)
            _derive(ctx, act, body, w)
            _attachments(ctx, act, body)
            new_thread = None
            if type_name == "Email":
                if thread is None:
                    new_thread = _new_thread(w, act)
                    act["thread_id"] = new_thread["id"]
                else:
                    act["thread_id"] = thread["id"]
            store.insert("activity", act)
            w.record("created", "activity", act)
            if new_thread is not None:
                _thread_summary(ctx, new_thread)
                store.insert("activity", new_thread)
                w.record("created", "activity", new_thread)
            elif type_name == "Email":
                _refresh_thread(ctx, w, act["thread_id"])
            return store.object_bytes(act)

    return handler


def _existing(ctx: Ctx, kind: str) -> dict[str, Any]:
    act = ctx.store.activities_by_id.get(ctx.args["id"])
    if act is None or act.get("_type") != _model(kind):
        raise not_found(_model(kind))
    return act


def _updater(kind: str):  # noqa: ANN202 - returns a handler
    def handler(ctx: Ctx) -> bytes:
        body = {k: v for k, v in (ctx.body or {}).items() if k not in _NOT_ON_UPDATE}
        store = ctx.store
        with store.write_lock:
            act = _existing(ctx, kind)
            _check_refs(ctx, body)
            w = WriteSession(ctx)
            draft = dict(act)  # validated before the stored activity changes: a refused PUT changes nothing
            patch(draft, body, None)
            apply_custom(draft, body)
            if draft["_type"] == "CustomActivity" and (
                draft.get("status") != act.get("status") or draft.get("status") not in ("published", "draft")
            ):
                _check_custom(ctx, draft)  # publishing a draft validates its required fields (§4.9)
            _derive(ctx, draft, body, w)
            _attachments(ctx, draft, body)
            if draft == act:
                return store.object_bytes(act)
            before = dict(act)
            act.clear()
            act.update(draft)
            w.stamp_updated(act)
            store.changed("activity", act, before)
            w.record("updated", "activity", act, before)
            if act["_type"] == "Email":
                _refresh_thread(ctx, w, act.get("thread_id"))
            return store.object_bytes(act)

    return handler


def _deleter(kind: str):  # noqa: ANN202 - returns a handler
    def handler(ctx: Ctx) -> bytes:
        store = ctx.store
        with store.write_lock:
            act = _existing(ctx, kind)
            w = WriteSession(ctx)
            doomed = [act]
            if act["_type"] == "EmailThread":  # deleting a thread deletes its emails (close_api.md §4.7 (I))
                doomed = [
                    a
                    for a in store.activities_by_lead.get(act["lead_id"], [])
                    if a.get("_type") == "Email" and a.get("thread_id") == act["id"]
                ] + [act]
            for obj in doomed:
                w.record("deleted", "activity", obj)
            store.remove_many("activity", doomed)
            if act["_type"] == "Email":
                _refresh_thread(ctx, w, act.get("thread_id"))
        return dumps({})

    return handler


ROUTES: list[tuple[str, str, Any]] = []
for _kind in CREATABLE:
    ROUTES.append(("POST", f"activity/{_kind}", _creator(_kind)))
for _kind in UPDATABLE:
    ROUTES.append(("PUT", f"activity/{_kind}/{{id}}", _updater(_kind)))
for _kind in DELETABLE:
    ROUTES.append(("DELETE", f"activity/{_kind}/{{id}}", _deleter(_kind)))
