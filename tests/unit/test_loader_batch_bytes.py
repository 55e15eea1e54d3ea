"""A ledgered batch is bounded by the bytes of its file bodies, call recordings included: Close declares no
size for a recording, so the loader counts it as the mean of the recordings it downloaded so far."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
from _loader_fakes import EmptyAnnotationTarget

from migration_assets.clients.dataverse.bulk import WriteResult
from migration_assets.load import engine
from migration_assets.load.batches import batches_of
from migration_assets.load.engine import TableLoader
from migration_assets.load.ledger import Ledger


def _recording(n: int) -> dict[str, Any]:
    return {
        "annotationid": f"00000000-0000-0000-0000-{n:012d}",
        "_file_url": f"https://rec/{n}",
        "_file_size": None,
    }


def test_a_recording_counts_as_the_size_expected_when_its_row_is_reached() -> None:
    rows = [_recording(n) for n in range(6)]
    assert [len(b) for b in batches_of(rows, 100, 1_000)] == [6], "no estimate: recordings count nothing"
    assert [len(b) for b in batches_of(rows, 100, 1_000, lambda: 300)] == [2, 2, 2]  # 400 bytes as base64
    expected = iter([300, 300, 300, 30, 30, 30])  # the estimate changes as the load downloads recordings
    assert [len(b) for b in batches_of(rows, 100, 1_000, lambda: next(expected))] == [2, 4]


class FakeDataverse(EmptyAnnotationTarget):
    def __init__(self) -> None:
        self.requests: list[int] = []
        self.sent: list[list[str]] = []  # each request's rows: "file" or "note"

    def create_multiple(self, table: str, bodies: list[dict[str, Any]]) -> WriteResult:
        self.requests.append(sum(len(b.get("documentbody", "")) for b in bodies))
        self.sent.append(["file" if "documentbody" in b else "note" for b in bodies])
        return WriteResult(table, "create", succeeded=list(range(len(bodies))))


def test_the_loader_learns_the_size_of_recordings_from_those_it_downloaded(monkeypatch: Any) -> None:
    monkeypatch.setattr(engine, "MAX_BATCH_FILE_BYTES", 1_000)
    monkeypatch.setattr(engine, "UNDECLARED_FILE_BYTES", 30)  # a first guess far below the real size

    def download(url: str) -> Iterator[bytes]:
        yield b"r" * 300  # 400 bytes as base64

    client = FakeDataverse()
    rows = [_recording(n) for n in range(60)]
    loader = TableLoader(
        client, Ledger(duckdb.connect(), "run-1"), "annotation", list(rows[0]), 1000, download
    )  # type: ignore[arg-type]
    assert loader.undeclared_size() == 30
    stats = loader.load(rows)
    assert stats.created == 60 and loader.undeclared_size() == 300
    # The first two batches are cut with the guess (25 recordings of 40 bytes as base64; the second is cut
    # while the first is sent), the others with what the downloads measured: 2 recordings (800 bytes) each,
    # once the row that closed the second batch (counted with the guess) is sent.
    assert client.requests[:2] == [25 * 400, 25 * 400]
    assert client.requests[2:] == [1200, 800, 800, 800, 400]


def test_a_batch_of_files_fits_one_request_with_room_for_the_estimate_to_be_short() -> None:
    from migration_assets.clients.dataverse.bulk import MAX_REQUEST_VALUE_BYTES

    # The loader cuts batches by the sizes it expects; the client splits a write past its bound into two
    # requests, so the batch bound stays below it by a margin for recordings larger than the mean.
    assert engine.MAX_BATCH_FILE_BYTES * 1.05 <= MAX_REQUEST_VALUE_BYTES <= 116_850_000 - 5_000_000


def _note(n: int) -> dict[str, Any]:
    return {**_recording(n), "_file_url": None}


def test_rows_with_files_go_first_and_the_notes_ride_in_the_last_file_batches(monkeypatch: Any) -> None:
    """The files' batches lead the annotation load (their pace is bytes, not the service's budget); the
    notes ride in the last of them, up to the row bound, so the load sends no more requests than in the
    stored order."""
    monkeypatch.setattr(engine, "MAX_BATCH_FILE_BYTES", 1_000)  # two files of 400 bytes as base64
    monkeypatch.setattr(engine, "UNDECLARED_FILE_BYTES", 300)

    def download(url: str) -> Iterator[bytes]:
        yield b"r" * 300

    rows = [_recording(n) if n % 2 else _note(n) for n in range(16)]  # stored order: note, file, note, ...
    client = FakeDataverse()
    loader = TableLoader(client, Ledger(duckdb.connect(), "run-1"), "annotation", list(rows[0]), 5, download)  # type: ignore[arg-type]
    stats = loader.load(rows)
    assert stats.created == 16
    assert client.sent == [
        ["file", "file"],
        ["file", "file", "note", "note"],
        ["file", "file", "note", "note", "note"],
        ["file", "file", "note", "note", "note"],
    ]
    assert len(client.sent) == 4  # as many as the stored order's batches: ceil(16 / 5)
