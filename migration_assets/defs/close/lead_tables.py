"""The tables of a lead export: leads and what they embed (contacts, opportunities, tasks, activities).

They come from a JSON export requested once and split once for every selected table, or, when the
source is the API, endpoint by endpoint (leads and contacts by lead query windows, opportunities and
tasks by date windows, activities per type by date_created windows, since activities cannot be filtered
by date_updated). Declared, with the configuration objects, by the one pass in `source_tables.py`.
"""

from __future__ import annotations

DESCRIPTIONS = {
    "leads": "Close leads (the organisations). `raw` is the full lead without its embedded contacts, "
    "opportunities and tasks, which are extracted into their own tables.",
    "contacts": "Close contacts, read from the leads that embed them (never capped by max_skip).",
    "opportunities": "Close opportunities (money in integer cents).",
    "calls": "Call activities (recording metadata in close/call_recordings).",
    "emails": "Email activities (attachment metadata in close/attachments).",
    "email_threads": "EmailThread activities (one per conversation).",
    "sms": "SMS activities.",
    "meetings": "Meeting activities.",
    "notes": "Note activities (attachment metadata in close/attachments).",
    "status_changes": "LeadStatusChange and OpportunityStatusChange activities (`type` tells them apart).",
    "custom_activities": "Custom Activity instances (values as `custom.cf_*` keys in `raw`).",
    "tasks": "Close tasks, open and completed, of every type.",
}
