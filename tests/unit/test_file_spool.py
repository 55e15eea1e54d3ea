"""The spool of file bodies fetched ahead of the annotation load (load/file_spool.py): bodies encoded as they
stream in, exactly as the load would encode them; oversize bodies noted, never kept; a failed download
leaves nothing behind and is left to the load; the byte budget and the free-space floor stop it; the load
takes spooled bodies and downloads only the rest; only rows an earlier run did not create are fetched."""

from __future__ import annotations

import base64
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _loader_fakes import entity_meta

from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.load import diff as ld
from migration_assets.load import file_spool as fs
from migration_assets.load.engine import TableLoader
from migration_assets.load.file_body import FileBody, Oversize
from migration_assets.load.file_spool import FileSpool, PrefetchResult, files_to_send, prefetch
from migration_assets.load.ledger import Intent, Ledger

PLENTY = 10**15  # free bytes of a disk that never fills


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at, n = 0, 0
    while at < len(data):
        step = sizes[n % len(sizes)]
        yield data[at : at + step]
        at, n = at + step, n + 1


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 64, 1000, 65_537])
@pytest.mark.parametrize("sizes", [[1], [2], [7, 3, 65_536], [65_536]])
def test_a_body_is_spooled_as_the_base64_the_load_would_send(
    tmp_path: Path, length: int, sizes: list[int]
) -> None:
    data = random.Random(length).randbytes(length)
    spool = FileSpool(tmp_path / "spool")
    assert spool.get("https://files/a") is None
    assert spool.fetch("https://files/a", _chunks(data, sizes), None) == length
    body = spool.get("https://files/a")
    assert body == FileBody(length, base64.b64encode(data).decode())
    assert [p.suffix for p in (tmp_path / "spool").iterdir()] == [".b64"], "no partial file is left"
    assert os.stat(next((tmp_path / "spool").iterdir())).st_mode & 0o077 == 0, "readable by its owner only"


