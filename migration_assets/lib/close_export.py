"""Streaming reader for Close JSON lead exports (JSON-lines or one JSON array, optionally gzip).

The export of a real org can be many GB once activities are included, so nothing here ever holds more
than one lead document (plus a read buffer) in memory. CSV exports are refused with an explanation,
because Close CSV exports never contain activities and a migration from one would silently lose the
whole communication history.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

GZIP_MAGIC = b"\x1f\x8b"

CSV_EXPORT_EXPLANATION = (
    "Close CSV exports carry no activity history (calls, emails, SMS, notes, meetings, status changes, "
    "custom activities) and no tasks, so migrating from one would silently lose it. Produce a JSON export "
    "instead: in Close go to Settings → Export → Leads, choose the JSON format and tick 'include "
    "activities'; or call the API: POST /api/v1/export/lead/ with "
    '{"format": "json", "type": "leads", "include_activities": true}, poll GET /api/v1/export/{id}/ '
    "until status is 'done', and download the file from its download_url."
)


class CloseExportError(Exception):
    """The Close export file cannot be used (CSV, corrupt, wrong content)."""


def _open_text(path: Path) -> IO[str]:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if head == GZIP_MAGIC else raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def _looks_like_csv(first_line: str) -> bool:
    line = first_line.strip()
    if not line or line[0] in "[{":
        return False
    # A Close CSV export starts with a header row such as `id,display_name,status_label,...`.
    return "," in line or "\t" in line or ";" in line


def _check_not_csv(path: Path, first_line: str) -> None:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")) or _looks_like_csv(first_line):
        raise CloseExportError(f"{path} is a CSV export, which cannot be migrated. {CSV_EXPORT_EXPLANATION}")


def iter_export_leads(
    path: str | Path, chunk_size: int = 1 << 20, max_document_chars: int = 256 << 20
) -> Iterator[dict[str, Any]]:
    """Yield the lead documents of a Close JSON export one at a time.

    Accepts JSON-lines (one lead per line) and a single JSON array of leads (pretty-printed or on one
    line), plain or gzip-compressed. Raises CloseExportError for CSV files, non-object entries and
    truncated or invalid JSON, naming the file and the position so the engineer can find the problem.
    """
    p = Path(path)
    if not p.exists():
        raise CloseExportError(f"Close export file not found: {p}")
    try:
        with _open_text(p) as fh:
            # Never readline() first: a one-line JSON array would be read whole into memory.
            head = fh.read(65536)
            _check_not_csv(p, head.split("\n", 1)[0])
            if head.lstrip().startswith("["):
                yield from _iter_array(p, fh, head, chunk_size, max_document_chars)
            else:
                yield from _iter_lines(p, fh, head)
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # corrupt gzip, truncated stream, bad bytes
        raise CloseExportError(f"Cannot read Close export {p}: {exc}") from exc


def _as_lead(p: Path, obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CloseExportError(f"{p} {where}: expected a lead object, found {type(obj).__name__}")
    return obj


def _physical_lines(head: str, fh: IO[str]) -> Iterator[str]:
    parts = head.split("\n")
    yield from parts[:-1]
    tail = parts[-1]
    for line in fh:
        if tail:
            line, tail = tail + line, ""
        yield line
    if tail:
        yield tail


def _iter_lines(p: Path, fh: IO[str], head: str) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(_physical_lines(head, fh), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CloseExportError(f"{p} line {lineno}: invalid JSON ({exc.msg})") from exc
        yield _as_lead(p, obj, f"line {lineno}")


def _iter_array(
    p: Path, fh: IO[str], head: str, chunk_size: int, max_document_chars: int
) -> Iterator[dict[str, Any]]:
    """Incrementally decode `[obj, obj, ...]` with raw_decode over a sliding buffer."""
    decoder = json.JSONDecoder()
    buf = head.lstrip()[1:]  # drop the opening bracket
    pos = 0
    index = 0
    eof = False
    need_more = False
    while True:
        if need_more or pos >= len(buf):
            if eof:
                raise CloseExportError(f"{p}: the JSON array is truncated after {index} leads")
            if len(buf) - pos > max_document_chars:
                raise CloseExportError(
                    f"{p}: lead #{index + 1} is not valid JSON within {max_document_chars} characters"
                )
            data = fh.read(chunk_size)
            if not data:
                eof = True
            buf = buf[pos:] + data
            pos = 0
            need_more = False
            continue
        ch = buf[pos]
        if ch in " \t\r\n,":
            pos += 1
            continue
        if ch == "]":
            rest = (buf[pos + 1 :] + fh.read(64)).strip()
            if rest:
                raise CloseExportError(f"{p}: unexpected content after the JSON array: {rest[:40]!r}")
            return
        try:
            obj, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if eof:
                raise CloseExportError(f"{p}: invalid JSON in lead #{index + 1} ({exc.msg})") from exc
            need_more = True  # the object continues past the buffer: read more and retry
            continue
        yield _as_lead(p, obj, f"array item #{index + 1}")
        index += 1
        pos = end
