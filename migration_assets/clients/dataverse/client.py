"""The one Dataverse Web API v9.2 client of the project (httpx + msal).

`DataverseClient` is a plain, thread-safe Python object that needs no Dagster; `resources/dataverse.py`
builds it from configuration. Transport, metadata, schema writes and bulk writes live in the modules
beside this one; this module is the public face.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from migration_assets.clients.dataverse.batch import (
    MAX_BATCH_REQUESTS,
    BatchPartResponse,
    BatchRequest,
    ChangeSet,
    decode_batch,
    encode_batch,
    entity_id_from_url,
    match_responses,
)
from migration_assets.clients.dataverse.bulk import BulkWriter, RowError, WriteResult, id_chunks
from migration_assets.clients.dataverse.bulk_plan import DUPLICATE_ID_CODE
from migration_assets.clients.dataverse.errors import (
    DataverseApiError,
    DataverseAuthError,
    DataverseConfigError,
    DataverseError,
    DataverseUnavailableError,
)
from migration_assets.clients.dataverse.metadata import (
    EntityMeta,
    entity_path,
    load_entity,
)
from migration_assets.clients.dataverse.odata import InvalidKeyError, key_segment, odata_bind, query_string
from migration_assets.clients.dataverse.schema import SchemaWritesMixin
from migration_assets.clients.dataverse.transport import (
    BYPASS_HEADERS,
    AppUserCredentials,
    Transport,
    TransportSettings,
    error_of,
)

__all__ = [
    "AppUserCredentials",
    "BulkSupportAnswer",
    "DataverseApiError",
    "DataverseAuthError",
    "DataverseClient",
    "DataverseConfigError",
    "DataverseError",
    "DataverseUnavailableError",
    "InvalidKeyError",
    "RowError",
    "WriteResult",
    "odata_bind",
    "key_segment",
]

_MISSING = object()


def _read_key(url: str, headers: Mapping[str, str] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return url, tuple(sorted((k.lower(), v) for k, v in (headers or {}).items()))


# Microsoft: 100–1000 rows per bulk request, start small (reference §4.4, §13.5). 500 is mid-range: a
# request stays well under execution-time limits and writes cost 2 requests per 1,000 rows, which leaves
# room in the ≤ 5 per 1,000 target for the existence reads and final-state changes.
DEFAULT_BATCH_SIZE = 500
# $batch fallback: each part still costs server time; Microsoft says start at ~10 and grow (§5.1).
DEFAULT_BATCH_REQUEST_SIZE = 100
BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")


@dataclass(frozen=True)
class BulkSupportAnswer:
    """The server's answer to "is `message` available on `table`?" (an `sdkmessagefilters` query), and when
    (epoch seconds) it was given."""

    message: str
    table: str
    supported: bool
    asked_at: float


class DataverseClient(SchemaWritesMixin):
    """Thread-safe Dataverse client. Use as a context manager or call `close()`."""

    def __init__(
        self,
        settings: TransportSettings,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_request_size: int = DEFAULT_BATCH_REQUEST_SIZE,
        bypass_custom_logic: bool = False,
        use_bulk_messages: bool = True,
    ):
        if not 1 <= batch_size <= 1000:
            raise DataverseConfigError(
                f"batch_size must be 1..1000 (Microsoft's bulk range), got {batch_size}"
            )
        if not 1 <= batch_request_size <= 1000:
            raise DataverseConfigError(
                f"batch_request_size must be 1..1000 ($batch cap), got {batch_request_size}"
            )
        self.transport = Transport(settings)
        self.batch_size = batch_size
        self.batch_request_size = batch_request_size
        self.use_bulk_messages = use_bulk_messages
        self.write_headers = dict(BYPASS_HEADERS) if bypass_custom_logic else {}
        workers = max(2, len(settings.users) * settings.max_in_flight)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataverse")
        self._writer = BulkWriter(self.transport, self._pool, self.write_headers)
        self._meta: dict[str, EntityMeta] = {}
        self._meta_read_at: dict[str, float] = {}  # tables whose metadata this client read itself: when
        # (message, table) -> supported. `_bulk_asked` holds the answers this client got from the server
        # itself (with when), as opposed to those primed from an earlier run's record (`prime_bulk_support`).
        self._bulk_support: dict[tuple[str, str], bool] = {}
        self._bulk_asked: dict[tuple[str, str], BulkSupportAnswer] = {}
        self._sets: dict[str, tuple[str, str]] = {}
        # GET answers fetched ahead in one `$batch` (`read_together`), each taken once by `request`.
        self._read_ahead: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        self._read_ahead_lock = threading.Lock()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.transport.close()

    # -- low level ------------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, expect_json: bool = True, **kw: Any) -> Any:
        """Send with retries; raise DataverseApiError (server status/code/message unchanged) on failure.
        A GET whose answer `read_together` fetched ahead takes that answer instead of being sent."""
        if method == "GET" and expect_json and self._read_ahead and set(kw) <= {"headers"}:
            with self._read_ahead_lock:
                found = self._read_ahead.pop(_read_key(url, kw.get("headers")), _MISSING)
            if found is not _MISSING:
                return found
        resp = self.transport.request(method, url, **kw)
        if not resp.is_success:
            code, message = error_of(resp)
            raise DataverseApiError(resp.status_code, code, message, method, url)
        if expect_json and resp.content and "json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp

    def get_json(self, url: str) -> Any:
        return self.request("GET", url)

    def read_together(self, reads: Sequence[str | tuple[str, Mapping[str, str]]]) -> int:
        """Fetch these GETs (a relative url, or (url, headers)) in one `$batch` instead of one round trip
        each; the next `request("GET", url)` with the same headers takes its answer (once). Only answers that
        succeeded are kept: a refused GET is sent again on its own and fails there with its own error, so
        callers keep their error handling. Returns how many answers are kept. Read-only parts: the write
        headers (bypass) are not sent."""
        wanted = [(r, {}) if isinstance(r, str) else (r[0], dict(r[1])) for r in reads]
        kept = 0
        for start in range(0, len(wanted), MAX_BATCH_REQUESTS):
            chunk = wanted[start : start + MAX_BATCH_REQUESTS]
            items: list[BatchRequest | ChangeSet] = [BatchRequest("GET", url, None, h) for url, h in chunk]
            ctype, payload = encode_batch(items, self.transport.api_root)
            resp = self.transport.request(
                "POST", "$batch", content=payload, headers={"Content-Type": ctype}, records=len(items)
            )
            ctype_out = resp.headers.get("content-type", "")
            if not ctype_out.lower().startswith("multipart/"):
                continue  # nothing kept: each GET goes out on its own
            parts = match_responses(items, decode_batch(ctype_out, resp.content))
            answers = {
                _read_key(url, h): part.json()
                for (url, h), part in zip(chunk, parts, strict=True)
                if part is not None and part.ok and part.body.strip()
            }
            with self._read_ahead_lock:
                self._read_ahead.update(answers)
            kept += len(answers)
        return kept

    def drop_read_ahead(self) -> None:
        """Forget answers fetched ahead and not taken (they would be stale for a later read)."""
        with self._read_ahead_lock:
            self._read_ahead.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per application user: requests, retries, throttled (429s), 5xx, connection errors, refreshes."""
        return self.transport.stats()

    def whoami(self) -> dict[str, Any]:
        return self.get_json("WhoAmI")

    # -- metadata ---------------------------------------------------------------------------------------
    def metadata(self, table: str, refresh: bool = False) -> EntityMeta:
        """Columns, choices, keys and relationships of a table; cached for the life of the client."""
        if refresh or table not in self._meta:
            read_at = time.time()
            self._meta[table] = load_entity(self.get_json, table)
            self._meta_read_at[table] = read_at
            self._sets[table] = (self._meta[table].entity_set_name, self._meta[table].primary_id)
        return self._meta[table]

    def prime_metadata(self, meta: EntityMeta) -> bool:
        """Take a table's metadata read earlier (a run's record of it), so that it is not read again; what
        this client has already wins. True when taken."""
        if meta.logical_name in self._meta:
            return False
        self._meta[meta.logical_name] = meta
        self._sets[meta.logical_name] = (meta.entity_set_name, meta.primary_id)
        return True

    def metadata_read(self) -> dict[str, tuple[EntityMeta, float]]:
        """Table -> (metadata, when it was read) for the tables whose metadata this client read itself."""
        # A schema write drops a table's definition from `_meta` (schema.py): only those still held count.
        return {t: (self._meta[t], at) for t, at in self._meta_read_at.items() if t in self._meta}

    def prime_entity_sets(self, heads: Iterable[tuple[str, str, str]]) -> int:
        """Take (table, entity set, primary id column) known from an earlier read; returns how many."""
        taken = 0
        for table, entity_set, primary_id in heads:
            if table not in self._sets and entity_set and primary_id:
                self._sets[table] = (entity_set, primary_id)
                taken += 1
        return taken

    def entity_sets_known(self) -> dict[str, tuple[str, str]]:
        """Table -> (entity set, primary id column) as far as this client knows them."""
        return dict(self._sets)

    def _head(self, table: str) -> tuple[str, str]:
        """(entity set name, primary id column) of a table, with one light query, cached."""
        if table not in self._sets:
            if table in self._meta:
                meta = self._meta[table]
                self._sets[table] = (meta.entity_set_name, meta.primary_id)
            else:
                row = self.get_json(
                    f"{entity_path(table)}?$select=LogicalName,EntitySetName,PrimaryIdAttribute"
                )
                self._sets[table] = (row["EntitySetName"], row["PrimaryIdAttribute"])
        return self._sets[table]

    def entity_set(self, table: str) -> str:
        return self._head(table)[0]

    @property
    def environment_url(self) -> str:
        """The environment this client talks to (what facts about the environment are recorded under)."""
        return self.transport.settings.environment_url.rstrip("/")

    def supports_bulk(self, message: str, table: str, refresh: bool = False) -> bool:
        """Is `message` (CreateMultiple, UpdateMultiple, UpsertMultiple) available on `table`? Asked once
        (reference §4.1) and cached, or primed from an earlier answer; `refresh` asks the server again."""
        if message not in BULK_MESSAGES:
            raise DataverseError(f"not a bulk message: {message!r} (one of {', '.join(BULK_MESSAGES)})")
        if refresh or (message, table) not in self._bulk_support:
            qs = query_string(
                {
                    "$select": "sdkmessagefilterid",
                    "$filter": "sdkmessageid/name eq @message and primaryobjecttypecode eq @table",
                    "@message": f"'{message}'",
                    "@table": f"'{table}'",
                }
            )
            found = bool(self.get_json(f"sdkmessagefilters?{qs}").get("value", []))
            self._bulk_support[(message, table)] = found
            self._bulk_asked[(message, table)] = BulkSupportAnswer(message, table, found, time.time())
        return self._bulk_support[(message, table)]

    def prime_bulk_support(self, known: Iterable[tuple[str, str, bool]]) -> int:
        """Take (message, table, supported) answers recorded by an earlier run against this environment,
        so that they are not asked again; an answer this client already has wins. Returns how many were
        taken."""
        taken = 0
        for message, table, supported in known:
            if message in BULK_MESSAGES and (message, table) not in self._bulk_support:
                self._bulk_support[(message, table)] = bool(supported)
                taken += 1
        return taken

    def bulk_support_asked(self) -> list[BulkSupportAnswer]:
        """The answers this client got from the server itself (not primed ones), oldest first."""
        return sorted(self._bulk_asked.values(), key=lambda a: a.asked_at)

    # -- records ----------------------------------------------------------------------------------------
    def create(self, table: str, record: dict[str, Any]) -> str:
        """Create one record; return its id. A client-supplied id that already exists counts as created
        (412 0x80040237: the retry of a create that landed, or a re-run) and its id is returned."""
        entity_set, primary_id = self._head(table)
        resp = self.transport.request("POST", entity_set, json=record, headers=self.write_headers)
        pk_value = record.get(primary_id)
        if resp.is_success:
            new_id = entity_id_from_url(
                resp.headers.get("OData-EntityId") or resp.headers.get("Location") or ""
            )
            if new_id or pk_value:
                return new_id or str(pk_value).lower()
            raise DataverseError(
                f"create of '{table}' answered HTTP {resp.status_code} without OData-EntityId or Location; "
                f"the new record's id is unknown (send '{primary_id}' in the record to choose it)"
            )
        code, message = error_of(resp)
        if resp.status_code == 412 and code.lower() == DUPLICATE_ID_CODE and pk_value:
            return str(pk_value).lower()
        raise DataverseApiError(resp.status_code, code, message, "POST", entity_set)

    def get(
        self,
        table: str,
        key: str | dict[str, Any],
        select: list[str] | None = None,
        expand: str | None = None,
    ) -> dict[str, Any] | None:
        """One record by id or alternate key; None when it does not exist (404)."""
        params = {}
        if select:
            params["$select"] = ",".join(select)
        if expand:
            params["$expand"] = expand
        url = key_segment(self.entity_set(table), key) + (f"?{query_string(params)}" if params else "")
        resp = self.transport.request("GET", url)
        if resp.status_code == 404:
            return None
        if not resp.is_success:
            raise DataverseApiError(resp.status_code, *error_of(resp), "GET", url)
        return resp.json()

    def update(self, table: str, key: str | dict[str, Any], changes: dict[str, Any]) -> None:
        """Update only (If-Match: *): a missing record is a 404 error, never a silent create."""
        url = key_segment(self.entity_set(table), key)
        self.request("PATCH", url, json=changes, headers={**self.write_headers, "If-Match": "*"})

    def upsert(self, table: str, key: str | dict[str, Any], record: dict[str, Any]) -> str | None:
        """Create or update by id or alternate key (PATCH without If-Match); return the record id."""
        url = key_segment(self.entity_set(table), key)
        resp = self.request("PATCH", url, json=record, headers=self.write_headers, expect_json=False)
        return entity_id_from_url(resp.headers.get("OData-EntityId", "")) or (
            key if isinstance(key, str) else None
        )

    def delete(self, table: str, key: str | dict[str, Any]) -> bool:
        """Delete; False when the record was already gone (so rollbacks can be re-run)."""
        url = key_segment(self.entity_set(table), key)
        resp = self.transport.request("DELETE", url, headers=self.write_headers)
        if resp.status_code == 404:
            return False
        if not resp.is_success:
            raise DataverseApiError(resp.status_code, *error_of(resp), "DELETE", url)
        return True

    def set_state(self, table: str, record_id: str, statecode: int, statuscode: int) -> None:
        self.update(table, record_id, {"statecode": statecode, "statuscode": statuscode})

    def query(
        self,
        table: str,
        select: list[str] | None = None,
        filter: str | None = None,
        orderby: str | None = None,
        expand: str | None = None,
        top: int | None = None,
        page_size: int = 5000,
        annotations: bool | str = False,
    ) -> Iterator[dict[str, Any]]:
        """Rows of a table, following `@odata.nextLink` unchanged (`Prefer: odata.maxpagesize`)."""
        for page in self.query_pages(table, select, filter, orderby, expand, top, page_size, annotations):
            yield from page

    def query_pages(
        self,
        table: str,
        select: list[str] | None = None,
        filter: str | None = None,
        orderby: str | None = None,
        expand: str | None = None,
        top: int | None = None,
        page_size: int = 5000,
        annotations: bool | str = False,
    ) -> Iterator[list[dict[str, Any]]]:
        first, headers = self.query_request(
            table, select, filter, orderby, expand, top, page_size, annotations
        )
        url: str | None = first
        while url:
            page = self.request("GET", url, headers=headers)
            yield page.get("value", [])
            url = page.get("@odata.nextLink")

    def query_request(
        self,
        table: str,
        select: list[str] | None = None,
        filter: str | None = None,
        orderby: str | None = None,
        expand: str | None = None,
        top: int | None = None,
        page_size: int = 5000,
        annotations: bool | str = False,
    ) -> tuple[str, dict[str, str]]:
        """(url, headers) of the first page of `query` (what `read_together` takes to fetch it ahead)."""
        if not 1 <= page_size <= 5000:
            raise DataverseError(f"page_size must be 1..5000 (Dataverse maximum), got {page_size}")
        params: dict[str, str] = {}
        for name, value in (("$select", ",".join(select or [])), ("$filter", filter), ("$orderby", orderby)):
            if value:
                params[name] = value
        if expand:
            params["$expand"] = expand
        if top is not None:
            params["$top"] = str(top)  # $top disables paging (reference §2.3), so no maxpagesize with it
        prefer = [] if top is not None else [f"odata.maxpagesize={page_size}"]
        if annotations:
            prefer.append(include_annotations(annotations))
        headers = {"Prefer": ",".join(prefer)} if prefer else {}
        return self.entity_set(table) + (f"?{query_string(params)}" if params else ""), headers

    def query_each(
        self,
        table: str,
        filters: Sequence[str],
        select: list[str] | None = None,
        annotations: bool | str = False,
    ) -> Iterator[dict[str, Any]]:
        """Rows of one query per filter (chunks of ids that one URL cannot hold). When there are several,
        their first pages are fetched in one `$batch` (`read_together`): a few changed records cost one
        round trip, not one per chunk. Later pages, and a query whose read-ahead was refused, are sent as
        `query` sends them."""
        if len(filters) > 1:
            self.read_together(
                [self.query_request(table, select, f, annotations=annotations) for f in filters]
            )
        for flt in filters:
            yield from self.query(table, select=select, filter=flt, annotations=annotations)

    def existing_ids(self, table: str, ids: list[str]) -> set[str]:
        """Which of these ids exist already (lower-cased); the chunks' queries go in one round trip."""
        meta = self.metadata(table)
        pk, wanted = meta.primary_id, [i.lower() for i in ids]
        filters = [" or ".join(f"{pk} eq {i}" for i in chunk) for chunk in id_chunks(wanted)]
        return {str(r[pk]).lower() for r in self.query_each(table, filters, select=[pk])}

    # -- many rows --------------------------------------------------------------------------------------
    def _write(self, op: str, table: str, rows: list[dict[str, Any]], batch_size: int | None) -> WriteResult:
        entity = self.metadata(table)
        message = {"create": "CreateMultiple", "update": "UpdateMultiple", "upsert": "UpsertMultiple"}[op]
        use_bulk = self.use_bulk_messages and self.supports_bulk(message, table)
        size = batch_size or (self.batch_size if use_bulk else self.batch_request_size)
        return self._writer.write(op, entity, rows, use_bulk, size)

    def create_multiple(
        self, table: str, rows: list[dict[str, Any]], batch_size: int | None = None
    ) -> WriteResult:
        """Create rows with CreateMultiple (or $batch where unsupported); bad rows rejected, good rows land."""
        return self._write("create", table, rows, batch_size)

    def update_multiple(
        self, table: str, rows: list[dict[str, Any]], batch_size: int | None = None
    ) -> WriteResult:
        return self._write("update", table, rows, batch_size)

    def upsert_multiple(
        self,
        table: str,
        rows: list[dict[str, Any]],
        batch_size: int | None = None,
        key_columns: list[str] | None = None,
    ) -> WriteResult:
        """Upsert rows addressed by primary key, or by the alternate key `key_columns` (which must be an
        Active key: the row's values become "@odata.id": "<set>(<col>='<value>')"), or an explicit "@odata.id"."""
        if key_columns:
            entity_set = self.entity_set(table)
            lacking = [i for i, r in enumerate(rows) if any(r.get(c) in (None, "") for c in key_columns)]
            if lacking:
                raise DataverseError(
                    f"upsert of '{table}' by key {key_columns}: rows {lacking[:10]} (of {len(lacking)}) have no "
                    f"value for a key column"
                )
            rows = [
                r
                if "@odata.id" in r
                else {**r, "@odata.id": key_segment(entity_set, {c: r[c] for c in key_columns})}
                for r in rows
            ]
        return self._write("upsert", table, rows, batch_size)

    def execute_batch(
        self, items: list[BatchRequest | ChangeSet], continue_on_error: bool = True
    ) -> list[BatchPartResponse | None]:
        """One `$batch`; one response per request in order (None where the server stopped early)."""
        ctype, payload = encode_batch(items, self.transport.api_root)
        headers = {**self.write_headers, "Content-Type": ctype}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        resp = self.transport.request("POST", "$batch", content=payload, headers=headers, records=len(items))
        ctype_out = resp.headers.get("content-type", "")
        if not ctype_out.lower().startswith("multipart/"):
            raise DataverseApiError(resp.status_code, *error_of(resp), "POST", "$batch")
        return match_responses(items, decode_batch(ctype_out, resp.content))

    # -- actions ----------------------------------------------------------------------------------------
    def _close_opportunity(
        self, action: str, opportunity_id: str, status: int, close: dict[str, Any]
    ) -> None:
        body = {
            "Status": status,
            "OpportunityClose": {
                **close,
                "opportunityid@odata.bind": odata_bind(self.entity_set("opportunity"), opportunity_id),
            },
        }
        try:
            self.request("POST", action, json=body, headers=self.write_headers, expect_json=False)
        except DataverseApiError:
            # An action is not idempotent: if a retry (dropped connection after the work) or a re-run finds
            # the opportunity already closed the way we want, that is success; anything else is re-raised.
            current = self.get("opportunity", opportunity_id, ["statecode", "statuscode"])
            want_state = 1 if action == "WinOpportunity" else 2
            if current and current.get("statecode") == want_state and current.get("statuscode") == status:
                return
            raise

    def win_opportunity(self, opportunity_id: str, status: int = 3, **close: Any) -> None:
        """Close as Won; `close` adds opportunityclose columns (subject, actualrevenue, actualend...)."""
        self._close_opportunity("WinOpportunity", opportunity_id, status, {"subject": "Won", **close})

    def lose_opportunity(self, opportunity_id: str, status: int = 4, **close: Any) -> None:
        """Close as Lost (4 Canceled, 5 Out-Sold)."""
        self._close_opportunity("LoseOpportunity", opportunity_id, status, {"subject": "Lost", **close})


FORMATTED_VALUES = "OData.Community.Display.V1.FormattedValue"


def include_annotations(annotations: bool | str) -> str:
    """The `odata.include-annotations` preference: every annotation (True) or the named ones (e.g.
    FORMATTED_VALUES: labels of choices, lookup names, formatted money and dates)."""
    return f'odata.include-annotations="{"*" if annotations is True else annotations}"'
