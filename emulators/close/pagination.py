"""`_skip`/`_limit` validation with flask-mongorest's exact messages, `_fields`, and list envelopes.

`has_more` is computed the way Close computes it: fetch limit + 1 rows and report whether the extra one
exists (close_api.md §2.1). Bodies are spliced around the page's objects, serialised in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .jsonutil import dumps


@dataclass(frozen=True)
class Page:
    skip: int
    limit: int


def _isint(value: str) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def parse_page(params: dict[str, str], max_limit: int | None, default_limit: int, max_skip: int) -> Page:
    """Validate `_skip`/`_limit` (flask-mongorest `get_skip_and_limit` + Close's max_skip rule)."""
    raw_limit = params.get("_limit")
    raw_skip = params.get("_skip")
    if raw_limit is not None and raw_limit != "" and not _isint(raw_limit):
        raise bad_request(f'_limit must be an integer (got "{raw_limit}" instead).')
    if raw_skip is not None and raw_skip != "" and not _isint(raw_skip):
        raise bad_request(f'_skip must be an integer (got "{raw_skip}" instead).')
    limit = int(raw_limit) if raw_limit else default_limit
    skip = int(raw_skip) if raw_skip else 0
    if max_limit is not None and limit > max_limit:
        raise bad_request(
            f"The limit you set is larger than the maximum limit for this resource (max_limit = {max_limit})."
        )
    if limit < 0:
        raise bad_request(f'_limit must be a non-negative integer (got "{raw_limit}" instead).')
    if skip < 0:
        raise bad_request(f'_skip must be a non-negative integer (got "{raw_skip}" instead).')
    if skip > max_skip:
        raise bad_request(
            "The skip you set is larger than the maximum skip for this resource "
            f"(max_skip = {max_skip}). Please refine your search query."
        )
    return Page(skip=skip, limit=limit)


def requested_fields(params: dict[str, str]) -> list[str] | None:
    raw = params.get("_fields")
    if not raw:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    if "_all" in fields:
        return None
    return fields


def project(obj: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Keep only the requested keys that exist; unknown names are dropped silently (close_api.md §2.4)."""
    return {f: obj[f] for f in fields if f in obj}


def envelope(members: bytes, has_more: bool, extra: dict[str, Any] | None = None) -> bytes:
    """`{"data": [...], "has_more": bool, **extra}` from the already-serialised, comma-separated objects."""
    body = b'{"data":[' + members + (b'],"has_more":true' if has_more else b'],"has_more":false')
    if extra:
        body += b"," + dumps(extra)[1:-1]
    return body + b"}"


def data_only(members: bytes) -> bytes:
    """`{"data": [...]}` — the envelope of the unpaginated config lists (pipelines, custom activity types)."""
    return b'{"data":[' + members + b"]}"
