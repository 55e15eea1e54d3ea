"""Small configuration objects, always read through the API: users, roles, statuses, pipelines, custom
fields, custom activity types, sequences (Workflows) and Smart Views. They are read in the same pass as
the lead tables (`source_tables.py`): while Close builds an export, these API reads hide the wait."""

from __future__ import annotations

DESCRIPTIONS = {
    "users": "Close users: active members (/user/) and deactivated ones (organization "
    "inactive_memberships), which still own records. `is_active` tells them apart.",
    "roles": "Roles (/role/): the built-in ones (admin, superuser, user, restricteduser) and the org's custom "
    "ones with their permissions; each user's `role_id` comes from its membership. Empty, with a warning, "
    "when Close refuses the key (403, not an admin).",
    "lead_statuses": "Lead statuses (/status/lead/) in display order (`position`).",
    "pipelines": "Opportunity pipelines (/pipeline/) with their embedded statuses.",
    "opportunity_statuses": "Opportunity statuses (/status/opportunity/): label, type active|won|lost, "
    "pipeline.",
    "custom_fields": "Custom field definitions of leads, contacts, opportunities and custom activities "
    "(/custom_field/<object>/).",
    "custom_activity_types": "Custom Activity types (/custom_activity/) with their field metadata.",
    "sequences": "Sequences, called Workflows in Close's UI (/sequence/), with steps.",
    "smart_views": "Smart Views (/saved_search/) of every object type.",
}
