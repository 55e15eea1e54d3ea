"""Activities, one table per type: calls, emails, email threads, SMS, meetings, notes, lead and
opportunity status changes, custom activity instances. API: per-type endpoints sliced by date_created
windows (activities cannot be filtered by date_updated); export: the leads' embedded `activities`."""

from __future__ import annotations

from migration_assets.defs.close._common import close_asset, table_source

calls = close_asset(
    "calls", "Call activities (recording metadata in close/call_recordings).", table_source("calls")
)
emails = close_asset(
    "emails", "Email activities (attachment metadata in close/attachments).", table_source("emails")
)
email_threads = close_asset(
    "email_threads", "EmailThread activities (one per conversation).", table_source("email_threads")
)
sms = close_asset("sms", "SMS activities.", table_source("sms"))
meetings = close_asset("meetings", "Meeting activities.", table_source("meetings"))
notes = close_asset(
    "notes", "Note activities (attachment metadata in close/attachments).", table_source("notes")
)
status_changes = close_asset(
    "status_changes",
    "LeadStatusChange and OpportunityStatusChange activities (`type` tells them apart).",
    table_source("status_changes"),
)
custom_activities = close_asset(
    "custom_activities",
    "Custom Activity instances (values as `custom.cf_*` keys in `raw`).",
    table_source("custom_activities"),
)
