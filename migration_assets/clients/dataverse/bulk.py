"""Many-row writes for the Dataverse client: bulk messages (CreateMultiple/UpdateMultiple/UpsertMultiple)
with bisection of all-or-nothing failures, and `$batch` with continue-on-error for tables without them.

Every input row ends in exactly one of: landed, already existing (a create whose id is already there,
e.g. the retry of a create that landed before the connection dropped), or rejected with the server's
code and message. Nothing is dropped silently.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Executor
from dataclasses import dataclass, field
from typing import Any

from migration_assets.clients.call_scope import submit
from migration_assets.clients.dataverse.batch import BatchRequest, decode_batch, encode_batch, match_responses
from migration_assets.clients.dataverse.bulk_plan import (
    Failure,
    Segment,
    classify_failure,
    contiguous_runs,
    halve,
    weighted_ranges,
)
from migration_assets.clients.dataverse.errors import DataverseApiError, DataverseError
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.clients.dataverse.transport import CallStats, Transport, error_of
from migration_assets.clients.fastjson import dumps_bytes

MESSAGES = {"create": "CreateMultiple", "update": "UpdateMultiple", "upsert": "UpsertMultiple"}
# One request carries at most this many bytes of large values (file bodies, as base64): a bulk message stays
# under the 116.85 MB plugin sandbox message limit (reference §4.4) with ~7 MB left for the rest of its rows
# (up to 1,000). A write whose rows carry more goes in several requests, sent at once like its other segments.
MAX_REQUEST_VALUE_BYTES = 104 * 1024 * 1024
LARGE_VALUE = 64 * 1024  # a string this long or longer counts towards it; shorter ones are noise


def large_value_bytes(row: dict[str, Any]) -> int:
    return sum(len(v) for v in row.values() if isinstance(v, str) and len(v) >= LARGE_VALUE)


@dataclass
class RowError:
    index: int  # position in the rows passed to the write call
    id: str | None
    status: int
    code: str
    message: str


@dataclass
class WriteResult:
    table: str
    operation: str
    succeeded: list[int] = field(default_factory=list)  # indices that landed or already existed
    rejected: list[RowError] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)  # creates whose id was already there (subset)
    ids: list[str | None] = field(default_factory=list)  # record id per input index, when known
    retries: int = 0
    requests: int = 0
    throttled: int = 0
    seconds: float = 0.0


class _Job:
    """Shared, locked state of one write call across worker threads."""

    def __init__(self, op: str, entity: EntityMeta, rows: list[dict[str, Any]]):
        self.op = op
        self.entity = entity
        self.rows = rows
        self.ids: list[str | None] = [_row_id(entity, r) for r in rows]
        self.outcome: dict[int, str] = {}
        self.errors: dict[int, RowError] = {}
        self.call = CallStats()
        self.lock = threading.Lock()

    def landed(self, indices: range | list[int], ids: list[str] | None = None) -> None:
        with self.lock:
            for n, i in enumerate(indices):
                self.outcome[i] = "landed"
                if ids is not None and n < len(ids):
                    self.ids[i] = str(ids[n]).lower()

    def existing(self, indices: list[int]) -> None:
        with self.lock:
            for i in indices:
                self.outcome[i] = "existing"

    def reject(self, index: int, status: int, code: str, message: str) -> None:
        with self.lock:
            self.outcome[index] = "rejected"
            self.errors[index] = RowError(index, self.ids[index], status, code, message)


def _row_id(entity: EntityMeta, row: dict[str, Any]) -> str | None:
    value = row.get(entity.primary_id)
    return str(value).lower() if value else None


def prepare_rows(op: str, entity: EntityMeta, rows: list[dict[str, Any]]) -> None:
    """Refuse rows a bulk message cannot address, before anything is sent."""
    if op not in MESSAGES:
        raise DataverseError(f"unknown write operation {op!r}; use one of {sorted(MESSAGES)}")
    if op in ("update", "upsert"):
        missing = [i for i, r in enumerate(rows) if not r.get(entity.primary_id) and "@odata.id" not in r]
        if missing:
            raise DataverseError(
                f"{op} of '{entity.logical_name}': rows {missing[:10]} (of {len(missing)}) carry neither the "
                f"primary key '{entity.primary_id}' nor '@odata.id'; the record to {op} is unknown"
            )


class BulkWriter:
    def __init__(self, transport: Transport, executor: Executor, write_headers: dict[str, str]):
        self.transport = transport
        self.executor = executor
        self.write_headers = write_headers

    def write(
        self, op: str, entity: EntityMeta, rows: list[dict[str, Any]], use_bulk: bool, chunk_size: int
    ) -> WriteResult:
        prepare_rows(op, entity, rows)
        started = time.monotonic()
        job = _Job(op, entity, rows)
        worker = self._bulk_segment if use_bulk else self._batch_segment
        weights = [large_value_bytes(r) for r in rows]
        segments = weighted_ranges(weights, chunk_size, MAX_REQUEST_VALUE_BYTES)
        futures = [submit(self.executor, worker, job, seg) for seg in segments]
        first_error: BaseException | None = None
        for fut in futures:  # wait for all, so no request is still running when we raise
            try:
                fut.result()
            except CancelledError:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised below after the others finish
                if first_error is None:
                    # A request-level error (missing column, privilege) will hit every chunk: stop sending.
                    for pending in futures:
                        pending.cancel()
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        unresolved = [i for i in range(len(rows)) if i not in job.outcome]
        if unresolved:  # a bug guard: every row must have an outcome
            raise DataverseError(f"{op} of '{entity.logical_name}': rows {unresolved[:10]} got no outcome")
        return WriteResult(
            table=entity.logical_name,
            operation=op,
            succeeded=sorted(i for i, o in job.outcome.items() if o != "rejected"),
            rejected=[job.errors[i] for i in sorted(job.errors)],
            existing=sorted(i for i, o in job.outcome.items() if o == "existing"),
            ids=job.ids,
            retries=job.call.retries,
            requests=job.call.requests,
            throttled=job.call.throttled,
            seconds=time.monotonic() - started,
        )

    # -- bulk messages ----------------------------------------------------------------------------------
    def _target(self, job: _Job, row: dict[str, Any]) -> dict[str, Any]:
        target = {**row, "@odata.type": job.entity.odata_type}
        if job.op == "upsert" and "@odata.id" not in target:
            target["@odata.id"] = f"{job.entity.entity_set_name}({row[job.entity.primary_id]})"
        return target

    def _bulk_segment(self, job: _Job, seg: Segment) -> None:
        url = f"{job.entity.entity_set_name}/Microsoft.Dynamics.CRM.{MESSAGES[job.op]}"
        body = dumps_bytes({"Targets": [self._target(job, job.rows[i]) for i in range(*seg)]})
        headers = {**self.write_headers, "Content-Type": "application/json; charset=utf-8"}
        resp = self.transport.request(
            "POST", url, content=body, headers=headers, call=job.call, records=seg[1] - seg[0]
        )
        if resp.is_success:
            ids = (resp.json() or {}).get("Ids") if job.op == "create" and resp.content else None
            job.landed(range(*seg), ids)
            return
        code, message = error_of(resp)
        kind = classify_failure(resp.status_code, code, message)
        if kind is Failure.REQUEST:
            raise DataverseApiError(resp.status_code, code, message, "POST", url)
        if kind is Failure.DUPLICATE_ID and job.op == "create" and self._split_existing(job, seg):
            return
        if seg[1] - seg[0] == 1:
            job.reject(seg[0], resp.status_code, code, message)
            return
        for half in halve(seg):  # all-or-nothing: isolate the bad rows, land the good ones
            self._bulk_segment(job, half)

    def _split_existing(self, job: _Job, seg: Segment) -> bool:
        """After a duplicate-id failure: mark the ids already present as existing, re-send the others."""
        wanted = {job.ids[i]: i for i in range(*seg) if job.ids[i]}
        if not wanted:
            return False
        found = existing_ids(self.transport, job.entity, list(wanted), job.call)
        if not found:
            return False
        job.existing([wanted[i] for i in found])
        for run in contiguous_runs([i for i in range(*seg) if job.ids[i] not in found]):
            self._bulk_segment(job, run)
        return True

    # -- $batch fallback ----------------------------------------------------------------------------------
    def _part(self, job: _Job, row: dict[str, Any]) -> BatchRequest:
        ent = job.entity
        headers = dict(self.write_headers)
        if job.op == "create":
            return BatchRequest("POST", ent.entity_set_name, row, headers)
        body = {k: v for k, v in row.items() if k not in (ent.primary_id, "@odata.id")}
        target = row.get("@odata.id") or f"{ent.entity_set_name}({row[ent.primary_id]})"
        if job.op == "update":
            headers["If-Match"] = "*"  # update only: a missing record is an error, not a silent create
        return BatchRequest("PATCH", str(target), body, headers)

    def _batch_segment(self, job: _Job, seg: Segment, resend_budget: int = 3) -> None:
        items: list[BatchRequest] = [self._part(job, job.rows[i]) for i in range(*seg)]
        ctype, payload = encode_batch(items, self.transport.api_root)  # type: ignore[arg-type]
        headers = {**self.write_headers, "Content-Type": ctype, "Prefer": "odata.continue-on-error"}
        resp = self.transport.request(
            "POST", "$batch", content=payload, headers=headers, call=job.call, records=len(items)
        )
        if not resp.headers.get("content-type", "").lower().startswith("multipart/"):
            code, message = error_of(resp)
            raise DataverseApiError(resp.status_code, code, message, "POST", "$batch")
        parts = match_responses(items, decode_batch(resp.headers["content-type"], resp.content))  # type: ignore[arg-type]
        unanswered: list[int] = []
        for offset, part in enumerate(parts):
            i = seg[0] + offset
            if part is None:
                unanswered.append(i)
            elif part.ok:
                job.landed([i], [part.entity_id] if part.entity_id else None)
            else:
                code, message = part.error or ("", part.reason)
                kind = classify_failure(part.status, code, message)
                if kind is Failure.DUPLICATE_ID and job.op == "create":
                    job.existing([i])
                elif kind is Failure.REQUEST:
                    raise DataverseApiError(
                        part.status, code, message, items[offset].method, items[offset].url
                    )
                else:
                    job.reject(i, part.status, code, message)
        if unanswered and resend_budget <= 0:
            raise DataverseError(
                f"$batch for '{job.entity.logical_name}' left {len(unanswered)} requests unanswered "
                f"despite continue-on-error"
            )
        for run in contiguous_runs(unanswered):
            self._batch_segment(job, run, resend_budget - 1)


EXISTENCE_CHUNK = 50  # ids per existence query (an OR of ids), to keep the URL short


def id_chunks(ids: list[str]) -> list[list[str]]:
    """`ids` cut into the chunks one existence query holds."""
    return [ids[start : start + EXISTENCE_CHUNK] for start in range(0, len(ids), EXISTENCE_CHUNK)]


def existing_ids(transport: Transport, entity: EntityMeta, ids: list[str], call: CallStats) -> set[str]:
    """Which of `ids` exist in the table (one query per chunk of ids)."""
    found: set[str] = set()
    pk = entity.primary_id
    for chunk in id_chunks(ids):
        flt = " or ".join(f"{pk} eq {i}" for i in chunk)
        url = f"{entity.entity_set_name}?$select={pk}&$filter={flt}"
        resp = transport.request("GET", url, call=call)
        if not resp.is_success:
            code, message = error_of(resp)
            raise DataverseApiError(resp.status_code, code, message, "GET", url)
        found.update(str(r[pk]).lower() for r in resp.json().get("value", []))
    return found
