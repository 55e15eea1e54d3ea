"""One pass over a Close JSON export → per-table Arrow parts, read by the pass's export-backed tables.

Parsing the export is the expensive part of the export path, so it happens once per pass: each lead
document is routed (the lead itself, its contacts, opportunities, tasks, and activities by `_type`),
turned into table rows with the same `TableSpec.frame` the API path uses, and flushed in bounded
batches (`export_route.py`). Each table then only reads its own Arrow IPC parts.

A JSON-lines export (what Close produces) is cut into blocks of complete lines that worker processes
(`export_worker.py`) parse in parallel — the parse is pure Python, so threads would share one core —
while this process downloads and gunzips. A JSON array is parsed here, in order.

The split runs on a background thread (`ExportSplit`), started when a pass over export-backed tables
opens (`sources.ClosePass`, one per step of the close/* multi_asset); the /task/ read the tasks table
needs follows the split. The pass waits for it table by table and stops it when the pass ends.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.dataset as pads

import migration_assets
from migration_assets.clients.call_scope import in_context
from migration_assets.clients.close.export_file import (
    CloseExportError,
    export_bytes,
    line_blocks,
    parse_export_bytes,
)
from migration_assets.extract.export_route import (
    BATCH_ROWS,
    EXPORT_TABLES,
    Sink,
    finish,
    make_sinks,
    route,
)
from migration_assets.extract.export_worker import HEADER
from migration_assets.extract.tables import TABLES
from migration_assets.resources.close import CloseResource

__all__ = [
    "BATCH_ROWS",
    "EXPORT_TABLES",
    "ExportSplit",
    "export_frames",
    "split_export",
    "split_parallel",
]

DONE_MARKER = "_complete.json"
INBOX_TASKS = "inbox_tasks"  # tasks fetched from /task/ after the split (not in the export)
EXPORT_NAME = "Close export"


def split_export(
    leads: Iterable[dict[str, Any]], directory: Path, batch_rows: int = BATCH_ROWS
) -> dict[str, int]:
    """Route every object of the export into `<directory>/<table>/part-*.arrow` in this process;
    returns row counts (activity types without a table under `skipped:<type>`)."""
    sinks = make_sinks(directory, batch_rows)
    skipped: dict[str, int] = {}
    # Parsed JSON holds no reference cycles, but millions of fresh containers make the cyclic GC
    # rescan the live buffers over and over (half the parse time); pause it for this pass.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        route(leads, sinks, skipped)
    finally:
        if gc_was_enabled:
            gc.enable()
    return finish(sinks, skipped)


class _Worker:
    """One worker process and the thread feeding it blocks from the shared queue."""

    def __init__(self, index: int, directory: Path, batch_rows: int, blocks: queue.Queue[Any]) -> None:
        self.log = (directory / f"worker-{index}.log").open("w+b")
        env = dict(os.environ)
        # The package must be importable in the worker even when it is not installed (e.g. bench/).
        root = str(Path(migration_assets.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migration_assets.extract.export_worker",
                str(directory),
                f"w{index}-",
                str(batch_rows),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        self.failed: BaseException | None = None
        self._blocks = blocks
        self.thread = threading.Thread(
            target=in_context(self._feed), name=f"export-split-feed-{index}", daemon=True
        )
        self.thread.start()

    def _feed(self) -> None:
        stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        try:
            while True:
                item = self._blocks.get()
                if item is None:
                    stdin.write(HEADER.pack(0, 0))
                    stdin.close()
                    return
                first_line, block = item
                stdin.write(HEADER.pack(len(block), first_line))
                stdin.write(block)
        except OSError as exc:  # the worker died: its answer / log says why
            self.failed = exc

    def result(self) -> dict[str, int]:
        self.thread.join()
        out = self.proc.stdout.read() if self.proc.stdout else b""  # type: ignore[union-attr]
        code = self.proc.wait()
        try:
            answer = json.loads(out or b"{}")
        except ValueError:
            answer = {}
        if code == 0 and "counts" in answer:
            return answer["counts"]
        self.log.seek(0)
        detail = answer.get("error") or self.log.read()[-2000:].decode(errors="replace").strip()
        raise CloseExportError(f"{EXPORT_NAME}: {detail or f'parser process exited with status {code}'}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


class _Pool:
    """`workers` parser processes fed from one bounded queue (whichever worker is free takes a block)."""

    def __init__(self, directory: Path, workers: int, batch_rows: int) -> None:
        self.blocks: queue.Queue[Any] = queue.Queue(maxsize=workers)  # bounds the blocks in memory
        self.workers: list[_Worker] = []
        for i in range(workers):
            self.workers.append(_Worker(i, directory, batch_rows, self.blocks))

    def run(self, blocks: Iterable[tuple[int, bytes]]) -> dict[str, int]:
        for item in blocks:
            self._put(item)
        for _ in self.workers:
            self._put(None)
        totals: dict[str, int] = dict.fromkeys(EXPORT_TABLES, 0)
        for worker in self.workers:
            for key, n in worker.result().items():
                totals[key] = totals.get(key, 0) + int(n)
        return totals

    def _put(self, item: Any) -> None:
        """Queue `item`, but stop waiting (and report why) if a worker has died."""
        while True:
            try:
                self.blocks.put(item, timeout=0.2)
                return
            except queue.Full:
                for worker in self.workers:
                    if worker.failed is not None or worker.proc.poll() is not None:
                        worker.result()  # raises CloseExportError with the worker's own explanation
                        raise CloseExportError(f"{EXPORT_NAME}: a parser process stopped early") from None

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        for _ in self.workers:  # release feeders still waiting for a block (after a failure)
            try:
                self.blocks.put_nowait(None)
            except queue.Full:
                break


def split_parallel(
    chunks: Iterator[bytes], directory: Path, workers: int, batch_rows: int = BATCH_ROWS
) -> dict[str, int]:
    """`split_export` over the raw bytes of an export, JSON lines parsed by `workers` processes.

    The workers start before `chunks` is first read, so their start-up overlaps the export request.
    A JSON array cannot be cut into independent blocks: it is parsed in this process, in order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pool = _Pool(directory, workers, batch_rows)
    try:
        is_lines, data = export_bytes(chunks, EXPORT_NAME)
        if is_lines:
            return pool.run(line_blocks(data))
    finally:
        pool.close()
    return split_export(parse_export_bytes(data, EXPORT_NAME), directory, batch_rows)


