"""Where each `close.*` table's objects come from: API list endpoints, or a JSON lead export.

Both paths yield pages (lists) of plain Close objects, so the asset code that turns pages into table
chunks is the same; `tests/e2e/test_extract.py` proves both produce identical tables.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migration_assets.defs.close.tables import ACTIVITY_TABLE_TYPES, ACTIVITY_TYPE_TABLE, strip_lead
from migration_assets.resources.close import CloseClient, CloseResource

Page = list[dict[str, Any]]

ACTIVITY_PATHS: dict[str, tuple[str, ...]] = {
    "calls": ("activity/call/",),
    "emails": ("activity/email/",),
    "email_threads": ("activity/emailthread/",),
    "sms": ("activity/sms/",),
    "meetings": ("activity/meeting/",),
    "notes": ("activity/note/",),
    "status_changes": ("activity/status_change/lead/", "activity/status_change/opportunity/"),
    "custom_activities": ("activity/custom/",),
}
# Tables a JSON export can provide; everything else (users, statuses, custom fields...) always comes from the API.
EXPORT_TABLES = ("leads", "contacts", "opportunities", "tasks", *ACTIVITY_PATHS)
SAVED_SEARCH_TYPES = (
    "lead", "contact", "opportunity", "call", "email", "sms", "meeting", "note",
    "whatsapp_message", "custom_activity", "form_submission",
)  # fmt: skip
CUSTOM_FIELD_KINDS = ("lead", "contact", "opportunity", "activity")
EXPORT_PAGE = 500


def uses_export(close: CloseResource, table: str) -> bool:
    return close.source in ("export", "file") and table in EXPORT_TABLES


# --- API ------------------------------------------------------------------------------------------------


def _positioned(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**o, "__position": i} for i, o in enumerate(objs)]


def api_users(client: CloseClient) -> list[dict[str, Any]]:
    """Active members (`/user/`) plus deactivated ones (organization `inactive_memberships`)."""
    users = [{**u, "__is_active": True} for u in client.list_all("user/")]
    seen = {u["id"] for u in users}
    me = client.get("me/")
    org_ids = [o["id"] if isinstance(o, dict) else o for o in me.get("organizations") or []]
    for org_id in org_ids[:1]:
        org = client.get(f"organization/{org_id}/", {"_expand": "inactive_memberships__user"})
        for m in org.get("inactive_memberships") or []:
            user = m.get("user") or {
                "id": m.get("user_id"),
                "email": m.get("user_email"),
                "first_name": m.get("user_first_name"),
                "last_name": m.get("user_last_name"),
            }
            if user.get("id") and user["id"] not in seen:
                seen.add(user["id"])
                users.append({**user, "__is_active": False})
    return users


def api_config(client: CloseClient, table: str) -> list[dict[str, Any]]:
    """The small configuration tables (always read through the API)."""
    if table == "users":
        return api_users(client)
    if table == "lead_statuses":
        return _positioned(client.list_all("status/lead/"))
    if table == "opportunity_statuses":
        return _positioned(client.list_all("status/opportunity/"))
    if table == "pipelines":
        return _positioned(client.list_all("pipeline/"))
    if table == "custom_fields":
        return [
            {**f, "__object_type": kind}
            for kind in CUSTOM_FIELD_KINDS
            for f in client.list_all(f"custom_field/{kind}/")
        ]
    if table == "custom_activity_types":
        return client.list_all("custom_activity/")
    if table == "sequences":
        return client.list_all("sequence/")
    if table == "smart_views":
        return client.list_all("saved_search/", {"type__in": ",".join(SAVED_SEARCH_TYPES)})
    raise KeyError(f"no API config source for close.{table}")


def api_pages(client: CloseClient, table: str) -> Iterator[Page]:
    """Pages of the big tables from the list endpoints, windowed so `_skip` never exceeds its cap."""
    if table == "leads":
        for page in client.iter_leads():
            yield [strip_lead(lead) for lead in page]
    elif table == "contacts":
        # Contacts come embedded in lead pages: free, and windowed like leads (a /contact/ scan is
        # capped at max_skip and has no date filter to window on).
        for page in client.iter_leads(fields="id,contacts"):
            yield [c for lead in page for c in lead.get("contacts") or []]
    elif table in ("opportunities", "tasks"):
        yield from client.iter_window_pages("opportunity/" if table == "opportunities" else "task/", {})
    elif table in ACTIVITY_PATHS:
        for path in ACTIVITY_PATHS[table]:
            yield from client.iter_window_pages(path, {}, field="date_created")
    else:
        yield api_config(client, table)


# --- JSON export ----------------------------------------------------------------------------------------

_split_lock = threading.Lock()
DONE_MARKER = "_complete.json"


def split_export(leads: Iterator[dict[str, Any]], directory: Path) -> dict[str, int]:
    """One streaming pass over the export: write each table's objects to `<table>.jsonl`.

    Later assets then read only their own file instead of re-parsing the whole export. Activity types
    with no table (Created, TaskCompleted, ...) are counted under `skipped:<type>`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = dict.fromkeys(EXPORT_TABLES, 0)
    files = {t: (directory / f"{t}.jsonl").open("w", encoding="utf-8") for t in EXPORT_TABLES}
    try:

        def put(table: str, obj: dict[str, Any]) -> None:
            files[table].write(json.dumps(obj, ensure_ascii=False))
            files[table].write("\n")
            counts[table] += 1

        for lead in leads:
            put("leads", strip_lead(lead))
            for contact in lead.get("contacts") or []:
                put("contacts", contact)
            for opp in lead.get("opportunities") or []:
                put("opportunities", opp)
            for task in lead.get("tasks") or []:
                put("tasks", task)
            for act in lead.get("activities") or []:
                table = ACTIVITY_TYPE_TABLE.get(act.get("_type", ""))
                if table is None:
                    key = f"skipped:{act.get('_type')}"
                    counts[key] = counts.get(key, 0) + 1
                else:
                    put(table, act)
    finally:
        for fh in files.values():
            fh.close()
    (directory / DONE_MARKER).write_text(json.dumps(counts))
    return counts


def export_directory(close: CloseResource, run_key: str) -> Path:
    """The split export for this run, built on first use and shared by the run's assets."""
    directory = close.scratch_dir(f"export-{run_key}")
    with _split_lock:
        if not (directory / DONE_MARKER).exists():
            shutil.rmtree(directory, ignore_errors=True)
            split_export(close.export_leads(include_activities=True), directory)
    return directory


def export_pages(directory: Path, table: str, page_size: int = EXPORT_PAGE) -> Iterator[Page]:
    page: Page = []
    with (directory / f"{table}.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            page.append(json.loads(line))
            if len(page) >= page_size:
                yield page
                page = []
    if page:
        yield page


def table_pages(close: CloseResource, table: str, run_key: str) -> Iterator[Page]:
    """Pages of `table` from the configured source."""
    if not uses_export(close, table):
        yield from api_pages(close.get_client(), table)
        return
    yield from export_pages(export_directory(close, run_key), table)
    if table == "tasks":
        # An export embeds only lead tasks (`_type: lead`, like GET /lead/); inbox/system tasks
        # (missed calls, voicemails, ... with noti_ ids) exist only behind /task/.
        for page in close.get_client().iter_window_pages("task/", {}):
            yield [t for t in page if t.get("_type") != "lead"]


__all__ = [
    "ACTIVITY_TABLE_TYPES",
    "EXPORT_TABLES",
    "api_pages",
    "export_pages",
    "split_export",
    "table_pages",
]
