"""File metadata derived from extracted activities: email/note attachments and call recordings.

No file bytes are read here (the loader downloads them with `CloseResource.download` when it writes
annotations); these tables list every file with its size so oversize ones can be reported up front.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from migration_assets.extract.writer import Pages
from migration_assets.resources.warehouse import WarehouseResource

BATCH = 5_000


def _rows(warehouse: WarehouseResource, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    """Stream a query's rows in batches (the result never sits in memory as a whole)."""
    with warehouse.connect() as con:
        result = con.execute(sql)
        while batch := result.fetchmany(BATCH):
            yield batch


def attachment_pages(warehouse: WarehouseResource) -> Pages:
    """One page per batch of emails and notes with attachments: one row per attachment."""
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


def call_recording_pages(warehouse: WarehouseResource) -> Pages:
    """One page per batch of calls with a recording: one row per recording."""
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
