"""Batches bounded by file bytes as well as rows, and file bodies downloaded in parallel: a failed download
rejects its row with the reason, an oversize file is listed without being downloaded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _loader_fakes import entity_meta

from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.load import diff as ld
from migration_assets.load.batches import batches_of
from migration_assets.load.engine import TableLoader
from migration_assets.load.lookups import LoadError


def _row(i: int, size: int | None) -> dict[str, Any]:
    return {"annotationid": f"id{i}", "_file_url": f"https://files/{i}" if size else None, "_file_size": size}


def test_batches_stop_at_the_row_count_or_the_file_bytes_whichever_comes_first() -> None:
    rows = [_row(i, 300) for i in range(10)]  # 400 bytes each once base64-encoded
    assert [len(b) for b in batches_of(rows, max_rows=4, max_file_bytes=10_000)] == [4, 4, 2]
    assert [len(b) for b in batches_of(rows, max_rows=100, max_file_bytes=1_000)] == [2, 2, 2, 2, 2]
    huge = [_row(0, 3000), _row(1, 30), _row(2, None), _row(3, None)]
    assert [len(b) for b in batches_of(huge, max_rows=100, max_file_bytes=1_000)] == [1, 3]
    assert list(batches_of([], 10, 10)) == []
    rows_without_files = [_row(i, None) for i in range(5)]
    assert [len(b) for b in batches_of(rows_without_files, 2, 1)] == [2, 2, 1]


def test_a_batch_of_files_is_topped_up_with_rows_without_files_which_then_follow() -> None:
    files = [_row(i, 300) for i in range(5)]  # 400 bytes each as base64
    notes = [_row(100 + i, None) for i in range(10)]
    batches = list(batches_of(files, max_rows=4, max_file_bytes=1_000, fill=notes))
    assert [[r["annotationid"] for r in b] for b in batches] == [
        ["id0", "id1", "id100", "id101"],
        ["id2", "id3", "id102", "id103"],
        ["id4", "id104", "id105", "id106"],
        ["id107", "id108", "id109"],
    ]
    assert [len(b) for b in batches_of([], 4, 1_000, fill=notes)] == [4, 4, 2]
    assert [len(b) for b in batches_of(files, 2, 1_000, fill=notes)] == [2, 2, 2, 2, 2, 2, 2, 1]


def test_told_how_many_rows_there_are_the_fill_rides_in_the_last_batches_only() -> None:
    files = [_row(i, 300) for i in range(10)]  # two per batch: 5 batches with room for 2 more rows each
    notes = [_row(100 + i, None) for i in range(5)]
    batches = list(batches_of(files, max_rows=4, max_file_bytes=1_000, fill=notes, counts=(10, 5)))
    assert [len(b) for b in batches] == [2, 2, 3, 4, 4]
    assert [r["annotationid"] for r in batches[2]] == ["id4", "id5", "id100"]
    # more fill than the batches can carry: they all carry it, the rest follows
    many = [_row(100 + i, None) for i in range(13)]
    assert [len(b) for b in batches_of(files, 4, 1_000, fill=many, counts=(10, 13))] == [4, 4, 4, 4, 4, 3]


class FakeClient:
    use_bulk_messages = True

    def metadata(self, table: str) -> EntityMeta:
        return entity_meta("annotation", "Annotation", "annotations", 5)

    def entity_set(self, table: str) -> str:
        return "annotations"


def test_files_are_downloaded_in_parallel_and_a_failure_rejects_only_its_row() -> None:
    threads: set[str] = set()
    gate = threading.Barrier(2, timeout=5)  # two downloads must be in flight at once to pass

    def download(url: str) -> Iterator[bytes]:
        threads.add(threading.current_thread().name)
        if url.endswith("/1") or url.endswith("/2"):
            gate.wait()
        if url.endswith("/2"):
            raise OSError("connection reset by peer")
        yield url.encode()

    loader = TableLoader(FakeClient(), None, "annotation", ["annotationid"], 1000, download, 1_000)  # type: ignore[arg-type]
    rows = [ld.split_row(_row(1, 10)), ld.split_row(_row(2, 10)), ld.split_row(_row(3, 5000))]
    files = loader._download_all(rows)
    assert sorted(files) == ["https://files/1", "https://files/2"], "the oversize file is not downloaded"
    assert len(threads) == 2
    refused: list[Any] = []
    ok = loader._create_body(rows[0], "id1", refused, files)
    assert ok is not None and ok["documentbody"] == "aHR0cHM6Ly9maWxlcy8x"
    assert loader._create_body(rows[1], "id2", refused, files) is None
    assert loader._create_body(rows[2], "id3", refused, files) is None
    assert [(r.record_id, r.operation, r.code) for r in refused] == [
        ("id2", "download", None),
        ("id3", "download", "0x80044a02"),
    ]
    assert "connection reset by peer" in refused[0].message
    assert "maxuploadfilesize" in refused[1].message


def test_files_without_a_close_client_stop_the_load_with_the_reason() -> None:
    loader = TableLoader(FakeClient(), None, "annotation", ["annotationid"], 1000)  # type: ignore[arg-type]
    with pytest.raises(LoadError, match="no Close client"):
        loader._download_all([ld.split_row(_row(1, 10))])
