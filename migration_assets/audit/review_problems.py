"""The dry run's problem list (pure): each problem in words, how many rows, and the file and setting that fixes
it; and the rejected rows in the shape of the review's CSV files.

Input is what a dry run leaves: the evaluations of its checks (name, passed, blocking, description,
metadata) and each staged table's `staged.<table>_rejected` rows (_close_id, column, value, reason,
check_name, and `cascade` when staging named the rejected parent). Rejection reasons are grouped by class,
not by text, so that one line covers e.g. every lead of one unmapped status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

REJECTED_COLUMNS = ("table", "close_id", "column", "value", "reason", "cascade")
PROBLEM_COLUMNS = ("source", "rows", "problem", "fix", "blocking")
THRESHOLDS = "mappings/settings.yaml rejection_thresholds"
FIX_IN_CLOSE = f"fix the value in Close, or let such rows be rejected ({THRESHOLDS})"
OWNER_FIX = "mappings/owners.yaml overrides or fallback_owner (for disabled users: disabled_users: fallback)"
TARGET_CHECK_SUFFIX = "_target_valid"
CUSTOM_ACTIVITY = "custom_activity_"  # staged tables of custom activity types
# A mapping problem that carries its own fix ("<file> line N: ... -> <fix>", mapping/targets.py).
FIX_SEPARATOR = " -> "
OPEN_DECISION = "open decision:"  # a review question (its text is free)
LEAD_STATUS_COLUMNS = {"statecode", "statuscode", "_statecode", "_statuscode"}
ENTITY_SET = re.compile(r"^/([A-Za-z0-9_]+)\(")
# Problems of these kinds are one line each in the terminal summary, whatever the number of tables they
# touch (review.md keeps one line per table and column): kind -> (what, fix).
SUMMED = {
    "owner_rows": ("rows whose owner is a Close user without an enabled Dataverse user", OWNER_FIX),
    "max_length": (
        "values longer than their column's MaxLength",
        "mappings/settings.yaml truncation.columns (<table>.<column>: truncate; columns in the review), "
        "or shorten them in Close",
    ),
    "required": (
        "required values missing",
        "fill them in Close, or map a source in mappings/fields/<table>.yaml",
    ),
    "value": ("values the target does not accept (format, range)", FIX_IN_CLOSE),
    "cascade": (
        "rows rejected only because a record they belong to was rejected",
        "fixed with the problems above",
    ),
    "threshold": ("rejection threshold exceeded", f"fix the rows above, or raise {THRESHOLDS}"),
}
# Order of the summary: what to fix first (a fix early in the list often clears lines after it).
KIND_ORDER = (
    "step",
    "mapping",
    "owner",
    "preflight",
    "lead_status",
    "pipeline",
    "choice",
    "orphaned",
    "owner_rows",
    "required",
    "max_length",
    "value",
    "check",
    "cascade",
    "threshold",
    "excluded",
)


@dataclass(frozen=True)
class Problem:
    source: str  # the table, check or step that found it
    problem: str  # what is wrong, in words
    fix: str  # the file and setting that fixes it
    rows: int | None = None  # rows (or users, items) concerned, when countable
    blocking: bool = True  # False: listed for review (rows within the threshold), not a failure
    kind: str = "check"  # class of problem (KIND_ORDER); the summary sums the SUMMED kinds
    detail: str = ""  # the check's full words, for review.md

    def line(self) -> str:
        return f"{self.source}: {_count(self.rows)}{self.problem} -> {self.fix}"

    def row(self) -> dict[str, Any]:
        what = f"{self.problem} ({self.detail})" if self.detail else self.problem
        return {
            "source": self.source,
            "rows": self.rows,
            "problem": what,
            "fix": self.fix,
            "blocking": "yes" if self.blocking else "no (within the threshold)",
        }


def _count(rows: int | None) -> str:
    return "" if rows is None else f"{rows} row{'' if rows == 1 else 's'}: "


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def classify(
    table: str, column: str, value: Any, reason: str, check_name: str, cascade: Any = None
) -> tuple[str, str, str]:
    """(kind, problem, fix) of one rejection row, by what is wrong rather than by its exact text."""
    column, reason, check_name, shown = _text(column), _text(reason), _text(check_name), _text(value)
    if cascade or check_name == "lookup_resolves":
        parent = _text(cascade).split()[1:2] if cascade else cascade_parent(shown)
        what = parent[0] if parent else "record"
        return (
            "cascade",
            f"rejected because the {what} it belongs to was rejected",
            f"fix the {what} problems listed here; these rows follow",
        )
    if check_name == "column_exists" and table.startswith(CUSTOM_ACTIVITY):
        return (
            "orphaned",
            f"values of a custom field the type no longer defines ({column})",
            "mappings/custom_activities.yaml orphaned_values: drop|column (for this type)",
        )
    # Any other table: a mapped target the target does not have. A field map's is left out at staging and
    # named by the mapping gate; a custom field's (custom_fields.yaml, action: existing) rejects its rows.
    if check_name == "column_exists":
        return (
            "mapping",
            f"not staged: {column.removesuffix('@odata.bind')} is neither a column of {table} nor planned",
            f"correct that target in mappings/custom_fields.yaml (or mappings/fields/{table}.yaml), "
            "or map it to a new column (action: new)",
        )
    if column.startswith("ownerid") or "no enabled dataverse user" in reason.lower():
        return "owner_rows", "owner is a Close user without an enabled Dataverse user", OWNER_FIX
    unknown_choice = "unknown choice" in reason or check_name in ("choice_value", "choice_values")
    if unknown_choice and table == "lead" and column in LEAD_STATUS_COLUMNS:
        return (
            "lead_status",
            f"Close lead status '{shown}' is not in mappings/lead_status.yaml",
            "add it there (or set unmapped:)",
        )
    if unknown_choice and table == "opportunity":
        return (
            "pipeline",
            f"Close pipeline/status '{shown}' is not in mappings/pipelines.yaml",
            "re-run close2d365 propose-mapping, or add it to mappings/pipelines.yaml",
        )
    if unknown_choice:
        where = "custom_activities.yaml" if table.startswith("custom_activity_") else "custom_fields.yaml"
        return (
            "choice",
            f"{column}: value '{shown}' is not an option of the column",
            f"re-run close2d365 propose-mapping (the field's choices in mappings/{where})",
        )
    if check_name == "max_length" or "longer than MaxLength" in reason:
        return (
            "max_length",
            f"{column} longer than the column's MaxLength",
            f"mappings/settings.yaml truncation.columns: {{{table}.{column}: truncate}}, or shorten it in Close",
        )
    if check_name == "required" or "required value is missing" in reason:
        return (
            "required",
            f"{column} is required but empty",
            f"fill it in Close, or map a source to it in mappings/fields/{table}.yaml",
        )
    if check_name == "max_upload_size":
        return (
            "excluded",
            "attachment above the upload size (not loaded, listed for the admin)",
            "mappings/settings.yaml attachments.max_size_bytes, or the environment's maxuploadfilesize",
        )
    return "value", f"{column}: {reason.split(' (')[0] or check_name}", FIX_IN_CLOSE


def cascade_parent(bind_value: str) -> list[str]:
    """["<entity set>"] of a lookup bind value (/leads(<id>) -> ["leads"]), or []."""
    found = ENTITY_SET.match(bind_value or "")
    return [found.group(1).removesuffix("s")] if found else []


def cascade_text(check_name: Any, value: Any, cascade: Any = None) -> str:
    """The "because ..." of a row rejected only because a record it refers to was rejected ("" otherwise).
    Staging's own `cascade` text (naming the rejected record) wins; else the referenced table is named."""
    if cascade:
        return _text(cascade)
    if _text(check_name) != "lookup_resolves":
        return ""
    parent = cascade_parent(_text(value))
    return f"because the {parent[0] if parent else 'record'} it refers to was rejected (or is not staged)"


