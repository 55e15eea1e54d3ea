"""Lead and opportunity exports: `POST /export/lead/`, `POST /export/opportunity/`, polling, gzip download.

Status advances created → started → in_progress → done, one step per `GET /export/{id}/` (or after
`export_seconds_before_done` seconds). Like Close, the file is built in the background as soon as the
export is requested (a snapshot of the org at that moment) into a gzip file on disk, as S3 keeps it
(not in the emulator's memory: `large` makes 100 MB; an unlinked temporary file, which the system removes
however the process ends). The poll that reports `done` waits for the build to finish if it has not yet,
so the download only streams stored bytes, as S3 does. When done,
`download_url` is a fresh signed URL on the emulator's own host, valid `download_url_lifetime` (60 s); an expired URL answers 403 with S3's `AccessDenied` XML
(see signing.py). Files are served gzip-compressed (`Content-Encoding: gzip`), streamed.

File layouts (Close does not document them; these are the emulator's, stable):

* JSON (`format=json`) is **JSON lines**: one object per line, UTF-8, newline-terminated.
  `type=leads`: each line is a lead shaped exactly like `GET /lead/{id}/` (contacts, contact_ids,
  opportunities, tasks embedded), plus `"activities": [...]` (every activity of the lead, oldest first, as
  `GET /activity/<type>/{id}/` returns it) when `include_activities` is true — honoured only for json+leads,
  as in Close. `type=contacts`: one contact per line; `type=lead_opps`: one opportunity per line.
  Opportunity exports (`type=opps`): one opportunity per line.
* CSV (`format=csv`) never contains activities. One row per lead (`leads`), contact (`contacts`) or
  opportunity (`lead_opps`, `opps`). Columns: the object's scalar fields by their API names; for leads the
  first address as `address_1, address_2, city, state, zipcode, country, address_label` and
  `contact_count`, `opportunity_count`; for contacts `lead_name`, `emails` / `phones` / `urls` (values joined
  with "; ") and `primary_email`, `primary_phone`; custom fields as `custom.<Field Name>` (lists joined with
  ", "). `date_format` and `fields` are accepted and ignored (timestamps are written as in the API).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import struct
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse

try:  # ISA-L deflate: ~4x faster than zlib at level 1 (and releases the GIL, like zlib)
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - isal is a declared dependency; zlib produces the same format
    _deflate = zlib  # type: ignore[assignment]

from .errors import field_error, not_found
from .jsonutil import dumps, dumps_line, rewrite_hosts

if TYPE_CHECKING:
    from .resources.base import Ctx
    from .state import EmulatorState
    from .store import OrgStore

SIGNED_PREFIX = "/_s3/exports/"
_STATUSES = ("created", "started", "in_progress", "done")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BUILD_TIMEOUT_SECONDS = 600.0
# Level 1 of ISA-L (zlib level 1 without it): the build is not what an extraction benchmark measures;
# measured on `typical` (155 MB of JSON lines): 0.1 s on 2 threads, 28 MB (zlib level 3: 0.8 s, 26 MB).
GZIP_LEVEL = 1
GZIP_BLOCK_BYTES = 4 << 20  # uncompressed bytes per independently deflated block
GZIP_THREADS = 2
DOWNLOAD_CHUNK_BYTES = 1 << 20

LEAD_COLUMNS = (
    "id",
    "display_name",
    "name",
    "status_id",
    "status_label",
    "url",
    "description",
    "html_url",
    "created_by",
    "created_by_name",
    "updated_by",
    "updated_by_name",
    "date_created",
    "date_updated",
)
CONTACT_COLUMNS = (
    "id",
    "lead_id",
    "name",
    "display_name",
    "title",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
)
OPPORTUNITY_COLUMNS = (
    "id",
    "lead_id",
    "lead_name",
    "contact_id",
    "contact_name",
    "status_id",
    "status_label",
    "status_type",
    "pipeline_id",
    "pipeline_name",
    "value",
    "value_currency",
    "value_period",
    "value_formatted",
    "confidence",
    "expected_value",
    "annualized_value",
    "date_won",
    "date_lost",
    "note",
    "user_id",
    "user_name",
    "created_by",
    "created_by_name",
    "updated_by",
    "updated_by_name",
    "date_created",
    "date_updated",
)
_ADDRESS = ("address_1", "address_2", "city", "state", "zipcode", "country")


def _now_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")


@dataclass
class ExportJob:
    id: str
    kind: str  # "lead" or "opportunity"
    type: str  # leads | contacts | lead_opps | opps
    format: str  # json | csv
    include_activities: bool
    request: dict[str, Any]
    created_at: float
    created_by: str | None
    polls: int = 0
    n_docs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # The gzip file, built by a background thread started at creation (`built` is set when done).
    file: IO[bytes] | None = None
    build_error: BaseException | None = None
    built: threading.Event = field(default_factory=threading.Event)

    def wait_built(self, timeout: float = BUILD_TIMEOUT_SECONDS) -> None:
        if not self.built.wait(timeout):
            raise RuntimeError(f"export {self.id}: file not built within {timeout:.0f} s")
        if self.build_error is not None:
            raise RuntimeError(f"export {self.id}: building the file failed") from self.build_error

    def status(self, clock_now: float, seconds_before_done: float | None, polls_before_done: int) -> str:
        if seconds_before_done is not None:
            elapsed = clock_now - self.created_at
            if elapsed >= seconds_before_done:
                return "done"
            step = int(3 * elapsed / seconds_before_done) if seconds_before_done > 0 else 3
            return _STATUSES[min(step, 2)]
        if self.polls >= polls_before_done:
            return "done"
        return _STATUSES[min(2, max(0, 3 * self.polls // max(1, polls_before_done)))]


class ExportRegistry:
    def __init__(self) -> None:
        self.jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()

    def add(self, job: ExportJob) -> None:
        with self._lock:
            self.jobs[job.id] = job


def _new_id() -> str:
    return "expo_" + "".join(secrets.choice(_B62) for _ in range(43))


def _render(ctx: Ctx, job: ExportJob, advance: bool) -> dict[str, Any]:
    cfg = ctx.config
    if advance:
        job.polls += 1
    now = cfg.clock()
    status = job.status(now, cfg.export_seconds_before_done, cfg.export_polls_before_done)
    done = status == "done"
    if done:
        # Close reports `done` only once the file exists: the reporting poll waits for the build.
        job.wait_built()
    suffix = "json" if job.format == "json" else "csv"
    download = None
    if done:
        download = ctx.root + ctx.state.signer.sign(f"{SIGNED_PREFIX}{job.id}.{suffix}")
    processed = job.n_docs if done else (0 if status in ("created", "started") else job.n_docs // 2)
    out = {
        "id": job.id,
        "organization_id": ctx.store.organization_id,
        "type": job.type,
        "format": job.format,
        "date_format": job.request.get("date_format", "original"),
        "status": status,
        "download_url": download,
        "fields": job.request.get("fields") or [],
        "n_docs": None if status == "created" else job.n_docs,
        "n_docs_processed": processed,
        "send_done_email": bool(job.request.get("send_done_email", True)),
        "created_by": job.created_by,
        "updated_by": job.created_by,
        "date_created": _now_text(job.created_at),
        "date_updated": _now_text(now),
    }
    if job.kind == "lead":
        out.update(
            {
                "s_query": job.request.get("s_query"),
                "sort": job.request.get("sort") or [],
                "results_limit": job.request.get("results_limit"),
                "include_activities": job.include_activities,
            }
        )
    else:
        out["params"] = job.request.get("params") or {}
    return out


def _create(ctx: Ctx, kind: str) -> bytes:
    body = ctx.body or {}
    fmt = body.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise field_error("format", f"Not a valid choice: {fmt!r} (expected csv or json).")
    if kind == "lead":
        kind_type = body.get("type", "leads")
        if kind_type not in ("leads", "contacts", "lead_opps"):
            raise field_error(
                "type", f"Not a valid choice: {kind_type!r} (expected leads, contacts or lead_opps)."
            )
    else:
        kind_type = "opps"
    store = ctx.store
    # include_activities only works for json + leads (close_api.md §4.17); elsewhere it is ignored.
    include = bool(body.get("include_activities")) and fmt == "json" and kind_type == "leads"
    counts = {
        "leads": len(store.org.leads),
        "contacts": len(store.org.contacts),
        "lead_opps": len(store.org.opportunities),
        "opps": len(store.org.opportunities),
    }
    users = store.org.users
    job = ExportJob(
        id=_new_id(),
        kind=kind,
        type=kind_type,
        format=fmt,
        include_activities=include,
        request=body,
        created_at=ctx.config.clock(),
        created_by=users[0]["id"] if users else None,
        n_docs=counts[kind_type],
    )
    ctx.state.exports.add(job)
    _start_build(ctx.state, job, ctx.root.encode())
    return dumps(_render(ctx, job, advance=False))


def create_lead_export(ctx: Ctx) -> bytes:
    return _create(ctx, "lead")


def create_opportunity_export(ctx: Ctx) -> bytes:
    return _create(ctx, "opportunity")


def get_export(ctx: Ctx) -> bytes:
    job = ctx.state.exports.jobs.get(ctx.args["id"])
    if job is None:
        raise not_found("Export")
    return dumps(_render(ctx, job, advance=True))


def _lister(kind: str | None):  # noqa: ANN202 - returns a handler
    def handler(ctx: Ctx) -> bytes:
        jobs = [j for j in ctx.state.exports.jobs.values() if kind is None or j.kind == kind]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        data = [_render(ctx, j, advance=False) for j in jobs]
        return dumps({"data": data, "has_more": False})

    return handler


ROUTES = [
    ("POST", "export/lead", create_lead_export),
    ("POST", "export/opportunity", create_opportunity_export),
    ("GET", "export", _lister(None)),
    ("GET", "export/lead", _lister("lead")),
    ("GET", "export/opportunity", _lister("opportunity")),
    ("GET", "export/{id}", get_export),
    ("GET", "export/lead/{id}", get_export),
    ("GET", "export/opportunity/{id}", get_export),
]


# ----- file contents --------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return dumps(value).decode()
    return str(value)


def _custom_columns(store: OrgStore, kind: str) -> list[tuple[str, str]]:
    return [("custom." + f["name"], "custom." + f["id"]) for f in store.org.custom_fields.get(kind, [])]


def _csv_rows(store: OrgStore, job: ExportJob) -> Iterator[list[str]]:
    org = store.org
    if job.type == "leads":
        custom = _custom_columns(store, "lead")
        yield [
            *LEAD_COLUMNS,
            *_ADDRESS,
            "address_label",
            "contact_count",
            "opportunity_count",
            *(c[0] for c in custom),
        ]
        for lead in org.leads:
            address = (lead.get("addresses") or [{}])[0]
            yield [
                *(_cell(lead.get(c)) for c in LEAD_COLUMNS),
                *(_cell(address.get(c)) for c in _ADDRESS),
                _cell(address.get("label")),
                str(len(store.contacts_by_lead.get(lead["id"], []))),
                str(len(store.opportunities_by_lead.get(lead["id"], []))),
                *(_cell(lead.get(key)) for _, key in custom),
            ]
    elif job.type == "contacts":
        custom = _custom_columns(store, "contact")
        yield [
            *CONTACT_COLUMNS,
            "lead_name",
            "primary_email",
            "primary_phone",
            "emails",
            "phones",
            "urls",
            *(c[0] for c in custom),
        ]
        for contact in org.contacts:
            lead = store.leads_by_id.get(contact.get("lead_id") or "", {})
            emails = [e.get("email", "") for e in contact.get("emails") or []]
            phones = [p.get("phone", "") for p in contact.get("phones") or []]
            urls = [u.get("url", "") for u in contact.get("urls") or []]
            yield [
                *(_cell(contact.get(c)) for c in CONTACT_COLUMNS),
                _cell(lead.get("display_name") or lead.get("name")),
                emails[0] if emails else "",
                phones[0] if phones else "",
                "; ".join(emails),
                "; ".join(phones),
                "; ".join(urls),
                *(_cell(contact.get(key)) for _, key in custom),
            ]
    else:
        custom = _custom_columns(store, "opportunity")
        yield [*OPPORTUNITY_COLUMNS, *(c[0] for c in custom)]
        for opp in org.opportunities:
            yield [
                *(_cell(opp.get(c)) for c in OPPORTUNITY_COLUMNS),
                *(_cell(opp.get(key)) for _, key in custom),
            ]


def _lines(store: OrgStore, job: ExportJob, root: bytes) -> Iterator[bytes]:
    org = store.org
    if job.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        for row in _csv_rows(store, job):
            writer.writerow(row)
            if buf.tell() > 65536:
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue().encode("utf-8")
        return
    if job.type == "leads":
        yield from _lead_lines(store, job.include_activities, root)
    else:
        rows = org.contacts if job.type == "contacts" else org.opportunities
        for obj in rows:
            yield store.object_bytes(obj) + b"\n"


def _lead_lines(
    store: OrgStore, include_activities: bool, root: bytes, lines_per_block: int = 64
) -> Iterator[bytes]:
    """The JSON lines of a leads export, in blocks of `lines_per_block` whole lines.

    Each line is serialised as it is written, in one call (nothing is cached: see store.py). File URLs get
    this host by `rewrite_hosts` of each block: a block holds whole lines, so it finds what a search of
    each line would.
    """
    lines: list[bytes] = []
    for lead in store.org.leads:
        full = store.full_lead(lead)
        if include_activities:
            full["activities"] = store.activities_by_lead.get(lead["id"], [])
        lines.append(dumps_line(full))
        if len(lines) >= lines_per_block:
            yield rewrite_hosts(b"".join(lines), root)
            lines = []
    if lines:
        yield rewrite_hosts(b"".join(lines), root)


def _deflate_block(block: bytes, level: int, last: bool) -> bytes:
    comp = _deflate.compressobj(level, _deflate.DEFLATED, -15)  # raw deflate: gzip framing added once
    return comp.compress(block) + comp.flush(_deflate.Z_FINISH if last else _deflate.Z_SYNC_FLUSH)


def gzip_parallel(
    chunks: Iterator[bytes],
    level: int = GZIP_LEVEL,
    threads: int = GZIP_THREADS,
    block: int = GZIP_BLOCK_BYTES,
) -> Iterator[bytes]:
    """One gzip member (what any gzip reader, httpx included, decodes), compressed pigz-style and yielded
    in pieces as it is made.

    Blocks of `block` bytes are deflated independently on `threads` threads (zlib releases the GIL) and
    end on a sync flush, so their concatenation is a single valid deflate stream; only the last block
    is final. The CRC32 and size trailer cover the whole input.
    """
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no name, unknown OS
    crc, size = 0, 0
    futures: deque[Future[bytes]] = deque()
    pending: list[bytes] = []
    pending_size = 0
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="export-gzip") as pool:
        for chunk in chunks:
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= block:
                data = b"".join(pending)
                pending, pending_size = [], 0
                crc = _deflate.crc32(data, crc)
                size += len(data)
                futures.append(pool.submit(_deflate_block, data, level, False))
                # Bound the blocks in flight (memory), 2 per thread: the oldest goes out first, in order.
                while len(futures) > 2 * threads:
                    yield futures.popleft().result()
        data = b"".join(pending)
        crc = _deflate.crc32(data, crc)
        size += len(data)
        futures.append(pool.submit(_deflate_block, data, level, True))
        while futures:
            yield futures.popleft().result()
    yield struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


def _start_build(state: EmulatorState, job: ExportJob, root: bytes) -> None:
    """Build the export file in the background (a snapshot of the org as it is now)."""
    store = state.store  # `reload` may swap the live store while the file is being built

    def build() -> None:
        out: IO[bytes] | None = None
        try:
            out = tempfile.TemporaryFile(prefix="close-emulator-export-")  # noqa: SIM115 - kept by the job
            # The file is one state of the org: writes wait while it is built (reads do not).
            with store.write_lock:
                for piece in gzip_parallel(_lines(store, job, root)):
                    out.write(piece)
            out.flush()
            job.file = out
        except BaseException as exc:  # reported by the poll that waits for the file
            if out is not None:
                out.close()
            job.build_error = exc
        finally:
            job.built.set()

    threading.Thread(target=build, name=f"export-build-{job.id[-6:]}", daemon=True).start()


def serve_export(state: EmulatorState, signed_path: str, params: dict[str, str], root: str) -> Response:
    denied = state.signer.check(signed_path, params)
    if denied is not None:
        return denied
    name = signed_path[len(SIGNED_PREFIX) :]
    job = state.exports.jobs.get(name.rsplit(".", 1)[0])
    if job is None:
        return Response(
            b"<Error><Code>NoSuchKey</Code></Error>", status_code=404, media_type="application/xml"
        )
    media = "application/json" if job.format == "json" else "text/csv"
    job.wait_built()
    assert job.file is not None
    size = os.fstat(job.file.fileno()).st_size
    headers = {
        "Content-Encoding": "gzip",
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Length": str(size),
    }
    return StreamingResponse(_read(job.file.fileno(), size), media_type=media, headers=headers)


def _read(fd: int, size: int) -> Iterator[bytes]:
    """The file's bytes in pieces, read by offset: downloads of one export running at once do not share a
    file position."""
    offset = 0
    while offset < size:
        piece = os.pread(fd, min(DOWNLOAD_CHUNK_BYTES, size - offset), offset)
        if not piece:
            return
        offset += len(piece)
        yield piece
