"""The loader: staged rows -> Dataverse, batch by batch, ledgered (DESIGN §5, §7).

Per batch: read which ids exist and their current values (`$filter` with `Microsoft.Dynamics.CRM.In`),
decide create / update / unchanged per row, commit the intents to the ledger, send (bulk messages or
`$batch` through the one Dataverse client), apply final states (state PATCHes in `$batch`, Win/Lose for
opportunities), then commit the outcome. Rows the server refuses are recorded with its message. The reads
and file downloads of the next batch run while a batch is sent (one batch ahead at most, load/batches.py
prepared_ahead); a record the sent batch wrote is read again before the next batch uses it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from migration_assets.clients.call_scope import current_counts, submit
from migration_assets.clients.dataverse.batch import BatchRequest
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.load import diff as ld
from migration_assets.load.batches import batches_of, prepared_ahead
from migration_assets.load.file_body import (
    OVERSIZE_CODE,
    FileBody,
    Oversize,
    max_raw_bytes,
    oversize_reason,
    read_capped,
    too_big,
)
from migration_assets.load.file_spool import FileSpool
from migration_assets.load.key_release import DUPLICATE_KEY, plain_keys, plan_releases, read_holders
from migration_assets.load.ledger import Intent, Ledger, Rejection
from migration_assets.load.lookups import (
    READ_CHUNK,
    LoadError,
    lookups_of,
    prefetch_key_binds,
    resolve_key_bind,
)
from migration_assets.load.staged_rows import RowList, RowSource
from migration_assets.mapping.ids import opportunityclose_id
from migration_assets.resources.progress import StepProgress

SCAN_PAGE = 5000  # Dataverse's largest page (reference §2.3)
# A target table of up to this many pages is read once per load instead of once per batch; a larger one
# (a customer's existing CRM) is left after that many pages and read per batch with In-queries.
SCAN_MAX_PAGES = 4
# Win/LoseOpportunity have no bulk form (reference §7.4): they go through `$batch`, which service protection
# counts as one request. 500 actions per batch keeps a closed opportunity at ~2 requests per 1,000 and, at the
# ~100 ms an action costs on a busy org, the batch well inside the 2-minute request timeout.
ACTION_BATCH_PARTS = 500
# A ledgered batch also stops at this many bytes of file bodies (base64, as sent), counted before they are
# read (a call recording at the mean of those so far): one request's worth, with room for that count to be
# short of the bodies; past MAX_REQUEST_VALUE_BYTES the client sends a batch in two requests (on `large`, the
# bound at 96 MB in both places split a third of the batches). The loader holds the files of two batches:
# the one it sends (as bodies, then as the request) and the next, read or downloaded meanwhile. Two requests'
# worth sent at once gained nothing against the emulator, whose one thread is the bound.
MAX_BATCH_FILE_BYTES = 96 * 1024 * 1024
# Close declares no size for a call recording: until the load has downloaded some, a recording counts as this
# many bytes towards MAX_BATCH_FILE_BYTES, then as the mean of those downloaded (TableLoader.undeclared_size).
# A few minutes of audio: the first two batches (cut before any recording is measured) stay within the bound.
UNDECLARED_FILE_BYTES = 4 * 1024 * 1024
# Columns WinOpportunity/LoseOpportunity set on the opportunity besides its state (reference §7.4).
CLOSE_ACTION_COLUMNS = ("actualclosedate", "actualvalue")
PARTY_CHUNK = 50  # activities per activityparty query (an OR of ids: the URL stays a few KB)
DOWNLOAD_WORKERS = 4  # attachments and recordings downloaded from Close in parallel (network-bound)
FILE_URL = "_file_url"  # the staged column with the Close URL of a row's file (mapping/annotation_staging.py)


@dataclass
class LoadStats:
    table: str
    staged: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    excluded: int = 0  # files above the upload limit: refused, listed for the admin, not errors
    state_changes: int = 0
    downloads: int = 0  # file bodies sent (downloaded now or fetched ahead)
    download_bytes: int = 0
    spooled_files: int = 0  # of them, fetched ahead by loaded/file_bodies
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    batches: int = 0
    seconds: float = 0.0
    bulk: bool = False  # written with CreateMultiple/UpdateMultiple (else `$batch`)
    scanned: bool = False  # existing rows read by one table scan (else per-batch In-queries)
    messages: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return self.created + self.updated + self.unchanged

    def metadata(self) -> dict[str, Any]:
        rate = (self.created + self.updated) / self.seconds if self.seconds > 0 else 0.0
        return {
            "staged": self.staged,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "state_changes": self.state_changes,
            "write_retries": self.retries,
            "write_throttled_429": self.throttled,
            "write_requests": self.requests,
            "batches": self.batches,
            "files_downloaded": self.downloads,
            "file_bytes": self.download_bytes,
            "files_fetched_ahead": self.spooled_files,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(rate, 1),
            "write_path": "bulk" if self.bulk else "$batch",
            "existing_read": "scan" if self.scanned else "in",
            "requests_per_1000": self.requests_per_1000(),
        }

    def requests_per_1000(self) -> float | None:
        """Write requests per 1,000 written records (None when nothing was written)."""
        written = self.created + self.updated
        return round(1000 * self.requests / written, 1) if written else None


FileBodies = dict[str, FileBody | Oversize | Exception]  # file URL -> its body, or why it is not sent


@dataclass
class PreparedBatch:
    """A batch ready to be written: its rows split, the current values of those that exist (by id) and the
    file bodies of those to create."""

    rows: Sequence[dict[str, Any]]
    counted: bool
    split: list[ld.SplitRow]
    ids: list[str]
    current: dict[str, dict[str, Any]]
    files: FileBodies


class TableLoader:
    def __init__(
        self,
        client: DataverseClient,
        ledger: Ledger,
        table: str,
        columns: Sequence[str],
        batch_rows: int,
        download: Callable[[str], Iterator[bytes]] | None = None,
        max_upload_bytes: int | None = None,
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.client, self.ledger, self.table, self.log = client, ledger, table, log
        # About how many rows the target table holds, when the caller knows (a delta: the staged table
        # it loaded before); None: unknown, the scan finds out within its page budget.
        self.target_rows_hint: int | None = None
        # File bodies fetched before the load (load/file_spool.py): taken from there, the rest downloaded.
        self.spool: FileSpool | None = None
        self.meta = client.metadata(table)
        self.pk = self.meta.primary_id
        self.batch_rows = batch_rows
        self.download = download
        self.max_upload = max_upload_bytes
        self.lookups = lookups_of(self.meta, columns, client.entity_set)
        self.sets = {lk.target: lk.entity_set for lk in self.lookups.values()}
        self.updatable = {a for a, m in self.meta.attributes.items() if m.valid_for_update} | {
            nav + ld.BIND
            for nav, lk in self.lookups.items()
            if self.meta.attributes.get(lk.attribute, None) is None
            or self.meta.attributes[lk.attribute].valid_for_update
        }
        self.clearable = frozenset(
            a
            for a, m in self.meta.attributes.items()
            if ld.clearable(m.attribute_type, m.type_name, m.is_custom, m.required_level)
        )
        plain = [
            c
            for c in columns
            if not c.startswith("_")
            and not c.endswith(ld.BIND)
            and c in self.meta.attributes
            and c not in ld.NOT_COMPARED
        ]
        state = [c for c in ("statecode", "statuscode") if c in self.meta.attributes]
        # Win/Lose also set these: their current values are the before-image a rollback puts back.
        closing = [c for c in CLOSE_ACTION_COLUMNS if table == "opportunity" and c in self.meta.attributes]
        self.select = sorted(
            {self.pk, *plain, *state, *closing, *(f"_{lk.attribute}_value" for lk in self.lookups.values())}
        )
        self.stats = LoadStats(table)
        # The state a new record is created in: statecode 0 with its default status reason.
        state_attr = self.meta.attributes.get("statecode")
        opened = next(
            (o.default_status for o in (state_attr.options if state_attr else []) if o.value == 0), None
        )
        self.created_state = {(0, -1)} | ({(0, int(opened))} if opened is not None else set())
        self._key_ids: dict[tuple[str, str, str], str | None] = {}
        # The second pass (lookups into the same table) compares only those lookups, which the first pass
        # never writes: their values as the first pass read them (None on the records it created) are
        # still current, so the second pass does not read the same records again.
        self._self_binds: list[str] = []
        self._known_binds: dict[str, dict[str, Any]] = {}
        # Current values of the whole target table, read once before the first write (None: read per
        # batch). Ids this loader has sent since are read again, as the snapshot no longer holds them.
        self._snapshot: dict[str, dict[str, Any]] | None = None
        self._touched: set[str] = set()
        # Bodies downloaded for files Close declared no size for: how many, and their bytes.
        self._undeclared_files = self._undeclared_bytes = 0
        # Ids written since the batch being prepared ahead started reading (load/batches.py prepared_ahead).
        self._written_while_preparing: set[str] = set()
        # Alternate keys over plain columns, and the whole staged table's key columns (record id -> columns;
        # set by the caller when it loads only part of the table): what decides whether a record holding a
        # key value a row wants may give it up (load/key_release.py).
        self.keys = plain_keys(self.meta)
        self.staged_keys: dict[str, dict[str, Any]] | None = None
        # Ids of rows whose activity parties are as the last load wrote them (a delta sets it from the
        # snapshot, load/snapshot.py): their parties are neither read nor rewritten.
        self.parties_as_loaded: frozenset[str] = frozenset()

    def known_key_binds(self, binds: dict[tuple[str, str, str], str]) -> None:
        """Binds by alternate key already resolved elsewhere ((table, key column, value) -> "/set(id)", e.g.
        currencies from the staging cache): not looked up in the target again."""
        for key, bind in binds.items():
            self._key_ids.setdefault(key, bind)

    # -- reads ------------------------------------------------------------------------------------------
    def scan_target(self, staged: int) -> bool:
        """Read the target table once (paged, `$select` of the compared columns) when that costs fewer
        requests than the per-batch In-queries it replaces; give up past that budget (a large table).
        True when the snapshot is in place. A load that one In-query covers (a small delta) is not
        worth a scan: it would read up to a page of a large target to save nothing."""
        in_queries = -(-staged // READ_CHUNK)
        if in_queries < 2:
            return False
        if self.target_rows_hint is not None and -(-self.target_rows_hint // SCAN_PAGE) >= in_queries:
            return False  # the target is known to need at least as many pages as the In-queries cost
        budget = min(SCAN_MAX_PAGES, in_queries - 1)
        found: dict[str, dict[str, Any]] = {}
        pages = self.client.query_pages(
            self.table, select=self.select, page_size=SCAN_PAGE, annotations=bool(self.lookups)
        )
        for n, page in enumerate(pages, start=1):
            if n > budget:  # leaving the loop stops the paging: no further page is requested
                self.log(
                    f"{self.table}: target has over {budget * SCAN_PAGE} rows; existing ids read per batch"
                )
                return False
            for rec in page:
                found[str(rec[self.pk]).lower()] = ld.current_payload(rec, self.lookups, self.sets)
        self._snapshot = found
        return True

    def current_of(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Current values of the ids that exist: from the snapshot while none of them was written by this
        loader since it was read, else from the server (In-queries)."""
        snap = self._snapshot
        if snap is not None and self._touched.isdisjoint(ids):
            return {i: snap[i] for i in ids if i in snap}
        return self.read_current(ids)

    def read_current(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        filters = [
            "Microsoft.Dynamics.CRM.In(PropertyName='{}',PropertyValues=[{}])".format(
                self.pk, ",".join(f"'{i}'" for i in ids[start : start + READ_CHUNK])
            )
            for start in range(0, len(ids), READ_CHUNK)
        ]
        for rec in self.client.query_each(
            self.table, filters, select=self.select, annotations=bool(self.lookups)
        ):
            found[str(rec[self.pk]).lower()] = ld.current_payload(rec, self.lookups, self.sets)
        return found

    def read_parties(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Current activity parties of existing activities (payload form), a few ids per query."""
        found: dict[str, list[dict[str, Any]]] = {}
        select = ["participationtypemask", "addressused", "_partyid_value", "_activityid_value"]
        for start in range(0, len(ids), PARTY_CHUNK):
            flt = " or ".join(f"_activityid_value eq {i}" for i in ids[start : start + PARTY_CHUNK])
            for rec in self.client.query("activityparty", select=select, filter=flt, annotations=True):
                activity = str(rec.get("_activityid_value") or "").lower()
                logical = rec.get(f"_partyid_value{ld.LOGICAL_ANN}")
                sets = {logical: self.client.entity_set(logical)} if logical else {}
                found.setdefault(activity, []).append(ld.current_party(rec, sets))
        return found

    # -- one batch ----------------------------------------------------------------------------------------
    def load(self, rows: Sequence[dict[str, Any]] | RowSource) -> LoadStats:
        """Write `rows` (a list, or a source read chunk by chunk: load/staged_rows.py), ledgered batch by
        batch; only one chunk of rows is held at a time."""
        source: RowSource = RowList(list(rows)) if isinstance(rows, Sequence) else rows
        started = time.monotonic()
        before = self._calls()
        total = source.total
        self.stats.staged = total
        # Inside the counted window: the probe is a request of this load like any other. UpdateMultiple is
        # asked with it, so that its answer is recorded with the first load (later runs update: they ask
        # neither, load/bulk_support.py).
        self.stats.bulk = self.client.use_bulk_messages and self.client.supports_bulk(
            "CreateMultiple", self.table
        )
        if self.client.use_bulk_messages:
            self.client.supports_bulk("UpdateMultiple", self.table)
        if total:
            self.stats.scanned = self.scan_target(total)
            for nav, lk in self.lookups.items():
                prefetch_key_binds(self.client, lk, source.values(nav + ld.BIND), self._key_ids)
        # Lookups into the same table (a contact's assistant is a contact) may point at a row of a later
        # batch or a parallel request: they are written in a second pass, once every row exists.
        self._self_binds = [nav + ld.BIND for nav, lk in self.lookups.items() if lk.target == self.table]
        second: list[dict[str, Any]] = []
        # Records written (the second pass only completes lookups of the same records): the run's log and
        # the console show done of total, rate and ETA (file bodies of annotations travel in these batches).
        progress = StepProgress(f"loaded/{self.table}", total, log=self.log)
        n = 0
        # While one batch is sent, the next first-pass batch is read and its files downloaded (network-bound
        # both ways: the two overlap). A second-pass batch depends on what the first pass wrote: it is
        # prepared only after the batch before it is sent.
        ready = prepared_ahead(self._batches(source, second), self._prepare, lambda item: item[1])
        with closing(ready):
            for batch in ready:
                n += 1
                self._send(self._still_current(batch))
                if batch.counted:
                    progress.advance(len(batch.split))
        progress.finish()
        self.stats.batches = n
        after = self._calls()
        self.stats.requests = after[0] - before[0]
        self.stats.retries = after[1] - before[1]
        self.stats.throttled = after[2] - before[2]
        self.stats.seconds = time.monotonic() - started
        return self.stats

    def _calls(self) -> tuple[int, int, int]:
        """Requests, retries and 429s so far: the step's own when it runs in a scope (other steps may use
        the same client meanwhile), else the client's."""
        mine = current_counts("dataverse")
        if mine is not None:
            return mine["requests"], mine["retries"], mine["throttled_429"]
        s = self.client.stats().values()
        return (
            sum(u.get("requests", 0) for u in s),
            sum(u.get("retries", 0) for u in s),
            sum(u.get("throttled", 0) for u in s),
        )

    def resolve_key_bind(self, nav: str, value: str) -> str | None:
        lk = self.lookups.get(nav)
        return value if lk is None else resolve_key_bind(self.client, lk, value, self._key_ids)

    def _resolve_binds(self, s: ld.SplitRow, rid: str, refused: list[Rejection]) -> bool:
        for col, value in list(s.payload.items()):
            if col.endswith(ld.BIND) and isinstance(value, str) and "=" in value:
                resolved = self.resolve_key_bind(col[: -len(ld.BIND)], value)
                if resolved is None:
                    refused.append(
                        Rejection(
                            self.table,
                            rid,
                            s.meta.get("_close_id"),
                            "create",
                            404,
                            "0x80048d02",
                            f"{col}: no {value} in the target (a record with the specified key values does not exist)",
                        )
                    )
                    return False
                s.payload[col] = resolved
        return True

    def _batches(
        self, source: RowSource, second: list[dict[str, Any]]
    ) -> Iterator[tuple[Sequence[dict[str, Any]], bool]]:
        """The batches of the load in order, each with `counted`: the first pass over the source (lookups
        into the same table left empty), then the second pass that completes those lookups (`second` fills
        up during the first pass and is cut into batches only after it).

        Rows carrying a file go first: their pace is the bytes they move, while the tables loading beside
        this one (defs/loaded/tables.py) wait on the service's budget. The rows without a file, which cost
        that budget and no bytes, ride in the last file batches, once those tables are done and the budget
        is this load's alone (batches_of). Two streamed scans, no sort."""
        self_binds = self._self_binds

        def first_pass(chunks: Iterator[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
            for chunk in chunks:
                second.extend(
                    {k: r.get(k) for k in (self.pk, "_close_id", *self_binds)}
                    for r in chunk
                    if any(r.get(c) is not None for c in self_binds)
                )
                if self_binds:
                    chunk = [{k: (None if k in self_binds else v) for k, v in r.items()} for r in chunk]
                yield from chunk

        with_files = first_pass(source.chunks(column=FILE_URL))
        without = first_pass(source.chunks(column=FILE_URL, is_set=False))
        files = source.count(FILE_URL)
        for batch in batches_of(
            with_files,
            self.batch_rows,
            MAX_BATCH_FILE_BYTES,
            self.undeclared_size,
            fill=without,
            counts=(files, source.total - files),
        ):
            yield batch, True
        for batch in batches_of(second, self.batch_rows, MAX_BATCH_FILE_BYTES):
            yield batch, False

    def _prepare(
        self, item: tuple[Sequence[dict[str, Any]], bool], known: FileBodies | None = None
    ) -> PreparedBatch:
        """What a batch needs before anything is written: its rows split, the current values of those that
        exist, the file bodies of those to create (downloaded). Only reads: it may run while the batch
        before it is sent (prepared_ahead). `counted` False: a second pass over rows already counted (only
        its updates of rows that existed before this run, and its rejections, add to the figures)."""
        rows, counted = item
        split = [ld.split_row(r) for r in rows]
        ids = [str(s.payload.get(self.pk) or "").lower() for s in split]
        if any(not i for i in ids):
            raise LoadError(f"staged.{self.table} has rows without a primary key '{self.pk}'")
        if counted:
            current = self.current_of(ids)
        else:
            current = {i: self._known_binds[i] for i in ids if i in self._known_binds}
            unknown = [i for i in ids if i not in current]
            if unknown:
                current.update(self.current_of(unknown))
        creating = [sp for sp, rid in zip(split, ids, strict=True) if rid not in current]
        return PreparedBatch(rows, counted, split, ids, current, self._download_all(creating, known))

    def _still_current(self, batch: PreparedBatch) -> PreparedBatch:
        """The batch, read again if the batch sent while it was prepared wrote one of its records (a key
        released by load/key_release.py, a row staged twice): what it read of those may be stale. Files
        already downloaded are kept."""
        written, self._written_while_preparing = self._written_while_preparing, set()
        if not batch.counted or written.isdisjoint(batch.ids):  # a second-pass batch is never read ahead
            return batch
        return self._prepare((batch.rows, batch.counted), batch.files)

    def undeclared_size(self) -> int:
        """The size to expect of a file Close declares none for: the mean of those downloaded so far."""
        if not self._undeclared_files:
            return UNDECLARED_FILE_BYTES
        return self._undeclared_bytes // self._undeclared_files

    def _touch(self, ids: Iterable[str]) -> None:
        """Record ids this loader is about to write: their snapshot values (and a prepared batch's reads of
        them) are no longer current."""
        ids = list(ids)
        self._touched.update(ids)
        self._written_while_preparing.update(ids)

    def _send(self, batch: PreparedBatch) -> None:
        """One ledgered batch: decide create / update / unchanged per row, ledger, write, apply states."""
        split, ids, current, files = batch.split, batch.ids, batch.current, batch.files
        counted = batch.counted
        if counted and self._self_binds:
            keep = (self.pk, *self._self_binds)
            self._known_binds.update({i: {c: current[i].get(c) for c in keep} for i in ids if i in current})
        creates: list[tuple[int, dict[str, Any]]] = []
        updates: list[tuple[int, ld.RowPlan]] = []
        states: dict[int, tuple[int, int]] = {}
        refused: list[Rejection] = []
        party_nav = f"{self.table}_activity_parties"
        current_parties = self.read_parties(
            [
                rid
                for s, rid in zip(split, ids, strict=True)
                if rid in current and s.meta.get("_parties") and rid not in self.parties_as_loaded
            ]
        )
        for i, (s, rid) in enumerate(zip(split, ids, strict=True)):
            if not self._resolve_binds(s, rid, refused):
                continue
            want = ld.desired_state(s.meta, self.table)
            if rid in current:
                plan = ld.plan_existing(
                    s.payload, current[rid], want, self.updatable, s.nulls & self.clearable
                )
                try:
                    wanted_parties = ld.parties(s.meta)
                except ValueError as exc:
                    refused.append(
                        Rejection(self.table, rid, s.meta.get("_close_id"), "update", None, None, str(exc))
                    )
                    continue
                had = current_parties.get(rid, [])
                if (
                    wanted_parties is not None
                    and rid not in self.parties_as_loaded
                    and not ld.same_parties(wanted_parties, had)
                ):
                    # The whole party list is replaced (from/to/cc...); its old list is the before-image.
                    plan.changes[party_nav], plan.before[party_nav] = wanted_parties, had
                if plan.state is not None and self._is_action(plan.state):
                    for column in CLOSE_ACTION_COLUMNS:  # what the action overwrites, for the rollback
                        plan.before.setdefault(column, current[rid].get(column))
                if plan.unchanged:
                    self.stats.unchanged += counted
                else:
                    updates.append((i, plan))
                    if plan.state is not None:
                        states[i] = plan.state
                continue
            body = self._create_body(s, rid, refused, files)
            if body is not None:
                creates.append((i, body))
                if want is not None and want not in self.created_state:
                    states[i] = want  # a record is created open: only another final state costs a PATCH
        files.clear()  # the bodies hold the encoded files now: one form of each file while the batch is sent
        if refused:
            self.ledger.reject(refused)
            oversize = sum(1 for r in refused if r.code == OVERSIZE_CODE)
            self.stats.rejected += len(refused) - oversize
            self.stats.excluded += oversize
        intents = [Intent(self.table, ids[i], split[i].meta.get("_close_id"), "created") for i, _ in creates]
        intents += [
            Intent(self.table, ids[i], split[i].meta.get("_close_id"), "updated", p.before)
            for i, p in updates
        ]
        if not intents:
            return
        seqs = self.ledger.begin(intents)  # durable before anything is sent
        self._touch(it.record_id for it in intents)
        seq_of = {
            idx: seq for idx, seq in zip([i for i, _ in creates] + [i for i, _ in updates], seqs, strict=True)
        }
        failed: dict[int, Rejection] = {}
        if creates:
            res = self.client.create_multiple(self.table, [b for _, b in creates])
            for err in res.rejected:
                i = creates[err.index][0]
                failed[i] = Rejection(
                    self.table,
                    ids[i],
                    split[i].meta.get("_close_id"),
                    "create",
                    err.status,
                    err.code,
                    err.message,
                )
        upd_rows = [(i, {self.pk: ids[i], **p.changes}) for i, p in updates if p.changes]
        if upd_rows:
            res = self.client.update_multiple(self.table, [r for _, r in upd_rows])
            for err in res.rejected:
                i = upd_rows[err.index][0]
                failed[i] = Rejection(
                    self.table,
                    ids[i],
                    split[i].meta.get("_close_id"),
                    "update",
                    err.status,
                    err.code,
                    err.message,
                )
        # After the batch's updates: a holder whose own staged row moves its key has given it up by now.
        self._retry_key_clashes(creates, "create", ids, split, failed)
        self._retry_key_clashes(upd_rows, "update", ids, split, failed)
        closing = {i: st for i, st in states.items() if i not in failed and self._is_action(st)}
        # The opportunityclose activity each Win/Lose creates, under an id of ours: ledgered before the
        # action is sent, so that a rollback deletes it with the rest of the run.
        close_seqs = self.ledger.begin(
            [
                Intent(
                    "opportunityclose", opportunityclose_id(ids[i]), split[i].meta.get("_close_id"), "created"
                )
                for i in closing
            ]
        )
        state_errors = self._apply_states({i: s for i, s in states.items() if i not in failed}, ids, split)
        done = [seq for i, seq in seq_of.items() if i not in failed]
        self.ledger.finish(done, [(seq_of[i], r) for i, r in failed.items()])
        # A closing the server refused created nothing: its intent stays pending (a rollback finds it gone).
        refused_ids = {e.record_id for e in state_errors}
        self.ledger.finish(
            [seq for i, seq in zip(closing, close_seqs, strict=True) if ids[i] not in refused_ids]
        )
        if state_errors:
            self.ledger.reject(state_errors)
        self.stats.created += sum(1 for i, _ in creates if i not in failed)
        if counted and self._self_binds:
            self._known_binds.update(
                {
                    ids[i]: {self.pk: ids[i], **dict.fromkeys(self._self_binds)}
                    for i, _ in creates
                    if i not in failed
                }
            )
        if counted:
            self.stats.updated += sum(1 for i, _ in updates if i not in failed)
        self.stats.rejected += len(failed) + len(state_errors)

    def _retry_key_clashes(
        self,
        written: Sequence[tuple[int, dict[str, Any]]],
        operation: str,
        ids: list[str],
        split: list[ld.SplitRow],
        failed: dict[int, Rejection],
    ) -> None:
        """Rows refused because another record holds their alternate-key value: release the holders that
        staging no longer wants with it (ledgered, before-image kept), then write those rows again;
        `failed` keeps only the rows still refused (load/key_release.py)."""
        clashing = [(i, body) for i, body in written if i in failed and failed[i].code == DUPLICATE_KEY]
        if not clashing or not self.keys:
            return
        wanted = {ids[i]: body for i, body in clashing}
        holders = read_holders(self.client, self.meta, self.keys, wanted.values())
        releases, blocked = plan_releases(wanted, holders, self.keys, self.staged_keys)
        for rid, why in blocked.items():
            self.log(f"{self.table}({rid}): key clash kept: {why}")
        if not releases:
            return
        seqs = self.ledger.begin(
            [Intent(self.table, r.record_id, None, "released", r.before) for r in releases]
        )
        self._touch(r.record_id for r in releases)
        res = self.client.update_multiple(
            self.table, [{self.pk: r.record_id, **dict.fromkeys(r.before)} for r in releases]
        )
        refused = {e.index: e for e in res.rejected}
        self.ledger.finish(
            [seq for n, seq in enumerate(seqs) if n not in refused],
            [
                (
                    seqs[n],
                    Rejection(self.table, releases[n].record_id, None, "update", e.status, e.code, e.message),
                )
                for n, e in refused.items()
            ],
        )
        self.log(f"{self.table}: released the key of {len(releases) - len(refused)} superseded record(s)")
        write = self.client.create_multiple if operation == "create" else self.client.update_multiple
        res = write(self.table, [body for _, body in clashing])
        again = {e.index: e for e in res.rejected}
        for n, (i, _) in enumerate(clashing):
            e = again.get(n)
            if e is None:
                del failed[i]
            else:
                failed[i] = Rejection(
                    self.table, ids[i], split[i].meta.get("_close_id"), operation, e.status, e.code, e.message
                )

    def _too_big(self, size: Any) -> bool:
        return too_big(size, self.max_upload)

    def _spooled(self, url: str) -> FileBody | Oversize | None:
        """The body loaded/file_bodies fetched, judged by this load's upload limit (the prefetch may have
        measured it under another): an oversize note that now fits is downloaded again."""
        assert self.spool is not None
        spooled = self.spool.get(url)
        keep = None if self.max_upload is None else max_raw_bytes(self.max_upload)
        if isinstance(spooled, Oversize):
            return spooled if keep is not None and spooled.size > keep else None
        if spooled is not None and keep is not None and spooled.size > keep:
            return Oversize(spooled.size, complete=True)
        if spooled is not None:
            self.stats.spooled_files += 1
        return spooled

    def _download_all(self, rows: Sequence[ld.SplitRow], known: FileBodies | None = None) -> FileBodies:
        """The file bodies of the rows about to be created, downloaded in parallel and measured as they
        arrive (Close's declared size can be smaller than the body: one past the limit is refused, and
        never held whole); a failed download is kept as its exception (the row is then rejected with it).
        Bodies in `known` (downloaded before) are taken from there."""
        wanted = {
            str(r.meta[FILE_URL])
            for r in rows
            if r.meta.get(FILE_URL)
            and "documentbody" not in r.payload
            and not self._too_big(r.meta.get("_file_size"))
        }
        have = {url: known[url] for url in wanted if url in known} if known else {}
        if self.spool is not None:  # fetched ahead by loaded/file_bodies
            for url in wanted - have.keys():
                if (spooled := self._spooled(url)) is not None:
                    have[url] = spooled
        urls = sorted(wanted - have.keys())
        if not urls:
            return have
        download = self.download
        if download is None:
            raise LoadError(
                f"staged.{self.table} has file URLs but no Close client was given to download them"
            )

        def fetch(url: str) -> FileBody | Oversize | Exception:
            try:
                data = read_capped(download(url), self.max_upload)
                # Encoded as it arrives: the raw bytes are not kept beside their base64 form.
                return (
                    data
                    if isinstance(data, Oversize)
                    else FileBody(len(data), base64.b64encode(data).decode())
                )
            except Exception as exc:  # noqa: BLE001 - any download failure rejects its row with the reason
                return exc

        with ThreadPoolExecutor(max_workers=min(DOWNLOAD_WORKERS, len(urls))) as pool:
            futures = [submit(pool, fetch, url) for url in urls]
            return {**have, **{url: f.result() for url, f in zip(urls, futures, strict=True)}}

    def _create_body(
        self,
        s: ld.SplitRow,
        rid: str,
        refused: list[Rejection],
        files: FileBodies,
    ) -> dict[str, Any] | None:
        body = dict(s.payload)
        close_id = s.meta.get("_close_id")
        try:
            parties = ld.parties(s.meta)
        except ValueError as exc:
            refused.append(Rejection(self.table, rid, close_id, "create", None, None, str(exc)))
            return None
        if parties is not None:
            body[f"{self.table}_activity_parties"] = parties
        url = s.meta.get(FILE_URL)
        if url and "documentbody" not in body:
            size = s.meta.get("_file_size")
            data = None if self._too_big(size) else files[str(url)]
            if data is None or isinstance(data, Oversize):
                # Declared or measured above the limit: an expected exclusion (OVERSIZE_CODE), not sent.
                reason = oversize_reason(size, self.max_upload or 0, data)
                refused.append(Rejection(self.table, rid, close_id, "download", None, OVERSIZE_CODE, reason))
                return None
            if isinstance(data, Exception):
                refused.append(
                    Rejection(
                        self.table, rid, close_id, "download", None, None, f"download of {url} failed: {data}"
                    )
                )
                return None
            self.stats.downloads += 1
            self.stats.download_bytes += data.size
            if size is None:
                self._undeclared_files += 1
                self._undeclared_bytes += data.size
            body["documentbody"] = data.base64
        return body

    def _state_request(self, rid: str, state: int, status: int, meta: dict[str, Any]) -> BatchRequest:
        headers = dict(self.client.write_headers)
        if self.table == "opportunity" and state in (1, 2):
            # Won/Lost only through the actions (reference §7.4); actions are allowed in $batch.
            close: dict[str, Any] = {
                "activityid": opportunityclose_id(rid),
                "subject": "Won" if state == 1 else "Lost",
                "opportunityid@odata.bind": f"/{self.meta.entity_set_name}({rid})",
            }
            for key, value in (
                ("actualend", meta.get("_close_date")),
                ("actualrevenue", meta.get("_actual_revenue")),
            ):
                if value is not None:
                    close[key] = value
            action = "WinOpportunity" if state == 1 else "LoseOpportunity"
            return BatchRequest("POST", action, {"Status": status, "OpportunityClose": close}, headers)
        body = {"statecode": state} if status == -1 else {"statecode": state, "statuscode": status}
        return BatchRequest(
            "PATCH", f"{self.meta.entity_set_name}({rid})", body, {**headers, "If-Match": "*"}
        )

    def _apply_states(
        self, states: dict[int, tuple[int, int]], ids: list[str], split: list[ld.SplitRow]
    ) -> list[Rejection]:
        """Final states: UpdateMultiple on bulk-capable tables, else (and for Win/Lose actions) `$batch`
        (continue-on-error). An action is not idempotent: when a retried batch finds an opportunity
        already closed the way we want, that counts as done."""
        bulk = {i: st for i, st in states.items() if self.stats.bulk and not self._is_action(st)}
        errors = self._bulk_states(bulk, ids, split) if bulk else []
        order = [i for i in states if i not in bulk]
        items = [self._state_request(ids[i], *states[i], split[i].meta) for i in order]
        size = ACTION_BATCH_PARTS if self.table == "opportunity" else self.client.batch_request_size
        for start in range(0, len(items), size):
            parts = self.client.execute_batch(items[start : start + size])  # type: ignore[arg-type]
            for offset, part in enumerate(parts):
                i = order[start + offset]
                if (part is not None and part.ok) or self._already_in_state(ids[i], states[i]):
                    self.stats.state_changes += 1
                    continue
                code, message = (
                    (part.error or ("", part.reason)) if part is not None else ("", "no answer in $batch")
                )
                operation = (
                    {1: "win", 2: "lose"}.get(states[i][0], "state")
                    if self.table == "opportunity"
                    else "state"
                )
                status = part.status if part is not None else None
                errors.append(
                    Rejection(
                        self.table, ids[i], split[i].meta.get("_close_id"), operation, status, code, message
                    )
                )
        return errors

    def _is_action(self, state: tuple[int, int]) -> bool:
        return self.table == "opportunity" and state[0] in (1, 2)

    def _bulk_states(
        self, states: dict[int, tuple[int, int]], ids: list[str], split: list[ld.SplitRow]
    ) -> list[Rejection]:
        """Plain state changes on a bulk-capable table as UpdateMultiple of statecode/statuscode: the same
        Update the `$batch` PATCH is (reference §7: a state is set by an update after create), at 500 rows
        per request instead of 100. Microsoft documents Update of StateCode/StatusCode as the replacement of
        the deprecated SetStateRequest (power-apps/developer/data-platform/special-update-operation-behavior),
        and UpdateMultiple as the bulk form of Update; the status is always sent with the state, as that
        page asks, except where the staged row leaves it to the table's default (-1). It never creates (an update of a missing id fails), and repeating it
        after a kill is harmless. A refused row is rejected with the server's message; the others land."""
        order = list(states)
        rows = []
        for i in order:
            state, status = states[i]
            rows.append(
                {self.pk: ids[i], "statecode": state, **({} if status == -1 else {"statuscode": status})}
            )
        res = self.client.update_multiple(self.table, rows)
        refused = {e.index: e for e in res.rejected}
        errors: list[Rejection] = []
        for n, i in enumerate(order):
            e = refused.get(n)
            if e is None:
                self.stats.state_changes += 1
                continue
            errors.append(
                Rejection(
                    self.table, ids[i], split[i].meta.get("_close_id"), "state", e.status, e.code, e.message
                )
            )
        return errors

    def _already_in_state(self, rid: str, want: tuple[int, int]) -> bool:
        current = self.client.get(self.table, rid, ["statecode", "statuscode"]) or {}
        return current.get("statecode") == want[0] and (want[1] == -1 or current.get("statuscode") == want[1])
