"""Load plan arithmetic (reference §5.1, §5.2, §11): custom tables against the edition's limit, and the
Power Platform requests a planned load costs against the daily entitlement. Pure: counts in, figures out.

Entitlement counts every CRUD operation, *including each item inside a bulk message*; service protection
(6,000 requests / 5 min / user / server) counts HTTP requests, where a bulk message or a $batch is one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# Sales Professional: "up to 15 custom tables (per application)"; Enterprise/Premium: no such limit (§11).
EDITION_TABLE_LIMITS: dict[str, int | None] = {
    "sales_professional": 15,
    "sales_enterprise": None,
    "sales_premium": None,
}
TENANT_POOL_BASE, TENANT_POOL_PER_LICENCE, TENANT_POOL_MAX = 500_000, 5_000, 10_000_000
SERVICE_PROTECTION_REQUESTS = 6_000  # per 5 minutes, per user, per web server
UPLOAD_BLOCK = 4 * 1024 * 1024  # chunked upload block size (base64 bytes)


@dataclass(frozen=True)
class TableLoad:
    table: str
    rows: int
    state_changes: int = 0  # PATCH statecode/statuscode after create
    close_actions: int = 0  # WinOpportunity / LoseOpportunity
    upload_blocks: int = 0  # extra chunked-upload calls for large files


@dataclass(frozen=True)
class LoadEstimate:
    entitlement_requests: int  # what counts against the daily Power Platform entitlement
    http_requests: int  # what counts against service protection limits
    daily_pool: int
    days: int
    min_minutes_per_user: float  # lower bound from the 6,000 / 5 min service-protection window


def daily_pool(licences: int) -> int:
    """Tenant-level pool for non-licensed (application) users with Dynamics 365 Enterprise/Professional."""
    return min(TENANT_POOL_MAX, TENANT_POOL_BASE + TENANT_POOL_PER_LICENCE * max(0, licences))


def estimate(
    loads: list[TableLoad],
    licences: int,
    batch_size: int = 250,
    batch_request_size: int = 100,
    app_users: int = 1,
) -> LoadEstimate:
    ent = http = 0
    for t in loads:
        ent += t.rows + t.state_changes + t.close_actions + t.upload_blocks
        http += math.ceil(t.rows / batch_size) if t.rows else 0
        extra = t.state_changes + t.close_actions
        http += math.ceil(extra / batch_request_size) if extra else 0
        http += t.upload_blocks
    pool = daily_pool(licences)
    minutes = http / SERVICE_PROTECTION_REQUESTS * 5 / max(1, app_users)
    return LoadEstimate(ent, http, pool, max(1, math.ceil(ent / pool)) if ent else 0, round(minutes, 1))


def upload_blocks(file_sizes: list[int], simple_limit: int = UPLOAD_BLOCK) -> int:
    """Extra calls for files sent by chunked upload (Initialize + blocks + Commit instead of one create)."""
    extra = 0
    for size in file_sizes:
        b64 = 4 * math.ceil(size / 3)
        if b64 > simple_limit:
            extra += 1 + math.ceil(b64 / UPLOAD_BLOCK)
    return extra


def table_limit(edition: str) -> int | None:
    if edition not in EDITION_TABLE_LIMITS:
        raise ValueError(
            f"unknown Dynamics 365 edition {edition!r} (known: {', '.join(EDITION_TABLE_LIMITS)})"
        )
    return EDITION_TABLE_LIMITS[edition]


def custom_tables_used(planned: int, existing: int, edition: str) -> Mapping[str, object]:
    limit = table_limit(edition)
    total = planned + existing
    return {
        "planned_custom_tables": planned,
        "existing_custom_tables": existing,
        "total": total,
        "limit": limit,
        "within_limit": limit is None or total <= limit,
    }
