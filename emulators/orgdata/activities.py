"""Communication activities: calls (recordings, voicemails), e-mails with threads and attachments, SMS,
meetings, notes. Status changes and custom activities live in `history.py`."""

from __future__ import annotations

import re

from . import pools
from .config import Ctx
from .model import FileBlob
from .records import long_text
from .util import NOW_US, US_PER_DAY, US_PER_S, phone_number, rfc2822, ts, ts_seconds

OVERSIZE_BYTES = 5 * 1024 * 1024 + 1024 * 1024 + 4321  # ~6 MB: above the 5 MB default Dataverse upload limit
ORG_PHONE = ("+14155550100", "+1 415-555-0100")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Picker:
    """Chooses a lead, one of its contacts, a user and a moment after the lead's creation."""

    def __init__(self, ctx: Ctx, leads: list[dict], contacts_by_lead: dict[str, list[dict]]) -> None:
        self.ctx, self.leads, self.contacts_by_lead = ctx, leads, contacts_by_lead

    def lead(self) -> tuple[dict, dict | None]:
        rng = self.ctx.rng
        lead = rng.choice(self.leads)
        contacts = self.contacts_by_lead.get(lead["id"])
        return lead, (rng.choice(contacts) if contacts else None)

    def moment(self, lead: dict) -> int:
        created = lead["_created_us"]
        return created + 60 * US_PER_S + self.ctx.rng.randrange(NOW_US - created - 120 * US_PER_S)


def base(ctx: Ctx, kind: str, lead: dict, contact: dict | None, user: str | None, at_us: int) -> dict:
    at = ts(at_us)
    name = ctx.user_names[user] if user else None
    return {
        "id": ctx.ids.new("acti"),
        "_type": kind,
        "lead_id": lead["id"],
        "contact_id": contact["id"] if contact else None,
        "organization_id": ctx.org_id,
        "user_id": user,
        "user_name": name,
        "users": [],
        "activity_at": at,
        "date_created": at,
        "date_updated": ts(min(NOW_US, at_us + ctx.rng.randrange(1, 600) * US_PER_S)),
        "created_by": user,
        "created_by_name": name,
        "updated_by": user,
        "updated_by_name": name,
    }


def _first(contact: dict | None) -> str:
    return (contact["name"].split(" ")[0] if contact and contact["name"] else "there") or "there"


def _attachment(ctx: Ctx, owner: str, acti: str, size: int | None = None) -> dict:
    """Register a FileBlob and return the attachment object pointing at it."""
    rng = ctx.rng
    filename, content_type = rng.choice(pools.ATTACHMENT_KINDS)
    size = size if size is not None else rng.randrange(1_024, 400_000)
    # The URL carries an ASCII-safe name so that its path is identical before and after percent-decoding.
    key = f"go/file/persisted/{ctx.org_id}/{owner}/{acti}/{ctx.ids.raw(22)}/{_UNSAFE.sub('_', filename)}"
    ctx.files[key] = FileBlob(filename=filename, content_type=content_type, size=size, seed=key)
    return {
        "url": "https://app.close.com/" + key,
        "filename": filename,
        "size": size,
        "content_type": content_type,
    }


