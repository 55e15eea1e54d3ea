"""File metadata derived from extracted activities: email/note attachments and call recordings.

No file bytes are read here (the loader downloads them with `CloseResource.download` when it writes
annotations); these tables list every file with its size so oversize ones can be reported up front.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg

from migration_assets.defs.close._common import GROUP, Pages, close_asset
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource

BATCH = 5_000


def _rows(warehouse: WarehouseResource, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    """Stream a query's rows in batches (the result never sits in memory as a whole)."""
    with warehouse.connect() as con:
        result = con.execute(sql)
        while batch := result.fetchmany(BATCH):
            yield batch


def _attachments(
    context: dg.AssetExecutionContext, close: CloseResource, warehouse: WarehouseResource
) -> Pages:
    for table, source_type in (("emails", "Email"), ("notes", "Note")):
        sql = (
            f"SELECT id, lead_id, date_created, raw->'attachments' FROM close.{table} "
            "WHERE json_array_length(raw->'attachments') > 0 ORDER BY id"
        )
        # Materialise each batch before writing: the writer uses its own connection to the same file.
        for batch in list(_rows(warehouse, sql)):
            page = []
            for activity_id, lead_id, created, attachments in batch:
                for att in json.loads(attachments):
                    page.append(
                        {
                            "activity_id": activity_id,
                            "lead_id": lead_id,
                            "source_type": source_type,
                            "url": att.get("url"),
                            "filename": att.get("filename"),
                            "size": att.get("size"),
                            "content_type": att.get("content_type"),
                            "activity_date_created": created,
                        }
                    )
            yield page


def _call_recordings(
    context: dg.AssetExecutionContext, close: CloseResource, warehouse: WarehouseResource
) -> Pages:
    sql = (
        "SELECT id, lead_id, raw->>'recording_url', raw->>'recording_duration', date_created FROM close.calls "
        "WHERE coalesce(raw->>'recording_url', '') <> '' ORDER BY id"
    )
    for batch in list(_rows(warehouse, sql)):
        yield [
            {
                "activity_id": a,
                "lead_id": lead,
                "url": url,
                "duration": duration,
                "activity_date_created": created,
            }
            for a, lead, url, duration, created in batch
        ]


attachments = close_asset(
    "attachments",
    "Email and note attachments (metadata): activity, lead, url, filename, size, content type.",
    _attachments,
    deps=[dg.AssetKey([GROUP, "emails"]), dg.AssetKey([GROUP, "notes"])],
)
call_recordings = close_asset(
    "call_recordings",
    "Call recordings (metadata): call activity, lead, recording URL, duration.",
    _call_recordings,
    deps=[dg.AssetKey([GROUP, "calls"])],
)
