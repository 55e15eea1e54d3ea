"""Where each `close.*` table's objects come from: API list endpoints, or a JSON lead export.

Both paths yield chunks the same writer turns into tables (`writer.py`); `tests/e2e/test_extract.py`
proves both produce identical tables. `ClosePass` reads a step's tables, sharing one export split.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.dataset as pads

from migration_assets.clients.close.client import CloseAPIError, CloseClient
from migration_assets.extract.duplicates import record_quarantine
from migration_assets.extract.export_route import QUARANTINE
from migration_assets.extract.export_split import EXPORT_TABLES, ExportSplit, export_frames
from migration_assets.extract.tables import ACTIVITY_TABLE_TYPES, strip_lead
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource

Page = list[dict[str, Any]]
log = logging.getLogger(__name__)

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
    """Active members (`/user/`) plus deactivated ones (organization `inactive_memberships`), each with the
    `role_id` of its membership (the organization lists both kinds of membership, close_api.md §4.6)."""
    users = [{**u, "__is_active": True} for u in client.list_all("user/")]
    seen = {u["id"] for u in users}
    me = client.get("me/")
    org_ids = [o["id"] if isinstance(o, dict) else o for o in me.get("organizations") or []]
    role_of: dict[str, Any] = {}
    for org_id in org_ids[:1]:
        org = client.get(f"organization/{org_id}/", {"_expand": "inactive_memberships__user"})
        for m in (org.get("memberships") or []) + (org.get("inactive_memberships") or []):
            role_of[str(m.get("user_id"))] = m.get("role_id")
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
    # Every user carries `__is_active`, so canonical_json leaves `__role_id` out of `raw` too.
    return [{**u, "__role_id": role_of.get(u["id"])} for u in users]


def api_roles(client: CloseClient) -> list[dict[str, Any]]:
    """The org's roles (`/role/`: built-in and custom). Close refuses some configuration endpoints to a
    non-admin key (403, close_api.md §1.4): then none, with a warning; the security-role plan reports
    each user's role as unknown."""
    try:
        return client.list_all("role/")
    except CloseAPIError as exc:
        if exc.status != 403:
            raise
        log.warning(
            "close.roles: Close refused GET /role/ (403: the API key's user is not an admin); users' roles "
            "are extracted without their names and permissions. Re-extract with an admin's API key."
        )
        return []


def api_config(client: CloseClient, table: str) -> list[dict[str, Any]]:
    """The small configuration tables (always read through the API)."""
    if table == "users":
        return api_users(client)
    if table == "roles":
        return api_roles(client)
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


class ClosePass:
    """One read of Close for a set of tables (the tables of one step): from the API endpoint by endpoint,
    or from one JSON export split once for all of them.

    Opening the pass (`with ClosePass(...) as p`) starts what its tables need ahead: when one of them
    comes from the export, the export is requested and split in the background (`ExportSplit`), then
    the /task/ read the tasks table needs. Leaving the pass stops that work and removes the split parts
    (they hold personal data). A table read but not announced starts the split when first read.
    """

    def __init__(self, close: CloseResource, tables: Collection[str], name: str) -> None:
        self.close = close
        self.tables = list(tables)
        self.name = name
        self._split: ExportSplit | None = None

    def __enter__(self) -> ClosePass:
        if any(uses_export(self.close, t) for t in self.tables):
            self._start(inbox_tasks="tasks" in self.tables)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._split is not None:
            self._split.cancel()
            shutil.rmtree(self._split.directory, ignore_errors=True)
            self._split = None

    def _start(self, inbox_tasks: bool) -> ExportSplit:
        directory = self.close.scratch_dir(f"export-{self.name}")
        self._split = ExportSplit(self.close, directory, inbox_tasks)
        return self._split

    def _export(self) -> Path:
        """The split export: waited for (started now if not yet); a failed split is started again on
        the next read, from a clean directory."""
        split = self._split or self._start(inbox_tasks=False)
        try:
            return split.wait()
        except BaseException:
            shutil.rmtree(split.directory, ignore_errors=True)
            self._split = None
            raise

    def pages(self, table: str) -> Iterator[Page | pl.DataFrame | pads.Dataset]:
        """Chunks of `table`: object pages (API) or an Arrow dataset of its parts (export)."""
        if not uses_export(self.close, table):
            yield from api_pages(self.close.get_client(), table)
            return
        directory = self._export()
        yield from export_frames(directory, table)
        if table == "tasks":
            # An export embeds only lead tasks (`_type: lead`, like GET /lead/); inbox/system tasks
            # (missed calls, voicemails, ... with noti_ ids) exist only behind /task/: read after the
            # split when the pass announced the tasks table, else now.
            fetched = self._split.inbox_tasks() if self._split is not None else None
            if fetched is not None:
                yield from export_frames(directory, fetched.name)
                return
            for page in self.close.get_client().iter_window_pages("task/", {}):
                yield [t for t in page if t.get("_type") != "lead"]

    def quarantined_lines(self) -> list[dict[str, Any]]:
        """Export lines the split quarantined (not valid text); none when leads come from the API."""
        if not uses_export(self.close, "leads"):
            return []
        rows: list[dict[str, Any]] = []
        for part in sorted((self._export() / QUARANTINE).glob("part-*.arrow")):
            rows += pl.read_ipc(part).to_dicts()
        return rows


def pass_pages(
    close_pass: ClosePass, warehouse: WarehouseResource, table: str
) -> Iterator[Page | pl.DataFrame | pads.Dataset]:
    """A table's pages from the pass; after close.leads, the export's unreadable lines are recorded (for
    the check records_readable of close/leads)."""
    yield from close_pass.pages(table)
    if table == "leads":
        with warehouse.connect() as con:
            record_quarantine(con, close_pass.quarantined_lines())


__all__ = ["ACTIVITY_TABLE_TYPES", "EXPORT_TABLES", "ClosePass", "api_pages", "pass_pages"]