def build_calls(ctx: Ctx, pick: Picker, n: int) -> list[dict]:
    rng, out = ctx.rng, []
    for i in range(n):
        lead, contact = pick.lead()
        at = pick.moment(lead)
        inbound = rng.random() < 0.3
        disposition = rng.choices(("answered", "no-answer", "busy", "vm-left"), (60, 20, 5, 15))[0]
        voicemail = inbound and disposition == "vm-left"
        # Inbound voicemails reach the org line, not a person: Close leaves user_id empty.
        user = None if voicemail and rng.random() < 0.5 else rng.choice(ctx.owner_ids)
        act = base(ctx, "Call", lead, contact, user, at)
        aid = act["id"]
        if contact and contact["phones"]:
            phone, formatted = contact["phones"][0]["phone"], contact["phones"][0]["phone_formatted"]
        else:
            phone, formatted = phone_number(rng)
        duration = rng.randrange(15, 1800) if disposition == "answered" else 0
        note = rng.choice(("", "", rng.choice(pools.NOTES)))
        if i == 0:
            note = long_text(
                2400, "Call summary: walked through every module, objections and the rollout plan."
            )
        act.update(
            {
                "direction": "inbound" if inbound else "outbound",
                "status": "completed",
                "disposition": disposition,
                "duration": duration,
                "date_answered": ts(at + 4 * US_PER_S) if disposition == "answered" else None,
                "voicemail_duration": 0,
                "voicemail_url": None,
                "recording_url": None,
                "recording_duration": None,
                "recording_expires_at": None,
                "has_recording": False,
                "phone": phone,
                "remote_phone": phone,
                "remote_phone_formatted": formatted,
                "remote_country_iso": "US"
                if phone.startswith("+1")
                else ("GB" if phone.startswith("+44") else "DE"),
                "local_phone": ORG_PHONE[0],
                "local_phone_formatted": ORG_PHONE[1],
                "local_country_iso": "US",
                "note": note,
                "note_html": f"<body><p>{note}</p></body>",
                "call_method": "regular",
                "source": "Close.io",
                "cost": str(rng.randrange(0, 40)),
                "dialer_id": None,
                "is_forwarded": False,
                "sequence_id": None,
                "sequence_name": None,
                "sequence_subscription_id": None,
            }
        )
        if duration and rng.random() < 0.2:
            key = f"call/{aid}/recording/"
            size = duration * 2_000  # ~16 kbit/s speech codec
            ctx.files[key] = FileBlob(filename=f"{aid}.mp3", content_type="audio/mpeg", size=size, seed=key)
            act.update(
                {
                    "has_recording": True,
                    "recording_url": "https://api.close.com/" + key,
                    "recording_duration": duration,
                    "recording_expires_at": ts(at + 365 * 3 * US_PER_DAY),
                }
            )
        if voicemail:
            key = f"call/{aid}/voicemail/"
            vm = rng.randrange(5, 90)
            ctx.files[key] = FileBlob(
                filename=f"{aid}-voicemail.mp3", content_type="audio/mpeg", size=vm * 2_000, seed=key
            )
            act.update({"voicemail_duration": vm, "voicemail_url": "https://api.close.com/" + key})
        out.append(act)
    return out


def _email(
    ctx: Ctx,
    lead: dict,
    contact: dict | None,
    user: str,
    at: int,
    thread_id: str,
    outgoing: bool,
    subject: str,
    oversize: bool,
) -> dict:
    rng = ctx.rng
    act = base(ctx, "Email", lead, contact, user, at)
    user_email = ctx.user_emails[user]
    user_name = ctx.user_names[user]
    remote = contact["emails"][0]["email"] if contact and contact["emails"] else "info@example.org"
    remote_name = contact["name"] if contact else ""
    sender, sender_name, to, to_name = (
        (user_email, user_name, remote, remote_name)
        if outgoing
        else (remote, remote_name, user_email, user_name)
    )
    draft = outgoing and rng.random() < 0.01
    body = rng.choice(pools.BODIES).format(first=_first(contact), sender=user_name)
    attachments = []
    if oversize:
        attachments.append(_attachment(ctx, "activity.email", act["id"], OVERSIZE_BYTES))
    elif rng.random() < 0.06:
        attachments = [_attachment(ctx, "activity.email", act["id"]) for _ in range(rng.choice((1, 1, 2)))]
    message_id = f"<{ctx.ids.raw(20)}@mail.{ctx.shape.domain if outgoing else 'example.org'}>"
    stamp = act["activity_at"]
    act.update(
        {
            "thread_id": thread_id,
            "direction": "outgoing" if outgoing else "incoming",
            "status": "draft" if draft else ("sent" if outgoing else "inbox"),
            "subject": subject,
            "sender": f"{sender_name} <{sender}>" if sender_name else sender,
            "to": [to],
            "cc": [],
            "bcc": [],
            "envelope": None
            if draft
            else {
                "from": [{"email": sender, "name": sender_name}],
                "sender": [{"email": sender, "name": sender_name}],
                "to": [{"email": to, "name": to_name}],
                "cc": [],
                "bcc": [],
                "reply_to": [],
                "date": rfc2822(at),
                "message_id": message_id,
                "in_reply_to": None,
                "is_autoreply": False,
                "subject": subject,
            },
            "body_text": body,
            "body_html": "<div>" + body.replace("\n", "<br>\n") + "</div>",
            "body_preview": body[:200],
            "body_text_quoted": [{"expand": True, "text": body}],
            "attachments": attachments,
            "message_ids": [] if draft else [message_id],
            "references": [],
            "in_reply_to_id": None,
            "has_reply": False,
            "opens": [],
            "opens_summary": None,
            "template_id": None,
            "template_name": None,
            "email_account_id": None,
            "send_as_id": None,
            "send_attempts": [],
            "need_smtp_credentials": False,
            "date_sent": None if draft or not outgoing else stamp,
            "date_scheduled": None,
            "bulk_email_action_id": None,
            "followup_sequence_id": None,
            "followup_sequence_delay": None,
            "followup_sequence_add_cc_bcc": False,
            "sequence_id": None,
            "sequence_name": None,
            "sequence_subscription_id": None,
        }
    )
    return act