class ExportSplit:
    """The split of one pass's export, made on a background thread from construction on.

    Started when a pass opens (`sources.ClosePass`), the export builds on Close's side and is parsed
    while the pass does other work. With `inbox_tasks`, the tasks an export does not contain (inbox
    and system tasks, only behind /task/) are then fetched on a second thread, once the split is done:
    while the pass writes its tables (one DuckDB thread) rather than while Close builds the export and
    the parsers use every core. The pass owns its split: `cancel` (on leaving the pass) stops both.
    """

    def __init__(self, close: CloseResource, directory: Path, inbox_tasks: bool = False) -> None:
        self.close = close
        self.directory = directory
        shutil.rmtree(directory, ignore_errors=True)  # a failed earlier attempt's parts
        directory.mkdir(parents=True, mode=0o700)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.splitter = threading.Thread(
            target=in_context(self._split), name="close-export-split", daemon=True
        )
        self.tasks: threading.Thread | None = None
        if inbox_tasks:
            self.tasks = threading.Thread(
                target=in_context(self._tasks), name="close-inbox-tasks", daemon=True
            )
        self.splitter.start()

    def _chunks(self) -> Iterator[bytes]:
        for chunk in self.close.export_chunks(include_activities=True, stop=self.stop):
            if self.stop.is_set():
                raise CloseExportError(f"{EXPORT_NAME}: the run ended before the export was read")
            yield chunk

    def _split(self) -> None:
        try:
            if self.close.export_split_workers > 0:
                counts = split_parallel(self._chunks(), self.directory, self.close.export_split_workers)
            else:
                counts = split_export(self.close.export_leads(include_activities=True), self.directory)
            (self.directory / DONE_MARKER).write_text(json.dumps(counts))
        except BaseException as exc:  # handed to whoever waits for the split
            self.error = exc
            return
        if self.tasks is not None and not self.stop.is_set():
            self.tasks.start()

    def _tasks(self) -> None:
        folder = self.directory / INBOX_TASKS
        try:
            sink = Sink(self.directory, INBOX_TASKS, BATCH_ROWS, spec=TABLES["tasks"])
            for page in self.close.get_client().iter_window_pages("task/", {}):
                if self.stop.is_set():
                    return
                for task in page:
                    if task.get("_type") != "lead":  # lead tasks come with the export
                        sink.put(task)
            sink.flush()
            (folder / DONE_MARKER).write_text(json.dumps({"tasks": sink.count}))
        except Exception:
            # Not fatal here: without the marker the tasks table reads /task/ itself and reports the
            # error where it belongs.
            shutil.rmtree(folder, ignore_errors=True)

    def wait(self) -> Path:
        """The split export's directory, once complete (the split's own error if it failed)."""
        self.splitter.join()
        if self.error is not None:
            raise self.error
        return self.directory

    def inbox_tasks(self) -> Path | None:
        """The folder of the prefetched inbox tasks once fetched; None when they were not fetched (or
        the fetch failed) and the caller must read /task/ itself."""
        self.splitter.join()
        if self.tasks is not None and self.tasks.ident is not None:
            self.tasks.join()
        folder = self.directory / INBOX_TASKS
        return folder if (folder / DONE_MARKER).exists() else None

    def cancel(self) -> None:
        """Stop the split and the /task/ read (a request under way ends first) and wait for both."""
        self.stop.set()
        self.splitter.join()
        if self.tasks is not None and self.tasks.ident is not None:
            self.tasks.join()


def export_frames(directory: Path, table: str) -> Iterator[pads.Dataset]:
    """The table's parts as one Arrow dataset (DuckDB streams it: one scan, bounded memory)."""
    parts = sorted(str(p) for p in (directory / table).glob("part-*.arrow"))
    if parts:
        yield pads.dataset(parts, format="ipc")
