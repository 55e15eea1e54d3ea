"""The loader downloads the next batch's files while it sends a batch (issue 15, pipelining), and keeps the
ledger as before: a failed download of a batch prepared ahead is a rejected row with its reason, the other
rows land, one request per batch; a record the batch being sent writes is read again before the batch
prepared meanwhile uses what it read of it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from _loader_fakes import EmptyAnnotationTarget

from migration_assets.clients.dataverse.bulk import WriteResult
from migration_assets.load.engine import PreparedBatch, TableLoader
from migration_assets.load.ledger import Ledger

WAIT = 5.0  # seconds a synchronisation may take before the test fails (never reached when it passes)
LIMIT = 4_000


def _id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def _row(n: int) -> dict[str, Any]:
    return {
        "annotationid": _id(n),
        "subject": f"file {n}",
        "_close_id": f"acti_{n}",
        "_file_url": f"https://files/{n}",
        "_file_size": 10,
    }


class FakeDataverse(EmptyAnnotationTarget):
    """An empty target whose CreateMultiple waits until the download of `overlap[batch]` has started."""

    def __init__(self, downloading: dict[str, threading.Event], overlap: dict[str, str]) -> None:
        self.created: list[list[str]] = []
        self.downloading = downloading
        self.overlap = overlap
        self.reads: list[list[str]] = []

    def stats(self) -> dict[str, dict[str, int]]:
        return {"user": {"requests": len(self.created) + len(self.reads)}}

    def query(self, table: str, **kw: Any) -> list[dict[str, Any]]:
        self.reads.append([i for i in kw["filter"].split("'") if i.startswith("0000")])
        return []

    def query_pages(self, table: str, **kw: Any) -> Iterator[list[dict[str, Any]]]:
        yield []

    def create_multiple(self, table: str, bodies: list[dict[str, Any]]) -> WriteResult:
        first = bodies[0]["annotationid"]
        url = self.overlap.get(first)
        if url is not None:
            event = self.downloading.setdefault(url, threading.Event())
            assert event.wait(WAIT), f"the download of {url} runs while {first} is sent"
        self.created.append([b["annotationid"] for b in bodies])
        return WriteResult(table, "create", succeeded=list(range(len(bodies))))


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    yield c
    c.close()


def test_the_next_batch_downloads_while_one_is_sent_and_a_failed_download_is_a_rejected_row(
    con: duckdb.DuckDBPyConnection,
) -> None:
    downloading: dict[str, threading.Event] = {}
    lock = threading.Lock()

    def download(url: str) -> Iterator[bytes]:
        with lock:
            downloading.setdefault(url, threading.Event()).set()
        if url.endswith("/3"):
            raise OSError("connection reset by peer")
        yield url.encode()

    # One row per batch: while batch 1 is sent, batch 2's file is downloaded; while 2 is sent, 3's.
    client = FakeDataverse(downloading, {_id(1): "https://files/2", _id(2): "https://files/3"})
    rows = [_row(n) for n in (1, 2, 3, 4)]
    loader = TableLoader(client, Ledger(con, "run-1"), "annotation", list(rows[0]), 1, download, LIMIT)  # type: ignore[arg-type]
    stats = loader.load(rows)

    assert client.created == [[_id(1)], [_id(2)], [_id(4)]]
    assert (stats.created, stats.rejected, stats.downloads, stats.batches) == (3, 1, 3, 4)
    refused = con.execute("SELECT record_id, operation, message FROM ledger.rejected").fetchall()
    assert refused == [(_id(3), "download", "download of https://files/3 failed: connection reset by peer")]
    states = con.execute("SELECT record_id, status FROM ledger.writes ORDER BY record_id").fetchall()
    assert [s for _, s in states] == ["done"] * 3


def test_a_record_written_while_the_next_batch_was_read_is_read_again(
    con: duckdb.DuckDBPyConnection,
) -> None:
    client = FakeDataverse({}, {})
    loader = TableLoader(client, Ledger(con, "run-2"), "annotation", ["annotationid"], 1)  # type: ignore[arg-type]
    ahead = PreparedBatch([{"annotationid": _id(7)}], True, [], [_id(7)], {}, {})
    loader._touch([_id(8)])
    assert loader._still_current(ahead) is ahead, "nothing it read was written meanwhile"
    loader._touch([_id(7)])  # e.g. a key released by the batch sent while this one was read
    again = loader._still_current(ahead)
    assert again is not ahead and client.reads == [[_id(7)]]
    second_pass = PreparedBatch([{"annotationid": _id(9)}], False, [], [_id(9)], {}, {})
    loader._touch([_id(9)])
    assert loader._still_current(second_pass) is second_pass, "a second-pass batch is never read ahead"
