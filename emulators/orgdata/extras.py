"""Tasks, sequences (Workflows) and their subscriptions, Smart Views."""

from __future__ import annotations

from datetime import datetime

from .config import Ctx
from .truth import is_valid_email
from .util import EPOCH, NOW_US, ORG_CREATED_US, US_PER_DAY, US_PER_S, day, ts, ts_naive

TASK_TEXTS = (
    "Send the proposal",
    "Follow up after demo",
    "Call back about pricing",
    "Prepare contract",
    "Check in on onboarding",
    "Ask for a referral",
)


def _task_common(
    ctx: Ctx, kind: str, prefix: str, lead: dict, contact: dict | None, at: int, done: bool
) -> dict:
    rng = ctx.rng
    assignee = rng.choice(ctx.owner_ids)
    due = at + rng.randrange(1, 14) * US_PER_DAY
    updated = min(NOW_US, due + rng.randrange(US_PER_DAY)) if done else at
    return {
        "_type": kind,
        "id": ctx.ids.new(prefix),
        "organization_id": ctx.org_id,
        "lead_id": lead["id"],
        "lead_name": lead["name"],
        "contact_id": contact["id"] if contact else None,
        "contact_name": contact["name"] if contact else None,
        "assigned_to": assignee,
        "assigned_to_name": ctx.user_names[assignee],
        "date": day(due),
        "due_date": day(due),
        "is_complete": done,
        "is_dateless": False,
        "view": "archive" if done else ("inbox" if due <= NOW_US else "future"),
        "object_type": None,
        "object_id": None,
        "created_by": None if prefix == "noti" else assignee,
        "created_by_name": None if prefix == "noti" else ctx.user_names[assignee],
        "updated_by": None if prefix == "noti" else assignee,
        "updated_by_name": None if prefix == "noti" else ctx.user_names[assignee],
        "date_created": ts(at),
        "date_updated": ts(updated),
    }