def rejected_rows(table: str, rejected: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows of `rejected_<table>.csv`: table, close_id, column, value, reason, cascade."""
    has_cascade = "cascade" in rejected.columns
    out = []
    for r in rejected.iter_rows(named=True):
        out.append(
            {
                "table": table,
                "close_id": r.get("_close_id"),
                "column": r.get("column"),
                "value": r.get("value"),
                "reason": r.get("reason"),
                "cascade": cascade_text(
                    r.get("check_name"), r.get("value"), r.get("cascade") if has_cascade else None
                ),
            }
        )
    return out


def row_problems(table: str, rejected: pl.DataFrame, blocking: bool) -> list[Problem]:
    """One problem per class of rejection, with the number of distinct rows it concerns (most first)."""
    if not rejected.height:
        return []
    has_cascade = "cascade" in rejected.columns
    rows: dict[tuple[str, str, str], set[str]] = {}
    for r in rejected.iter_rows(named=True):
        key = classify(
            table,
            r.get("column") or "",
            r.get("value"),
            r.get("reason") or "",
            r.get("check_name") or "",
            r.get("cascade") if has_cascade else None,
        )
        rows.setdefault(key, set()).add(_text(r.get("_close_id")))
    found = [Problem(table, what, fix, len(ids), blocking, kind) for (kind, what, fix), ids in rows.items()]
    return sorted(found, key=lambda p: (-(p.rows or 0), p.problem))


def _meta(metadata: Mapping[str, Any], key: str) -> Any:
    value = metadata.get(key)
    return getattr(value, "value", value)


def check_problems(
    check_name: str, asset: str, description: str, metadata: Mapping[str, Any]
) -> list[Problem]:
    """The problem a failed gate stands for, beyond its rows: a threshold, the owner map, the mapping review."""
    description = description or "failed (see the check in the UI)"
    if check_name.endswith(TARGET_CHECK_SUFFIX):
        table = check_name.removesuffix(TARGET_CHECK_SUFFIX)
        rejected, staged = _meta(metadata, "rejected_rows"), _meta(metadata, "staged_rows")
        found = []
        if "above the threshold" in description:
            total = (rejected or 0) + (staged or 0)
            found.append(
                Problem(
                    table,
                    f"rejection threshold: {rejected} of {total} rows rejected",
                    f"fix the rows above, or raise {THRESHOLDS}",
                    rejected,
                    kind="threshold",
                )
            )
        if "a bug" in description:
            found.append(Problem(table, description, "please report it (with the check's rows from the UI)"))
        # A halted table (columns the target does not have) is explained by its rows (kind "orphaned").
        return (
            found
            if found or "halted" in description
            else [Problem(table, description, "see the check in the UI")]
        )
    if check_name == "owners_resolved":
        users = _meta(metadata, "unresolved_users")
        # The check names the setting that fixes each case it found: that is the fix to print.
        fix = f"mappings/{description}" if description.startswith("owners.yaml") else OWNER_FIX
        return [
            Problem(
                "owner",
                f"{users} Close users owning records have no enabled Dataverse user",
                fix,
                kind="owner",
            )
        ]
    if check_name == "mapping_confirmed":
        items = [i.strip() for i in description.split("; ") if i.strip()]
        # An item that names its own fix (a field map's unknown target column) is a problem of its own.
        own = [i for i in items if FIX_SEPARATOR in i and not i.startswith(OPEN_DECISION)]
        fixed = [Problem("mapping", *i.split(FIX_SEPARATOR, 1), kind="mapping") for i in own]
        items = [i for i in items if i not in own]
        if not items:
            return fixed
        what = items[0] if len(items) == 1 else f"{len(items)} open decisions, e.g. {items[0]}"
        return [
            *fixed,
            Problem(
                "mapping",
                what,
                "decide each `review:` item (and `confirmed: false`) in the file named, then remove it",
                kind="mapping",
                detail="; ".join(items) if len(items) > 1 else "",
            ),
        ]
    if check_name == "target_ready":
        # One problem per preflight blocker, each with the fix the preflight names (schema/preflight).
        rows = _meta(metadata, "blockers")
        blockers = [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []
        if blockers:
            return [
                Problem(
                    f"preflight: {r.get('topic')}", str(r.get("finding")), str(r.get("fix")), kind="preflight"
                )
                for r in blockers
            ]
        return [
            Problem(
                "preflight",
                description,
                "see schema/preflight (preflight.md in this folder)",
                kind="preflight",
            )
        ]
    return [Problem(f"{asset}: {check_name}", description, "see the check in the UI")]


def summary_lines(problems: list[Problem]) -> list[str]:
    """The terminal summary: one line per blocking problem, the SUMMED kinds one line each over every table,
    in KIND_ORDER; then the rows rejected within the thresholds, in one line."""
    blocking = [p for p in problems if p.blocking]
    lines = []
    for kind in sorted(
        {p.kind for p in blocking}, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 99
    ):
        found = [p for p in blocking if p.kind == kind]
        if kind in SUMMED and len(found) > 1:
            what, fix = SUMMED[kind]
            rows = sum(p.rows or 0 for p in found)
            tables = ", ".join(dict.fromkeys(p.source for p in found))
            lines.append(f"{what}: {_count(rows).removesuffix(': ')} in {tables} -> {fix}")
        else:
            lines += [p.line() for p in found]
    accepted = [p for p in problems if not p.blocking]
    if accepted:
        rows = sum(p.rows or 0 for p in accepted)
        tables = ", ".join(sorted({p.source for p in accepted}))
        lines.append(
            f"within the thresholds: {rows} rejected rows in {tables} (not loaded; listed in the review)"
        )
    return lines
