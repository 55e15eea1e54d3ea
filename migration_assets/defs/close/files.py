"""close/attachments and close/call_recordings: file metadata derived from extracted activities
(extract/file_metadata.py), read on their own after the activity tables."""

import dagster as dg

from migration_assets.defs.close._common import GROUP, close_asset
from migration_assets.extract.file_metadata import attachment_pages, call_recording_pages

attachments = close_asset(
    "attachments",
    "Email and note attachments (metadata): activity, lead, url, filename, size, content type.",
    lambda context, close, warehouse: attachment_pages(warehouse),
    deps=[dg.AssetKey([GROUP, "emails"]), dg.AssetKey([GROUP, "notes"])],
)
call_recordings = close_asset(
    "call_recordings",
    "Call recordings (metadata): call activity, lead, recording URL, duration.",
    lambda context, close, warehouse: call_recording_pages(warehouse),
    deps=[dg.AssetKey([GROUP, "calls"])],
)
