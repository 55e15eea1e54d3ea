"""Worker process of the parallel export split: blocks of JSON lines on stdin → Arrow IPC parts.

Protocol: each block is `HEADER` (payload length, number of its first line) + the payload, a run of
complete lines; a zero length ends the input. The worker answers one JSON object on stdout:
`{"counts": {...}}`, or `{"error": "..."}` (exit status 1) naming the line that is not a lead object.
Run as `python -m migration_assets.extract.export_worker <directory> <part prefix> <batch rows>`.
"""

from __future__ import annotations

import gc
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from migration_assets.clients.close.export_file import ExportLineError, decode_lead_line
from migration_assets.extract.export_route import finish, make_sinks, route

HEADER = struct.Struct("<IQ")


class WorkerInputError(Exception):
    """The block holds something that is not a lead object (message names the line)."""


def _leads(block: bytes, first_line: int) -> Iterator[dict[str, Any]]:
    for offset, line in enumerate(block.split(b"\n")):
        text = line.strip()
        if not text:
            continue
        try:
            yield decode_lead_line(text, f"line {first_line + offset}")
        except ExportLineError as exc:
            raise WorkerInputError(str(exc)) from exc


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise WorkerInputError("the input ended in the middle of a block (the parent process stopped)")
    return data


def run(stream: BinaryIO, directory: Path, prefix: str, batch_rows: int) -> dict[str, int]:
    sinks = make_sinks(directory, batch_rows, prefix)
    skipped: dict[str, int] = {}
    while True:
        size, first_line = HEADER.unpack(_read_exact(stream, HEADER.size))
        if size == 0:
            return finish(sinks, skipped)
        route(_leads(_read_exact(stream, size), first_line), sinks, skipped)


def main(argv: list[str]) -> int:
    directory, prefix, batch_rows = Path(argv[1]), argv[2], int(argv[3])
    # Parsed JSON holds no reference cycles; the cyclic GC would only rescan the live rows.
    gc.disable()
    try:
        counts = run(sys.stdin.buffer, directory, prefix, batch_rows)
    except WorkerInputError as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}))
        return 1
    sys.stdout.write(json.dumps({"counts": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
