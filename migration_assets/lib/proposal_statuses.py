"""Proposed `lead_status.yaml` and `pipelines.yaml` for a real Close org (pure; the CLI writes the files).

The repository's files are set up for the demo org; an org with other status labels or pipelines needs
its own. These functions derive them from the org's `GET /status/lead/` and `GET /pipeline/` objects,
with the guesses marked in comments so a human reviews them before the first load. The output is
validated by the same parsers that load `mappings/` (tests round-trip it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

# Keyword rules for a lead status label, first match wins: (pattern, statecode, statuscode, why).
LEAD_RULES: tuple[tuple[str, int, int, str], ...] = (
    (r"\b(cancel+ed|cancel)\b", 2, 7, "Disqualified / Canceled"),
    (r"\b(not interested|no longer interested|unqualified|disqualified|churn\w*)\b", 2, 6,
     "Disqualified / No Longer Interested"),
    (r"\b(bad fit|lost|junk|spam|dead)\b", 2, 4, "Disqualified / Lost"),
    (r"\b(unreachable|cannot contact|can't contact|no answer|bounced)\b", 2, 5, "Disqualified / Cannot Contact"),
    (r"\b(qualified|customer|won|client|closed)\b", 1, 3, "Qualified"),
    (r"\b(contacted|interested|engaged|working|nurtur\w*|follow.?up|demo\w*|meeting)\b", 0, 2, "Open / Contacted"),
)  # fmt: skip


def guess_lead_state(label: str) -> tuple[int, int, str]:
    """(statecode, statuscode, explanation) for a Close lead status label; Open/New when nothing matches."""
    text = label.strip().lower()
    for pattern, state, status, why in LEAD_RULES:
        if re.search(pattern, text):
            return state, status, f"guessed from the label: {why}"
    return 0, 1, "no keyword matched: Open / New (review)"


def render_lead_status(lead_statuses: Sequence[dict[str, Any]]) -> str:
    """lead_status.yaml for an org's lead statuses (display order kept)."""
    lines = [
        "# Close lead status label -> Dataverse lead statecode/statuscode, proposed by `close2d365 propose-mapping`.",
        "# Review every guess. Valid pairs: Open 0 -> New 1, Contacted 2; Qualified 1 -> Qualified 3;",
        "# Disqualified 2 -> Lost 4, Cannot Contact 5, No Longer Interested 6, Canceled 7.",
        "",
        'original_label_column: "{prefix}_closeoriginalstatus"',
        "",
        "statuses:",
    ]
    seen: set[str] = set()
    for status in lead_statuses:
        label = str(status["label"])
        if label.strip().lower() in seen:
            continue  # labels differing only by case are one entry (matching ignores case)
        seen.add(label.strip().lower())
        state, code, why = guess_lead_state(label)
        key = yaml.safe_dump(label, default_style=None).strip().removesuffix("...").strip()
        lines.append(f"  {key}: {{statecode: {state}, statuscode: {code}}}  # {why}")
    lines += ["", "unmapped: reject", ""]
    return "\n".join(lines)


def _salesstage(position: int, n_active: int, kind: str) -> int:
    """Active statuses spread over Qualify/Develop/Propose (0-2) by their order; won/lost -> Close (3)."""
    if kind != "active":
        return 3
    return min(2, position * 3 // max(1, n_active))


def render_pipelines(pipelines: Sequence[dict[str, Any]], option_value_prefix: int) -> str:
    """pipelines.yaml for an org's pipelines (GET /pipeline/ objects with embedded statuses, in order).
    Option values: pipelines and statuses each numbered from option_value_prefix * 10000."""
    base = option_value_prefix * 10000
    body: dict[str, Any] = {"pipeline_column": "{prefix}_closepipeline", "status_column": "{prefix}_closestatus",
                            "won": {"statecode": 1, "statuscode": 3}, "lost": {"statecode": 2, "statuscode": 4},
                            "pipelines": []}  # fmt: skip
    status_n = 0
    for n, pipe in enumerate(pipelines):
        statuses = list(pipe.get("statuses") or [])
        n_active = sum(1 for s in statuses if s.get("type") == "active")
        entries, active_pos = [], 0
        for s in statuses:
            kind = str(s.get("type") or "active")
            entries.append({"label": str(s["label"]), "type": kind, "option": base + status_n,
                            "salesstage": _salesstage(active_pos, n_active, kind)})  # fmt: skip
            status_n += 1
            active_pos += kind == "active"
        body["pipelines"].append({"name": str(pipe["name"]), "option": base + n, "statuses": entries})
    header = (
        "# Close pipelines and opportunity statuses -> choice columns on opportunity, proposed by\n"
        "# `close2d365 propose-mapping`. salesstage (0 Qualify, 1 Develop, 2 Propose, 3 Close) is spread over\n"
        "# the active statuses in pipeline order: review it. Won/lost are closed by Win/LoseOpportunity.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110)