_STRIPPED_KEYS = (
    "_type",
    "id",
    "thread_id",
    "direction",
    "status",
    "subject",
    "sender",
    "to",
    "cc",
    "bcc",
    "body_preview",
    "attachments",
    "date_sent",
    "activity_at",
    "user_id",
)


def build_emails(ctx: Ctx, pick: Picker, n_target: int) -> list[dict]:
    """Threads of 1-4 e-mails; Email and EmailThread objects together make up `n_target` activities."""
    rng, out = ctx.rng, []
    oversize_done = False
    while len(out) < n_target:
        lead, contact = pick.lead()
        user = rng.choice(ctx.owner_ids)
        size = min(rng.choices((1, 2, 3, 4), (35, 35, 20, 10))[0], max(1, n_target - len(out) - 1))
        start = pick.moment(lead)
        thread_id = ctx.ids.new("acti")
        subject = rng.choice(pools.SUBJECTS).format(
            company=lead["name"] or "your team", n=rng.randrange(1000, 9999), brand=ctx.shape.brand
        )
        emails, at = [], start
        for k in range(size):
            outgoing = (k % 2 == 0) if rng.random() < 0.9 else rng.random() < 0.5
            emails.append(
                _email(
                    ctx,
                    lead,
                    contact,
                    user,
                    at,
                    thread_id,
                    outgoing,
                    subject if k == 0 else "Re: " + subject,
                    not oversize_done,
                )
            )
            oversize_done = True
            at = min(NOW_US - US_PER_S, at + rng.randrange(600, 3 * US_PER_DAY // US_PER_S) * US_PER_S)
        thread = base(ctx, "EmailThread", lead, contact, user, start)
        thread["id"] = thread_id
        thread["activity_at"] = emails[-1]["activity_at"]
        thread["date_updated"] = emails[-1]["date_updated"]
        thread["users"] = [user]
        participants: dict[str, str] = {}
        for e in emails:
            for p in e["envelope"]["from"] + e["envelope"]["to"] if e["envelope"] else []:
                participants.setdefault(p["email"], p["name"])
        thread.update(
            {
                "latest_normalized_subject": subject,
                "n_emails": len(emails),
                "participants": [{"email": k, "name": v} for k, v in participants.items()],
                "emails": [{k: e[k] for k in _STRIPPED_KEYS} for e in reversed(emails)],
            }
        )
        out.extend(emails)
        out.append(thread)
    return out


def build_sms(ctx: Ctx, pick: Picker, n: int) -> list[dict]:
    rng, out = ctx.rng, []
    for _ in range(n):
        lead, contact = pick.lead()
        at = pick.moment(lead)
        act = base(ctx, "SMS", lead, contact, rng.choice(ctx.owner_ids), at)
        if contact and contact["phones"]:
            phone, formatted = contact["phones"][0]["phone"], contact["phones"][0]["phone_formatted"]
        else:
            phone, formatted = phone_number(rng)
        outbound = rng.random() < 0.6
        act.update(
            {
                "direction": "outbound" if outbound else "inbound",
                "status": "sent" if outbound else "inbox",
                "text": rng.choice(pools.SMS_TEXTS).format(first=_first(contact)),
                "local_phone": ORG_PHONE[0],
                "local_phone_formatted": ORG_PHONE[1],
                "local_country_iso": "US",
                "remote_phone": phone,
                "remote_phone_formatted": formatted,
                "remote_country_iso": "US"
                if phone.startswith("+1")
                else ("GB" if phone.startswith("+44") else "DE"),
                "attachments": [],
                "template_id": None,
                "source": "Close.io",
                "cost": str(rng.randrange(1, 8)),
                "date_sent": act["activity_at"] if outbound else None,
                "date_scheduled": None,
                "error_message": None,
                "sequence_id": None,
                "sequence_name": None,
                "sequence_subscription_id": None,
            }
        )
        out.append(act)
    return out


def build_meetings(ctx: Ctx, pick: Picker, n: int) -> list[dict]:
    rng, out = ctx.rng, []
    for _ in range(n):
        lead, contact = pick.lead()
        at = pick.moment(lead)
        at += -at % (1800 * US_PER_S)  # meetings start on the half hour (rounded up: never before the lead)
        user = rng.choice(ctx.owner_ids)
        duration = rng.choice((1800, 2700, 3600))
        act = base(ctx, "Meeting", lead, contact, user, at)
        act["activity_at"] = act["date_created"] = ts_seconds(at)
        user_email = ctx.user_emails[user]
        attendees = [
            {
                "name": ctx.user_names[user],
                "contact_id": None,
                "user_id": user,
                "status": "yes",
                "is_organizer": True,
                "email": user_email,
            }
        ]
        if contact and contact["emails"]:
            attendees.append(
                {
                    "name": contact["name"] or None,
                    "contact_id": contact["id"],
                    "user_id": None,
                    "status": rng.choice(("yes", "noreply", "maybe")),
                    "is_organizer": False,
                    "email": contact["emails"][0]["email"],
                }
            )
        if rng.random() < 0.2:
            attendees.append(
                {
                    "name": None,
                    "contact_id": None,
                    "user_id": None,
                    "status": "noreply",
                    "is_organizer": False,
                    "email": "guest@partner.example.org",
                }
            )
        act.update(
            {
                "title": rng.choice(pools.MEETING_TITLES) + (f" – {lead['name']}" if lead["name"] else ""),
                "status": "canceled" if rng.random() < 0.05 else "completed",
                "source": "calendar",
                "starts_at": ts_seconds(at),
                "ends_at": ts_seconds(at + duration * US_PER_S),
                "duration": duration,
                "location": rng.choice((None, "Zoom", "Office – Room 4")),
                "calendar_event_uids": [ctx.ids.raw(26).lower()],
                "calendar_event_link": None,
                "connected_account_id": None,
                "is_recurring": False,
                "note": "",
                "integrations": [],
                "attendees": attendees,
                "users": [user],
            }
        )
        out.append(act)
    return out


def build_notes(ctx: Ctx, pick: Picker, n: int) -> list[dict]:
    rng, out = ctx.rng, []
    for _ in range(n):
        lead, _contact = pick.lead()
        act = base(ctx, "Note", lead, None, rng.choice(ctx.owner_ids), pick.moment(lead))
        note = rng.choice(pools.NOTES)
        attachments = []
        if rng.random() < 0.05:
            attachments = [_attachment(ctx, "activity.note", act["id"])]
            attachments[0]["thumbnail_url"] = None
        act.update(
            {
                "note": note,
                "note_html": f"<body><p>{note}</p></body>",
                "title": None,
                "pinned": rng.random() < 0.03,
                "attachments": attachments,
                "source": "ui",
            }
        )
        out.append(act)
    return out
