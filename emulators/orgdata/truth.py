"""The expected results a migration must reproduce, computed from the generated data (never hard-coded)."""

from __future__ import annotations

import re

from .model import CloseOrg
from .util import normalise_name

OVERSIZE_LIMIT = 5 * 1024 * 1024  # Dataverse's default maxuploadfilesize

# Close values that do not fit the Dataverse column they map to (dataverse_api.md §7): (object, field) -> limit.
COLUMN_LIMITS: dict[tuple[str, str], int] = {
    ("lead", "name"): 160,  # account.name
    ("lead", "description"): 2000,  # account/lead description Memo 2000
    ("contact", "title"): 100,  # contact.jobtitle
    ("contact", "name"): 50,  # firstname / lastname are 50 each; a longer full name may not split to fit
    ("opportunity", "note"): 2000,  # opportunity.description
    ("call", "note"): 2000,  # phonecall.description
}

_EMAIL_OK = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ACTIVITY_COUNT_KEYS = {
    "Call": "calls",
    "Email": "emails",
    "EmailThread": "email_threads",
    "SMS": "sms",
    "Meeting": "meetings",
    "Note": "notes",
    "LeadStatusChange": "status_changes",
    "OpportunityStatusChange": "status_changes",
    "CustomActivity": "custom_activities",
}


def is_valid_email(address: str) -> bool:
    return bool(_EMAIL_OK.match(address))


def is_non_latin(name: str | None) -> bool:
    return any(ch.isalpha() and not ch.isascii() for ch in name or "")


def _overlong(org: CloseOrg) -> list[dict]:
    found = []
    sources = (
        ("lead", org.leads),
        ("contact", org.contacts),
        ("opportunity", org.opportunities),
        ("call", [a for a in org.activities if a["_type"] == "Call"]),
    )
    for obj_name, rows in sources:
        fields = [(f, limit) for (o, f), limit in COLUMN_LIMITS.items() if o == obj_name]
        for row in rows:
            for f, limit in fields:
                value = row.get(f)
                if isinstance(value, str) and len(value) > limit:
                    found.append({"object": obj_name, "id": row["id"], "field": f, "length": len(value)})
    return found


def compute_truth(org: CloseOrg, edge: dict) -> dict:
    counts = {k: 0 for k in sorted(set(_ACTIVITY_COUNT_KEYS.values()))}
    attachments, recordings, oversize = 0, 0, []
    for a in org.activities:
        counts[_ACTIVITY_COUNT_KEYS[a["_type"]]] += 1
        if a["_type"] in ("Email", "Note"):
            attachments += len(a["attachments"])
            oversize += [(a["id"], x) for x in a["attachments"] if x["size"] > OVERSIZE_LIMIT]
        elif a["_type"] == "Call" and a["has_recording"]:
            recordings += 1
    counts.update(
        {
            "users": len(org.users) + len(org.inactive_users),
            "roles": len(org.roles),
            "lead_statuses": len(org.lead_statuses),
            "pipelines": len(org.pipelines),
            "opportunity_statuses": len(org.opportunity_statuses),
            "custom_fields": sum(len(v) for v in org.custom_fields.values()),
            "custom_activity_types": len(org.custom_activity_types),
            "leads": len(org.leads),
            "contacts": len(org.contacts),
            "opportunities": len(org.opportunities),
            "tasks": len(org.tasks),
            "attachments": attachments,
            "call_recordings": recordings,
            "sequences": len(org.sequences),
            "smart_views": len(org.smart_views),
        }
    )
    groups: dict[str, list[str]] = {}
    for lead in org.leads:
        key = normalise_name(lead["name"])
        if key:
            groups.setdefault(key, []).append(lead["id"])
    if len(oversize) != 1:
        raise RuntimeError(
            f"generator invariant broken: expected one oversize attachment, found {len(oversize)}"
        )
    ((oversize_id, oversize_att),) = oversize
    return {
        "counts": dict(sorted(counts.items())),
        "edge_cases": {
            "unmatched_user_id": edge["unmatched_user_id"],
            "disabled_user_id": edge["disabled_user_id"],
            "inactive_close_user_id": edge["inactive_close_user_id"],
            "unmatched_user_ids": edge["unmatched_user_ids"],
            "disabled_user_ids": edge["disabled_user_ids"],
            "inactive_close_user_ids": edge["inactive_close_user_ids"],
            "unnamed_lead_ids": [x["id"] for x in org.leads if not normalise_name(x["name"])],
            "duplicate_name_groups": [ids for ids in groups.values() if len(ids) > 1],
            "non_latin_lead_ids": [x["id"] for x in org.leads if is_non_latin(x["name"])],
            "overlong_values": _overlong(org),
            "invalid_email_contact_ids": [
                c["id"] for c in org.contacts if any(not is_valid_email(e["email"]) for e in c["emails"])
            ],
            "multi_email_phone_contact_ids": [
                c["id"] for c in org.contacts if len(c["emails"]) > 1 and len(c["phones"]) > 1
            ],
            "oversize_attachment": {
                "activity_id": oversize_id,
                "url": oversize_att["url"],
                "size": oversize_att["size"],
            },
            "broken_custom_activity_type_id": edge["broken_custom_activity_type_id"],
            "undefined_field_id": edge["undefined_field_id"],
            "orphaned_value_activity_ids": [
                a["id"] for a in org.activities if "custom." + edge["undefined_field_id"] in a
            ],
            "archived_custom_activity_type_ids": edge["archived_custom_activity_type_ids"],
            "won_opportunity_ids": [o["id"] for o in org.opportunities if o["status_type"] == "won"],
            "lost_opportunity_ids": [o["id"] for o in org.opportunities if o["status_type"] == "lost"],
            "recurring_value_opportunity_ids": [
                o["id"] for o in org.opportunities if o["value_period"] in ("monthly", "annual")
            ],
            "non_usd_opportunity_ids": [o["id"] for o in org.opportunities if o["value_currency"] != "USD"],
            "open_task_ids": [t["id"] for t in org.tasks if not t["is_complete"]],
            "done_task_ids": [t["id"] for t in org.tasks if t["is_complete"]],
        },
        "distinct_normalised_lead_names": len(groups),
    }


def org_summary(org: CloseOrg) -> str:
    """Plain-text table of the truth counts and edge-case tallies."""
    truth = org.truth
    rows = [("org shape", org.shape), ("size / seed", f"{org.size} / {org.seed}")]
    rows += [(k, f"{v:,}") for k, v in truth["counts"].items()]
    rows.append(("files (blobs)", f"{len(org.files):,}"))
    rows.append(("distinct normalised lead names", f"{truth['distinct_normalised_lead_names']:,}"))
    for k, v in truth["edge_cases"].items():
        if isinstance(v, list):
            rows.append((f"edge: {k}", f"{len(v):,}"))
    rows.append(
        ("edge: oversize attachment bytes", f"{truth['edge_cases']['oversize_attachment']['size']:,}")
    )
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * (vwidth + 2) + "+"
    out = [line, f"| {'item'.ljust(width)} | {'value'.rjust(vwidth)} |", line]
    out += [f"| {k.ljust(width)} | {v.rjust(vwidth)} |" for k, v in rows]
    out.append(line)
    return "\n".join(out)