def test_a_body_past_the_limit_is_noted_not_kept(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    limit = 400  # base64 bytes: 300 raw bytes fit
    assert spool.fetch("u/fits", iter([b"x" * 300]), limit) == 300
    assert spool.fetch("u/over", iter([b"x" * 200, b"x" * 200]), limit) == Oversize(400, complete=True)
    assert spool.get("u/over") == Oversize(400, complete=True)
    assert not list(tmp_path.glob("*.b64"))[1:], "only the body that fits is on disk"
    endless = (b"x" * 1_000_000 for _ in range(1_000))  # past Dataverse's ceiling: reading stops there
    over = spool.fetch("u/huge", endless, limit)
    assert isinstance(over, Oversize) and not over.complete and over.size < 200_000_000


def test_a_download_that_fails_midway_leaves_nothing_and_closes_its_stream(tmp_path: Path) -> None:
    closed: list[bool] = []

    def broken() -> Iterator[bytes]:
        try:
            yield b"abc"
            raise OSError("connection reset by peer")
        finally:
            closed.append(True)

    spool = FileSpool(tmp_path)
    with pytest.raises(OSError, match="reset"):
        spool.fetch("u/broken", broken(), None)
    assert spool.get("u/broken") is None and list(tmp_path.iterdir()) == [] and closed == [True]


def _download_of(bodies: dict[str, bytes], calls: list[str]) -> Any:
    lock = threading.Lock()

    def download(url: str) -> Iterator[bytes]:
        with lock:
            calls.append(url)
        if url not in bodies:
            raise OSError(f"404 for {url}")
        yield bodies[url]

    return download


def test_prefetch_fetches_each_file_once_and_leaves_failures_to_the_load(tmp_path: Path) -> None:
    bodies = {f"u/{i}": bytes([i]) * (100 + i) for i in range(10)}
    calls: list[str] = []
    spool = FileSpool(tmp_path / "s")
    spool.fetch("u/0", iter([bodies["u/0"]]), None)  # from an earlier, interrupted run
    files = [(u, len(b)) for u, b in bodies.items()] + [("u/3", 103), ("u/missing", 10)]
    done: list[int] = []
    result = prefetch(
        spool,
        files,
        _download_of(bodies, calls),
        None,
        budget_bytes=10**9,
        workers=3,
        guess_size=1,
        advance=done.append,
        free_bytes=lambda: PLENTY,
    )
    assert sorted(calls) == sorted([f"u/{i}" for i in range(1, 10)] + ["u/missing"]), "each URL once"
    assert (result.wanted, result.already, result.fetched, result.left_to_load) == (11, 1, 9, 0)
    assert result.fetched_bytes == sum(len(bodies[f"u/{i}"]) for i in range(1, 10))
    assert list(result.failed) == ["u/missing"] and "404" in result.failed["u/missing"]
    assert sum(done) == 11, "progress counts every file, the failed one too"
    assert all(spool.get(u) == FileBody(len(b), base64.b64encode(b).decode()) for u, b in bodies.items())
    assert result.metadata()["downloads_failed"] == 1


def test_prefetch_stops_at_its_byte_budget_and_at_the_free_space_floor(tmp_path: Path) -> None:
    bodies = {f"u/{i}": b"z" * 1000 for i in range(10)}
    calls: list[str] = []
    files = [(u, 1000) for u in bodies]
    by_budget = prefetch(
        FileSpool(tmp_path / "a"),
        files,
        _download_of(bodies, calls),
        None,
        budget_bytes=3500,
        workers=2,
        guess_size=1,
        free_bytes=lambda: PLENTY,
    )
    assert (by_budget.fetched, by_budget.left_to_load) == (3, 7)
    assert sorted(calls) == ["u/0", "u/1", "u/2"], "the first in load order"
    undeclared = [(u, None) for u in bodies]  # 1,000 bytes each, as served
    # A size Close did not declare counts as the guess until a body lands, then as the mean of those fetched.
    by_mean = prefetch(
        FileSpool(tmp_path / "b"),
        undeclared,
        _download_of(bodies, []),
        None,
        budget_bytes=9_500,
        workers=2,
        guess_size=4000,
        free_bytes=lambda: PLENTY,
    )
    assert (by_mean.fetched, by_mean.left_to_load, by_mean.fetched_bytes) == (9, 1, 9000)
    by_guess = prefetch(
        FileSpool(tmp_path / "b2"),
        undeclared,
        _download_of(bodies, []),
        None,
        budget_bytes=3_999,
        workers=2,
        guess_size=4000,
        free_bytes=lambda: PLENTY,
    )
    assert (by_guess.fetched, by_guess.left_to_load) == (0, 10)
    free = [fs.MIN_FREE_BYTES + 5000]

    def shrinking() -> int:
        free[0] -= 2000  # each file takes about that much of the disk
        return free[0]

    by_disk = prefetch(
        FileSpool(tmp_path / "c"),
        files,
        _download_of(bodies, []),
        None,
        budget_bytes=10**9,
        workers=1,
        guess_size=1,
        free_bytes=shrinking,
    )
    assert by_disk.fetched == 1 and by_disk.left_to_load == 9
    nothing = prefetch(
        FileSpool(tmp_path / "d"),
        files,
        _download_of(bodies, []),
        None,
        budget_bytes=0,
        workers=2,
        guess_size=1,
        free_bytes=lambda: PLENTY,
    )
    assert (nothing.fetched, nothing.left_to_load) == (0, 10) and not (tmp_path / "d").exists()


def test_an_interrupt_stops_the_prefetch_and_drops_the_queued_downloads(tmp_path: Path) -> None:
    bodies = {f"u/{i}": b"q" * 10 for i in range(50)}
    calls: list[str] = []

    class Interrupted(Exception):
        pass

    def advance(n: int) -> None:
        if len(calls) >= 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        prefetch(
            FileSpool(tmp_path),
            [(u, 10) for u in bodies],
            _download_of(bodies, calls),
            None,
            budget_bytes=10**9,
            workers=2,
            guess_size=1,
            advance=advance,
            free_bytes=lambda: PLENTY,
        )
    assert len(calls) < 10, "queued downloads were dropped, not run to the end"


class _Client:
    use_bulk_messages = True

    def metadata(self, table: str) -> EntityMeta:
        return entity_meta("annotation", "Annotation", "annotations", 5)

    def entity_set(self, table: str) -> str:
        return "annotations"


def _row(i: int, size: int | None) -> dict[str, Any]:
    return {"annotationid": f"id{i}", "_file_url": f"https://files/{i}", "_file_size": size}


def test_the_load_sends_spooled_bodies_and_downloads_only_the_rest(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    spool.fetch("https://files/1", iter([b"spooled one"]), 1_000)
    spool.fetch("https://files/2", iter([b"y" * 900]), 1_000)  # noted oversize under that limit
    calls: list[str] = []
    bodies = {f"https://files/{i}": f"downloaded {i}".encode() for i in (2, 3)}
    loader = TableLoader(
        _Client(), None, "annotation", ["annotationid"], 1000, _download_of(bodies, calls), 2_000
    )  # type: ignore[arg-type]
    loader.spool = spool
    rows = [ld.split_row(_row(i, 20)) for i in (1, 2, 3)]
    files = loader._download_all(rows)
    # The oversize note was taken under a lower limit than the load's: the load downloads it again.
    assert sorted(calls) == ["https://files/2", "https://files/3"]
    refused: list[Any] = []
    sent = [loader._create_body(r, f"id{i}", refused, files) for i, r in zip((1, 2, 3), rows, strict=True)]
    assert [base64.b64decode(b["documentbody"]) for b in sent if b] == [
        b"spooled one",
        b"downloaded 2",
        b"downloaded 3",
    ]
    assert refused == [] and loader.stats.spooled_files == 1


def test_a_spooled_body_over_the_loads_limit_is_refused_as_oversize(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    spool.fetch("https://files/1", iter([b"x" * 900]), None)  # fetched under no limit
    loader = TableLoader(_Client(), None, "annotation", ["annotationid"], 1000, _download_of({}, []), 400)  # type: ignore[arg-type]
    loader.spool = spool
    row = ld.split_row(_row(1, None))
    files = loader._download_all([row])
    refused: list[Any] = []
    assert loader._create_body(row, "id1", refused, files) is None
    assert [(r.operation, r.code) for r in refused] == [("download", "0x80044a02")]


def test_only_rows_no_earlier_run_created_are_fetched(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA staged")
    con.execute(
        "CREATE TABLE staged.annotation (annotationid VARCHAR, documentbody VARCHAR, _file_url VARCHAR, "
        "_file_size BIGINT)"
    )
    con.execute(
        "INSERT INTO staged.annotation VALUES ('C', NULL, 'u/c', 3), ('A', NULL, 'u/a', NULL), "
        "('B', 'inline', 'u/b', 1), ('D', NULL, NULL, NULL), ('E', NULL, 'u/e', 5)"
    )
    assert files_to_send(con) == [("u/c", 3), ("u/a", None), ("u/e", 5)], "in the staged order"
    ledger = Ledger(con, "run-1")
    seqs = ledger.begin(
        [Intent("annotation", "a", "close-a", "created"), Intent("annotation", "e", "x", "created")]
    )
    ledger.finish(seqs[:1])  # e's create was never answered: its file is still needed
    assert files_to_send(con) == [("u/c", 3), ("u/e", 5)]
    assert files_to_send(con, "task") == []


def test_prefetch_result_metadata_names_the_first_failure() -> None:
    result = PrefetchResult(wanted=2, fetched=1, failed={"u/x": "OSError: boom"})
    meta = result.metadata()
    assert meta["first_failure"] == "u/x: OSError: boom" and meta["files_fetched"] == 1
