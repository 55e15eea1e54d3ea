"""Where the spot check reads its two sides: Close objects (the API, GET <path>/<id>/ per object; or, when
the source is a JSON export file, the raw JSON kept in close.*) and Dataverse records with formatted values
(`Prefer: odata.include-annotations="OData.Community.Display.V1.FormattedValue"`), keyed by field-map
target."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb

from migration_assets.audit import spot_compare as sc
from migration_assets.clients.close.client import CloseClient
from migration_assets.clients.close.http import CloseAPIError
from migration_assets.clients.dataverse.client import FORMATTED_VALUES, DataverseClient
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.resources.warehouse import quote, table_exists

READ_CHUNK = 25  # ids per Dataverse read (a $filter of `pk eq ... or ...` stays well under URL limits)
# Close object endpoints (close_api.md): GET <path>/<id>/ for one object of each extracted table.
CLOSE_PATHS = {
    "leads": "lead",
    "contacts": "contact",
    "opportunities": "opportunity",
    "tasks": "task",
    "calls": "activity/call",
    "emails": "activity/email",
    "sms": "activity/sms",
    "meetings": "activity/meeting",
    "notes": "activity/note",
    "custom_activities": "activity/custom",
    "lead_status_change": "activity/status_change/lead",
    "opportunity_status_change": "activity/status_change/opportunity",
}
LOOKUP_TYPES = ("Lookup", "Customer", "Owner")
LOGICAL_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname"
# Formatted values (labels, names) and, for polymorphic lookups, which table the value points at.
ANNOTATIONS = f"{FORMATTED_VALUES},Microsoft.Dynamics.CRM.lookuplogicalname"


@dataclass
class CloseSource:
    """Where Close objects are read: the API (`client`) or the raw JSON in close.* (export file)."""

    con: duckdb.DuckDBPyConnection
    client: CloseClient | None
    cache: dict[tuple[str, str], dict[str, Any] | None]
    raw_tables: dict[str, bool] = field(default_factory=dict)  # close.* table -> holds raw JSON

    @property
    def name(self) -> str:
        return "Close API" if self.client is not None else "close.* raw JSON (JSON export file)"

    def _has_raw(self, table: str) -> bool:
        """Whether close.<table> exists with its raw JSON: asked once per table (it was asked for every
        object read, and a missing table's lookup lists DuckDB's near names: a second per spot check)."""
        if table not in self.raw_tables:
            self.raw_tables[table] = table_exists(self.con, "close", table) and "raw" in {
                r[0] for r in self.con.execute(f"DESCRIBE close.{quote(table)}").fetchall()
            }
        return self.raw_tables[table]

    def raw(self, table: str, close_id: str) -> dict[str, Any] | None:
        if not self._has_raw(table):
            return None
        row = self.con.execute(
            f"SELECT raw FROM close.{quote(table)} WHERE id = ? LIMIT 1", [close_id]
        ).fetchall()
        if not row:
            return None
        obj = json.loads(row[0][0])
        if table == "leads" and "contacts" not in obj and self._has_raw("contacts"):
            # The extraction keeps a lead's contacts in close.contacts; Close lists them oldest first.
            contacts = self.con.execute(
                "SELECT raw FROM close.contacts WHERE lead_id = ? ORDER BY date_created NULLS LAST, id",
                [close_id],
            ).fetchall()
            obj["contacts"] = [json.loads(c[0]) for c in contacts]
        return obj

    def readable(self, table: str, object_name: str) -> bool:
        """Whether objects of this close.* table exist in Close on their own (not derived rows)."""
        if self.client is not None and (object_name in CLOSE_PATHS or table in CLOSE_PATHS):
            return True
        return self._has_raw(table)

    def get(self, table: str, close_id: str, object_name: str = "") -> dict[str, Any] | None:
        key = (table, close_id)
        if key not in self.cache:
            self.cache[key] = self._fetch(table, close_id, object_name)
        return self.cache[key]

    def _fetch(self, table: str, close_id: str, object_name: str) -> dict[str, Any] | None:
        path = CLOSE_PATHS.get(object_name) or CLOSE_PATHS.get(table)
        if self.client is None or path is None:
            return self.raw(table, close_id)
        try:
            return self.client.get(f"{path}/{close_id}/")
        except CloseAPIError as exc:
            if exc.status == 404:
                return None
            raise


def dv_column(meta: EntityMeta, target: str) -> str | None:
    """The property a field map target reads back as: `_x_value` for lookups (also when the map names
    the navigation property, e.g. customerid_account), the column itself otherwise."""
    if target == "overriddencreatedon" and "createdon" in meta.attributes:
        return "createdon"  # the record's creation date IS the overridden date (the override is write-only)
    attr = meta.attributes.get(target)
    if attr is not None:
        return f"_{target}_value" if attr.attribute_type in LOOKUP_TYPES else target
    for rel in meta.many_to_one:
        if rel.navigation_property == target:
            return f"_{rel.referencing_attribute}_value"
    return None


def view_of(meta: EntityMeta, record: Mapping[str, Any], targets: Iterable[str]) -> dict[str, Any]:
    """The record keyed by field-map target. A polymorphic lookup (objectid, regardingobjectid, customerid)
    reads as one `_x_value` for all its targets: a target sees it only when it points at its own table."""
    view: dict[str, Any] = {}
    for target in targets:
        prop = dv_column(meta, target)
        if prop is None:
            continue
        value, formatted = record.get(prop), record.get(f"{prop}{sc.FORMATTED}")
        rel = next((r for r in meta.many_to_one if r.navigation_property == target), None)
        pointed = record.get(f"{prop}{LOGICAL_NAME}")
        if rel is not None and pointed is not None and pointed != rel.referenced_entity:
            value = formatted = None
        view[target], view[f"{target}{sc.FORMATTED}"] = value, formatted
    return view


def read_dataverse(
    client: DataverseClient, meta: EntityMeta, ids: list[str], columns: set[str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    select = sorted(columns | {meta.primary_id})
    for start in range(0, len(ids), READ_CHUNK):
        flt = " or ".join(f"{meta.primary_id} eq {i}" for i in ids[start : start + READ_CHUNK])
        for rec in client.query(meta.logical_name, select=select, filter=flt, annotations=ANNOTATIONS):
            found[str(rec[meta.primary_id]).lower()] = rec
    return found
