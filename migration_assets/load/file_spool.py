"""File bodies fetched from Close ahead of the annotation load, kept on disk in the form Dataverse takes.

Attachments and call recordings are the load's slowest part: each is downloaded from Close, encoded to
base64 and sent. None of the download needs Dataverse, so `loaded/file_bodies` fetches them while the
tables before annotation load (those wait on Dataverse's service protection, which leaves the machine
idle), and `loaded/annotation` then only reads and sends them. Nothing is kept in memory: a body is
streamed from Close to its spool file, encoded as it arrives, and measured against the upload limit as
`read_capped` measures a download (a body past the limit leaves only a note of its size).

The spool is a cache, never the truth: a body missing from it (not fetched, a failed download, a spool
removed) is downloaded by the load as before; a failed download there rejects its row with the reason.
One file per URL (its SHA-256), written under a temporary name and renamed when complete, so a body is
either whole or absent. The load empties the spool once every body in it was sent.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from migration_assets.clients.call_scope import submit
from migration_assets.load.file_body import DATAVERSE_MAX_UPLOAD, FileBody, Oversize, max_raw_bytes
from migration_assets.load.ledger import SCHEMA as LEDGER_SCHEMA
from migration_assets.resources.warehouse import quote, table_exists

BODY = ".b64"
OVERSIZE = ".oversize"
# Stop fetching ahead while the disk holding the spool has less than this free: the load downloads the
# rest itself, and the warehouse (and DuckDB's spill files beside it) keep room to grow.
MIN_FREE_BYTES = 2 * 1024**3


def spool_path_for(warehouse_path: str) -> Path | None:
    """The spool beside a warehouse file (None for an in-memory warehouse: nothing is written to disk)."""
    return None if warehouse_path == ":memory:" else Path(warehouse_path + ".file_bodies")


def _read_ascii(path: Path) -> str:
    """The text of an ASCII file, decoded from its pages in the OS's cache: `read_bytes().decode()` would
    copy a ~50 MB body twice into new memory (bytes, then text), each page of it a fault; a mapping of the
    file copies it once (measured: 0.77 s instead of 1.41 s per 1.4 GB)."""
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return ""  # an empty file cannot be mapped
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return str(mapped, "ascii")


class FileSpool:
    """A directory of file bodies keyed by their Close URL: base64 text, or a note of an oversize body."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _stem(self, url: str) -> Path:
        return self.directory / hashlib.sha256(url.encode()).hexdigest()

    def has(self, url: str) -> bool:
        stem = self._stem(url)
        return stem.with_suffix(BODY).exists() or stem.with_suffix(OVERSIZE).exists()

    def get(self, url: str) -> FileBody | Oversize | None:
        """The fetched body (or its oversize note); None when it is not in the spool."""
        stem = self._stem(url)
        try:
            text = _read_ascii(stem.with_suffix(BODY))
        except FileNotFoundError:
            try:
                note = json.loads(stem.with_suffix(OVERSIZE).read_text())
            except FileNotFoundError:
                return None
            return Oversize(int(note["size"]), bool(note["complete"]))
        # base64: 3 bytes per 4 digits, less one per "=" of the last group
        size = len(text) // 4 * 3 - text[-2:].count("=")
        return FileBody(size, text)

    def fetch(self, url: str, chunks: Iterable[bytes], max_base64: int | None) -> int | Oversize:
        """Stream `chunks` (the body Close serves at `url`) into the spool: its size, or `Oversize` as
        `read_capped` measures it (a body past the limit is noted, never kept)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stem = self._stem(url)
        partial = stem.with_name(f"{stem.name}.{os.getpid()}.{id(chunks):x}.part")
        keep = None if max_base64 is None else max_raw_bytes(max_base64)
        measure_to = max_raw_bytes(max(DATAVERSE_MAX_UPLOAD, max_base64 or 0))
        size, carry, over = 0, b"", False
        it: Iterator[bytes] = iter(chunks)
        try:
            with open(partial, "wb", opener=_private) as out:
                for chunk in it:
                    size += len(chunk)
                    if keep is not None and size > keep:
                        over = True  # from here on only the count matters
                        if size > measure_to:
                            break
                        continue
                    data = carry + chunk if carry else chunk
                    whole = len(data) - len(data) % 3  # base64 encodes groups of 3 bytes
                    out.write(binascii.b2a_base64(data[:whole], newline=False))
                    carry = data[whole:]
                if not over:
                    out.write(binascii.b2a_base64(carry, newline=False))
            if over:
                result = Oversize(size, complete=size <= measure_to)
                partial.write_text(json.dumps({"size": result.size, "complete": result.complete}))
                partial.replace(stem.with_suffix(OVERSIZE))
                return result
            partial.replace(stem.with_suffix(BODY))
            return size
        finally:
            partial.unlink(missing_ok=True)
            close = getattr(it, "close", None)
            if close is not None:
                close()  # an abandoned HTTP stream goes back to its pool

    def bytes_held(self) -> int:
        if not self.directory.exists():
            return 0
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.suffix == BODY)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)  # customer files: readable by the tool's user only


@dataclass
class PrefetchResult:
    wanted: int = 0  # files the load will send
    already: int = 0  # in the spool before this run
    fetched: int = 0
    fetched_bytes: int = 0  # as downloaded (raw)
    oversize: int = 0  # measured past the upload limit: noted, not kept
    left_to_load: int = 0  # past the byte budget or the free-space floor: the load downloads them
    failed: dict[str, str] = field(default_factory=dict)  # url -> reason (the load tries again)

    def metadata(self) -> dict[str, int | str]:
        meta: dict[str, int | str] = {
            "files_wanted": self.wanted,
            "files_already_spooled": self.already,
            "files_fetched": self.fetched,
            "bytes_fetched": self.fetched_bytes,
            "files_oversize": self.oversize,
            "files_left_to_the_load": self.left_to_load,
            "downloads_failed": len(self.failed),
        }
        if self.failed:
            url, reason = next(iter(self.failed.items()))
            meta["first_failure"] = f"{url}: {reason}"[:500]
        return meta


def prefetch(
    spool: FileSpool,
    files: Sequence[tuple[str, int | None]],
    download: Callable[[str], Iterable[bytes]],
    max_base64: int | None,
    *,
    budget_bytes: int,
    workers: int,
    guess_size: int,
    advance: Callable[[int], None] = lambda _n: None,
    free_bytes: Callable[[], int] | None = None,
) -> PrefetchResult:
    """Fetch `files` ((url, declared size) in load order) into the spool, `workers` at a time, while the bytes
    fetched plus those under way stay within `budget_bytes` and the disk keeps MIN_FREE_BYTES free. A file
    under way counts at its declared size; one Close declares no size for (a call recording) at the mean of
    those fetched so far, `guess_size` until one is: counting every recording at the guess filled the
    budget at a fraction of it on `large`. A failed download is noted and left to the load; `advance` gets
    each file done."""
    free = free_bytes or (lambda: _free_bytes(spool.directory))
    first: dict[str, int | None] = {}
    for url, size in files:
        first.setdefault(url, size)  # each URL once, at its first place
    unique = list(first.items())
    result = PrefetchResult(wanted=len(unique))
    todo: list[tuple[str, int | None]] = []
    for url, size in unique:
        if spool.has(url):
            result.already += 1
        else:
            todo.append((url, size))
    advance(result.already)
    pending: dict[Future[int | Oversize], tuple[str, int | None, int]] = {}  # url, declared, counted as
    undeclared = [0, 0]  # bodies fetched that Close declared no size for, and their bytes

    def guess() -> int:
        return undeclared[1] // undeclared[0] if undeclared[0] else guess_size

    def committed() -> int:  # bytes fetched, plus those under way as expected
        return result.fetched_bytes + sum(expected for _, _, expected in pending.values())

    def settle_some() -> None:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in done:
            url, declared, _ = pending.pop(fut)
            try:
                body = fut.result()
            except Exception as exc:  # noqa: BLE001 - the load downloads it again, and rejects it with the reason
                result.failed[url] = f"{type(exc).__name__}: {exc}"
            else:
                if isinstance(body, Oversize):
                    result.oversize += 1
                else:
                    result.fetched += 1
                    result.fetched_bytes += body
                    if declared is None:
                        undeclared[0] += 1
                        undeclared[1] += body
            advance(1)

    def fetch_one(url: str) -> int | Oversize:
        return spool.fetch(url, download(url), max_base64)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="file-prefetch")
    try:
        for n, (url, size) in enumerate(todo):
            # A few queued; past the budget, those under way land first (they may be smaller than expected).
            while pending and (
                len(pending) >= 2 * max(1, workers)
                or committed() + (guess() if size is None else size) > budget_bytes
            ):
                settle_some()
            expected = guess() if size is None else size
            if committed() + expected > budget_bytes or free() - expected * 4 // 3 < MIN_FREE_BYTES:
                result.left_to_load = len(todo) - n
                break
            pending[submit(pool, fetch_one, url)] = (url, size, expected)
        while pending:
            settle_some()
    finally:  # interrupted (`advance` raises): the queued downloads are dropped, the running ones end
        pool.shutdown(wait=True, cancel_futures=True)
    return result


def _free_bytes(directory: Path) -> int:
    probe = directory if directory.exists() else directory.parent
    return shutil.disk_usage(probe).free


def files_to_send(con: duckdb.DuckDBPyConnection, table: str = "annotation") -> list[tuple[str, int | None]]:
    """(URL, declared size) of the staged rows with a file to send, in the load's order: those with a file
    URL and no body of their own, less the records an earlier run created (the ledger's live creates)."""
    if not table_exists(con, "staged", table):
        return []
    staged = f"staged.{quote(table)}"
    columns = {d[0] for d in con.execute(f"SELECT * FROM {staged} LIMIT 0").description}
    if not {"_file_url", "_file_size"} <= columns:
        return []
    pk = "annotationid" if table == "annotation" else f"{table}id"
    own_body = "AND s.documentbody IS NULL" if "documentbody" in columns else ""
    created = ""
    if pk in columns and table_exists(con, LEDGER_SCHEMA, "writes"):
        created = (
            f"AND lower(CAST(s.{quote(pk)} AS VARCHAR)) NOT IN (SELECT record_id FROM {LEDGER_SCHEMA}.writes "
            "WHERE table_name = ? AND action = 'created' AND status = 'done' AND rolled_back_by IS NULL)"
        )
    rows = con.execute(
        f"SELECT s._file_url, s._file_size FROM {staged} s WHERE s._file_url IS NOT NULL {own_body} {created} "
        "ORDER BY s.rowid",
        [table] if created else [],
    ).fetchall()
    return [(str(url), None if size is None else int(size)) for url, size in rows]
