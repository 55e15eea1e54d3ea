"""A pass's export split made ahead, on a background thread (`ExportSplit`, opened by `ClosePass`):
the /task/ read done meanwhile, errors handed to the table that waits, cancellation when the pass ends."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from migration_assets.clients.close.export_file import CloseExportError
from migration_assets.extract.export_split import ExportSplit, export_frames
from migration_assets.extract.sources import ClosePass
from migration_assets.extract.tables import TABLES

LEADS = [
    {
        "id": f"lead_{i:03d}",
        "name": f"Lead {i}",
        "contacts": [{"id": f"cont_{i:03d}", "lead_id": f"lead_{i:03d}"}],
        "tasks": [{"id": f"task_{i:03d}", "_type": "lead", "lead_id": f"lead_{i:03d}"}],
        "activities": [{"id": f"acti_{i:03d}", "_type": "Note", "lead_id": f"lead_{i:03d}"}],
    }
    for i in range(30)
]
TASK_PAGES = [
    [{"id": "task_000", "_type": "lead", "lead_id": "lead_000"}, {"id": "noti_1", "_type": "missed_call"}],
    [{"id": "noti_2", "_type": "voicemail"}],
]


def export_bytes() -> bytes:
    return gzip.compress(("\n".join(json.dumps(lead) for lead in LEADS) + "\n").encode())


class FakeClient:
    def __init__(self, tasks: Callable[[], Iterator[list[dict[str, Any]]]]) -> None:
        self._tasks = tasks
        self.task_reads = 0

    def iter_window_pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        assert path == "task/"
        self.task_reads += 1
        yield from self._tasks()


class FakeClose:
    """What the export split uses of CloseResource (source 'export')."""

    source = "export"
    export_split_workers = 1

    def __init__(
        self, tmp: Path, chunks: Callable[[threading.Event | None], Iterator[bytes]], tasks: Any = None
    ):
        self.tmp = tmp
        self._chunks = chunks
        self.client = FakeClient(tasks or (lambda: iter(TASK_PAGES)))
        self.requests = 0

    def scratch_dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def export_chunks(
        self, include_activities: bool = True, stop: threading.Event | None = None
    ) -> Iterator[bytes]:
        self.requests += 1
        return self._chunks(stop)

    def get_client(self) -> FakeClient:
        return self.client


def ids(directory: Path, table: str) -> list[str]:
    frames = [pl.from_arrow(ds.to_table()) for ds in export_frames(directory, table)]
    return sorted(pl.concat(frames)["id"].to_list()) if frames else []  # type: ignore[arg-type]


def test_split_ahead_with_inbox_tasks(tmp_path: Path) -> None:
    close = FakeClose(tmp_path, lambda stop: iter([export_bytes()]))
    split = ExportSplit(close, close.scratch_dir("export-run1"), inbox_tasks=True)  # type: ignore[arg-type]
    directory = split.wait()
    assert split.wait() == directory  # waiting again: the same split, not a second request
    assert close.requests == 1
    assert ids(directory, "leads") == [lead["id"] for lead in LEADS]
    assert len(ids(directory, "tasks")) == 30
    inbox = split.inbox_tasks()
    assert inbox is not None
    # Lead tasks come from the export only: /task/ contributes the inbox and system tasks.
    assert ids(directory, inbox.name) == ["noti_1", "noti_2"]
    split.cancel()


def test_tasks_table_combines_export_and_prefetched_inbox_tasks(tmp_path: Path) -> None:
    close = FakeClose(tmp_path, lambda stop: iter([export_bytes()]))
    with ClosePass(close, ["leads", "tasks"], "run2") as close_pass:  # type: ignore[arg-type]
        chunks = list(close_pass.pages("tasks"))
        got = sorted(i for ds in chunks for i in ds.to_table()["id"].to_pylist())
        assert got == sorted([f"task_{i:03d}" for i in range(30)] + ["noti_1", "noti_2"])
        assert close.client.task_reads == 1
        assert all(ds.schema.names == list(TABLES["tasks"].schema) for ds in chunks)
    assert close.requests == 1
    assert not (tmp_path / "export-run2").exists()  # the split parts (personal data) go with the pass


def test_without_prefetch_the_tasks_table_reads_task_pages_itself(tmp_path: Path) -> None:
    close = FakeClose(tmp_path, lambda stop: iter([export_bytes()]))
    with ClosePass(close, [], "run3") as close_pass:  # type: ignore[arg-type]
        chunks = list(close_pass.pages("tasks"))
    pages = [c for c in chunks if isinstance(c, list)]
    assert [t["id"] for page in pages for t in page] == ["noti_1", "noti_2"]


def test_failed_inbox_read_falls_back_to_reading_task_pages(tmp_path: Path) -> None:
    calls = {"n": 0}

    def tasks() -> Iterator[list[dict[str, Any]]]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("connection reset")
        yield from TASK_PAGES

    close = FakeClose(tmp_path, lambda stop: iter([export_bytes()]), tasks)
    split = ExportSplit(close, close.scratch_dir("export-run4"), inbox_tasks=True)  # type: ignore[arg-type]
    split.wait()
    assert split.inbox_tasks() is None
    split.cancel()
    calls["n"] = 0
    # In a pass: the prefetch fails in the background, the tasks table then reads /task/ itself.
    with ClosePass(close, ["tasks"], "run4") as close_pass:  # type: ignore[arg-type]
        chunks = list(close_pass.pages("tasks"))
    assert [t["id"] for c in chunks if isinstance(c, list) for t in c] == ["noti_1", "noti_2"]
    assert calls["n"] == 2


def test_failed_build_is_raised_to_the_waiting_table_and_retried(tmp_path: Path) -> None:
    attempts = {"n": 0}

    def chunks(stop: threading.Event | None) -> Iterator[bytes]:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise CloseExportError("Close reported an error building export expo_1")
        yield export_bytes()

    close = FakeClose(tmp_path, chunks)
    with ClosePass(close, ["leads"], "run5") as close_pass:  # type: ignore[arg-type]
        with pytest.raises(CloseExportError, match="error building export expo_1"):
            list(close_pass.pages("leads"))
        chunks_read = list(close_pass.pages("leads"))  # the next read starts a fresh split
        directory = tmp_path / "export-run5"
        assert ids(directory, "leads") == [lead["id"] for lead in LEADS]
        assert len(chunks_read) == 1
    assert attempts["n"] == 2


def test_leaving_the_pass_stops_a_build_still_waiting_for_the_export(tmp_path: Path) -> None:
    waiting = threading.Event()

    def chunks(stop: threading.Event | None) -> Iterator[bytes]:
        assert stop is not None
        waiting.set()
        if stop.wait(30):  # what wait_export does with `stop`
            raise CloseExportError("Stopped waiting for Close export expo_2: the run ended")
        yield export_bytes()

    close = FakeClose(tmp_path, chunks)
    with ClosePass(close, ["leads"], "run6"):  # type: ignore[arg-type]
        assert waiting.wait(10)
    # Left: returned once the build thread has ended (it would otherwise wait 30 s), parts removed.
    assert not (tmp_path / "export-run6" / "_complete.json").exists()
