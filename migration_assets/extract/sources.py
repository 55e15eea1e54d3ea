"""Where each `close.*` table's objects come from: API list endpoints, or a JSON lead export.

Both paths yield pages (lists) of plain Close objects, so the asset code that turns pages into table
chunks is the same; `tests/e2e/test_extract.py` proves both produce identical tables.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import polars as pl
import pyarrow.dataset as pads

from migration_assets.clients.close.client import CloseClient
from migration_assets.extract.export_route import QUARANTINE
from migration_assets.extract.export_split import (
    EXPORT_TABLES,
    export_directory,
    export_frames,
    inbox_tasks_ready,
    start_export,
)
from migration_assets.extract.tables import ACTIVITY_TABLE_TYPES, strip_lead
from migration_assets.resources.close import CloseResource

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
SAVED_SEARCH_TYPES = (
    "lead",
    "contact",
    "opportunity",
    "call",
    "email",
    "sms",
    "meeting",
    "note",
    "whatsapp_message",
    "custom_activity",
    "form_submission",
)
CUSTOM_FIELD_KINDS = ("lead", "contact", "opportunity", "activity")


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


def prepare_run(close: CloseResource, run_key: str, run_tables: Collection[str]) -> None:
    """Start what the run's later tables need, once: when one of `run_tables` comes from the export,
    the export is requested and split in the background (`export_split.start_export`) while the
    first tables are read through the API."""
    if any(uses_export(close, t) for t in run_tables):
        start_export(close, run_key, inbox_tasks="tasks" in run_tables)


def table_pages(
    close: CloseResource, table: str, run_key: str, run_tables: Collection[str] = ()
) -> Iterator[Page | pl.DataFrame | pads.Dataset]:
    """Chunks of `table` from the configured source: object pages (API) or Arrow datasets (export).

    `run_tables` are the close tables the run extracts: when one of them comes from the export, the
    export is requested and split in the background from the run's first table on (see
    `export_split.start_export`), followed by the /task/ read the tasks table needs.
    """
    prepare_run(close, run_key, run_tables)
    if not uses_export(close, table):
        yield from api_pages(close.get_client(), table)
        return
    directory = export_directory(close, run_key)
    yield from export_frames(directory, table)
    if table == "tasks":
        # An export embeds only lead tasks (`_type: lead`, like GET /lead/); inbox/system tasks
        # (missed calls, voicemails, ... with noti_ ids) exist only behind /task/: read after the
        # split when the run announced its tables, else now.
        fetched = inbox_tasks_ready(close, run_key)
        if fetched is not None:
            yield from export_frames(directory, fetched.name)
            return
        for page in close.get_client().iter_window_pages("task/", {}):
            yield [t for t in page if t.get("_type") != "lead"]


def quarantined_lines(close: CloseResource, run_key: str) -> list[dict[str, Any]]:
    """Export lines this run's split quarantined (not valid text); none when leads come from the API."""
    if not uses_export(close, "leads"):
        return []
    rows: list[dict[str, Any]] = []
    for part in sorted((export_directory(close, run_key) / QUARANTINE).glob("part-*.arrow")):
        rows += pl.read_ipc(part).to_dicts()
    return rows


__all__ = ["ACTIVITY_TABLE_TYPES", "EXPORT_TABLES", "api_pages", "prepare_run", "table_pages"]