def build_tasks(
    ctx: Ctx, pick, activities: list[dict], opportunities: list[dict], leads_by_id: dict
) -> list[dict]:
    rng, out = ctx.rng, []
    for i in range(ctx.profile.tasks):
        lead, contact = pick.lead()
        done = i % 5 != 0 if i > 1 else i == 0  # ~80 % done; first two guarantee one of each
        # Open tasks are recent so that some are due in the future.
        at = (
            pick.moment(lead)
            if done
            else max(lead["_created_us"], NOW_US - rng.randrange(1, 40) * US_PER_DAY)
        )
        task = _task_common(ctx, "lead", "task", lead, contact, at, done)
        task["text"] = rng.choice(TASK_TEXTS)
        out.append(task)
    calls = [a for a in activities[:5000] if a["_type"] == "Call"]
    threads = [a for a in activities if a["_type"] == "EmailThread"][:200]
    n_system = max(4, ctx.profile.tasks // 50)
    for i in range(n_system):
        kind = ("missed_call", "incoming_email", "opportunity_due", "voicemail")[i % 4]
        if kind in ("missed_call", "voicemail") and calls:
            target = rng.choice(calls)
            lead = leads_by_id[target["lead_id"]]
            task = _task_common(ctx, kind, "noti", lead, None, _us_of(target), rng.random() < 0.5)
            task.update(
                {
                    "object_type": "call",
                    "object_id": target["id"],
                    "phone": target["phone"],
                    "phone_formatted": target["remote_phone_formatted"],
                    "local_phone": target["local_phone"],
                }
            )
        elif kind == "incoming_email" and threads:
            target = rng.choice(threads)
            lead = leads_by_id[target["lead_id"]]
            task = _task_common(ctx, kind, "noti", lead, None, _us_of(target), rng.random() < 0.5)
            task.update(
                {
                    "object_type": "emailthread",
                    "object_id": target["id"],
                    "subject": target["latest_normalized_subject"],
                    "body_preview": target["emails"][0]["body_preview"],
                }
            )
        else:
            opp = rng.choice(opportunities)
            lead = leads_by_id[opp["lead_id"]]
            task = _task_common(ctx, "opportunity_due", "noti", lead, None, opp["_created_us"], False)
            task.update(
                {
                    "object_type": "opportunity",
                    "object_id": opp["id"],
                    "opportunity_value": opp["value"],
                    "opportunity_value_currency": opp["value_currency"],
                    "opportunity_value_formatted": opp["value_formatted"],
                    "opportunity_value_period": opp["value_period"],
                    "opportunity_note": opp["note"],
                }
            )
        out.append(task)
    return out


def _us_of(activity: dict) -> int:
    moment = datetime.fromisoformat(activity["date_created"])
    return int((moment - EPOCH).total_seconds()) * US_PER_S


_SEQUENCE_SPECS = (
    (
        "New Lead Nurture",
        "active",
        (("email", 0), ("call", 86_400), ("sms", 2 * 86_400), ("email", 3 * 86_400)),
    ),
    ("Renewal Reminder", "paused", (("email", 0), ("email", 7 * 86_400), ("call", 2 * 86_400))),
    ("Webinar Follow-up", "draft", (("email", 3_600),)),
)


def build_sequences(ctx: Ctx) -> list[dict]:
    owner = ctx.users[0]["id"]
    sequences = []
    for n, (name, status, steps) in enumerate(_SEQUENCE_SPECS):
        created = ORG_CREATED_US + (100 + 90 * n) * US_PER_DAY + ctx.rng.randrange(10**10)
        stamp = ts_naive(created)
        sequences.append(
            {
                "id": ctx.ids.new("seq"),
                "name": name,
                "status": status,
                "organization_id": ctx.org_id,
                "timezone": "America/Los_Angeles",
                "schedule": {
                    "ranges": [{"weekday": d, "start": "09:00", "end": "16:59"} for d in range(1, 6)]
                },
                "schedule_id": None,
                "allow_manual_enrollment": True,
                "trigger_query": None,
                "steps": [
                    {
                        "id": ctx.ids.new("seqstep"),
                        "step_type": kind,
                        "delay": delay,
                        "email_template_id": ctx.ids.new("tmpl") if kind == "email" else None,
                        "sms_template_id": ctx.ids.new("smstmpl") if kind == "sms" else None,
                        "threading": ("new_thread" if k == 0 else "old_thread") if kind == "email" else None,
                        "required": True,
                        "step_allowed_delay": None,
                        "created_by_id": owner,
                        "updated_by_id": owner,
                        "date_created": stamp,
                        "date_updated": stamp,
                    }
                    for k, (kind, delay) in enumerate(steps)
                ],
                "created_by_id": owner,
                "updated_by_id": owner,
                "date_created": stamp,
                "date_updated": ts_naive(created + ctx.rng.randrange(10**10)),
            }
        )
    return sequences


_SUB_STATUS = (
    ("active", "manual"),
    ("paused", "manual"),
    ("finished", "manual"),
    ("goal", "reply-received"),
    ("goal", "meeting-booked"),
    ("error", "email-bounced"),
)


def build_subscriptions(ctx: Ctx, sequences: list[dict], contacts: list[dict]) -> list[dict]:
    rng = ctx.rng
    # Close refuses to enrol an address it cannot send to, so invalid ones never have subscriptions.
    reachable = [c for c in contacts if c["emails"] and is_valid_email(c["emails"][0]["email"])]
    out = []
    for contact in rng.sample(reachable, min(len(reachable), ctx.profile.subscriptions)):
        seq = rng.choice(sequences[:2])  # drafts have no subscribers
        user = rng.choice([u["id"] for u in ctx.users])
        created = max(ORG_CREATED_US, NOW_US - rng.randrange(1, 300) * US_PER_DAY)
        status, reason = rng.choice(_SUB_STATUS)
        out.append(
            {
                "id": ctx.ids.new("sub"),
                "sequence_id": seq["id"],
                "contact_id": contact["id"],
                "contact_email": contact["emails"][0]["email"],
                "lead_id": contact["lead_id"],
                "sender_account_id": ctx.ids.new("emailacct"),
                "sender_email": ctx.user_emails[user],
                "sender_name": ctx.user_names[user],
                "calls_assigned_to": [user],
                "status": status,
                "status_reason": reason,
                "organization_id": ctx.org_id,
                "created_by_id": user,
                "date_created": ts_naive(created),
                "date_updated": ts_naive(created + rng.randrange(10**10)),
            }
        )
    return out


def _s_query(object_type: str, field_name: str, condition: dict) -> dict:
    return {
        "query": {
            "negate": False,
            "type": "and",
            "queries": [
                {"negate": False, "object_type": object_type, "type": "object_type"},
                {
                    "type": "field_condition",
                    "negate": False,
                    "field": {"field_name": field_name, "object_type": object_type, "type": "regular_field"},
                    "condition": condition,
                },
            ],
        },
        "results_limit": None,
        "sort": [],
    }


def build_smart_views(ctx: Ctx) -> list[dict]:
    first = ctx.lead_statuses[0]
    # The legacy text query names a status by label (the third, or the last of a shorter list).
    hot = ctx.lead_statuses[min(2, len(ctx.lead_statuses) - 1)]["label"].replace('"', '\\"')
    specs = (
        (
            "\U0001f4e3 Untouched Leads",
            "lead",
            "times_communicated:0 notes:0 tasks:0 opportunities:0",
            None,
            True,
        ),
        ("Hot leads (legacy)", "lead", f'lead_status:"{hot}" sort:date_updated', None, False),
        (
            f"{first['label']} leads",
            "lead",
            None,
            _s_query(
                "lead",
                "status_id",
                {"type": "reference", "reference_type": "status.lead", "object_ids": [first["id"]]},
            ),
            True,
        ),
        ("Contacts with a title", "contact", None, _s_query("contact", "title", {"type": "exists"}), True),
        (
            "Big deals",
            "opportunity",
            None,
            _s_query("opportunity", "value", {"type": "number_range", "gte": 1_000_000, "lt": None}),
            False,
        ),
        (
            "Created today",
            "lead",
            None,
            _s_query(
                "lead",
                "date_created",
                {
                    "type": "moment_range",
                    "on_or_after": {
                        "range": "today",
                        "type": "start_end_of_predefined_relative_period",
                        "which": "start",
                    },
                    "before": {
                        "range": "today",
                        "type": "start_end_of_predefined_relative_period",
                        "which": "end",
                    },
                },
            ),
            False,
        ),
    )
    out = []
    for n, (name, kind, query, s_query, shared) in enumerate(specs):
        created = ORG_CREATED_US + (20 + 40 * n) * US_PER_DAY
        out.append(
            {
                "id": ctx.ids.new("save"),
                "name": name,
                "type": kind,
                "query": query,
                "s_query": s_query,
                "is_shared": shared,
                "is_user_dependent": False,
                "user_id": ctx.users[n % len(ctx.users)]["id"],
                "organization_id": ctx.org_id,
                "date_created": ts(created),
                "date_updated": ts(created + ctx.rng.randrange(10**9)),
            }
        )
    return out
