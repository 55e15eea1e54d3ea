"""Streaming reader for Close JSON lead exports (JSON-lines or one JSON array, optionally gzip).

The export of a real org can be many GB once activities are included, so nothing here ever holds more
than one lead document (plus a read buffer) in memory. CSV exports are refused with an explanation,
because Close CSV exports never contain activities and a migration from one would silently lose the
whole communication history.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from migration_assets.clients.fastjson import loads
from migration_assets.clients.prefetch import read_ahead

try:  # ISA-L inflate: same API as zlib, ~2.5x faster (the gunzip of a big export is on the critical path)
    from isal import isal_zlib as _inflate

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate.error)
except ImportError:  # pragma: no cover - isal is a declared dependency; zlib decodes the same streams
    _inflate = zlib  # type: ignore[assignment]
    _INFLATE_ERRORS = (zlib.error,)

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


class ExportLineError(ValueError):
    """One line of a JSON-lines export is not a lead object (the message names the line)."""


# A line whose bytes are not valid UTF-8, or whose JSON escapes a lone UTF-16 surrogate, is one broken
# record, not a broken file: it becomes this marker (with the lead id when the line shows it), routed to
# the quarantine and listed by the close/leads check `records_readable`; the rest of the export is read.
QUARANTINED = "__quarantined__"
_LEAD_ID = re.compile(rb'"id"\s*:\s*"(lead_[0-9A-Za-z]+)"')


def _encoding_problem(text: bytes) -> str | None:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte {text[exc.start]:#04x} at offset {exc.start})"
    try:
        json.loads(decoded)  # the standard parser accepts lone surrogate escapes, orjson does not
    except ValueError:
        return None
    return "holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), not text"


def decode_lead_line(text: bytes, where: str) -> dict[str, Any]:
    """One export line as a lead object, or the QUARANTINED marker for a line whose text is not valid;
    raises ExportLineError for a line that is not JSON or not an object (the file itself is broken)."""
    try:
        obj = loads(text)
    except ValueError as exc:
        problem = _encoding_problem(text)
        if problem is None:
            raise ExportLineError(f"{where}: invalid JSON ({exc})") from exc
        found = _LEAD_ID.search(text)
        return {
            QUARANTINED: True,
            "id": found.group(1).decode() if found else None,
            "line": where,
            "reason": f"the record {problem}; it is not migrated",
        }
    if not isinstance(obj, dict):
        raise ExportLineError(f"{where}: expected a lead object, found {type(obj).__name__}")
    return obj


class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (an HTTP download)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _decompressed(raw: io.BufferedReader) -> io.BufferedReader:
    """The byte stream, gunzipped when it starts with the gzip magic, buffered so it can be peeked."""
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20)  # type: ignore[arg-type]
    return raw


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
    yield from _iter_stream(p, io.BufferedReader(io.FileIO(p, "rb"), 1 << 20), chunk_size, max_document_chars)


def iter_export_stream(
    chunks: Iterator[bytes], name: str = "Close export download", chunk_size: int = 1 << 20
) -> Iterator[dict[str, Any]]:
    """Like iter_export_leads, over the bytes of a download as they arrive (parsing overlaps the transfer).

    The download and its gunzip run on a background thread (zlib releases the GIL), so they use the
    second core while this thread parses.
    """
    raw = io.BufferedReader(
        _ChunkStream(read_ahead(_gunzip(chunks, name), 64, "close-export-gunzip")), 1 << 20
    )
    yield from _iter_stream(Path(name), raw, chunk_size, 256 << 20)


def export_bytes(chunks: Iterator[bytes], name: str) -> tuple[bool, Iterator[bytes]]:
    """The decompressed bytes of an export (gunzip on a background thread), after the CSV check.

    Returns (is_json_lines, bytes): JSON-lines exports can be cut into line blocks and parsed in
    parallel (`line_blocks`); a JSON array must be parsed in order (`parse_export_bytes`).
    """
    data = read_ahead(_gunzip(chunks, name), 64, "close-export-gunzip")
    head = b""
    for chunk in data:
        head += chunk
        if len(head) >= 65536:
            break
    text = head[:65536].decode("utf-8-sig", errors="replace")
    _check_not_csv(Path(name), text.split("\n", 1)[0])
    return not text.lstrip().startswith("["), itertools.chain([head], data)


def parse_export_bytes(data: Iterator[bytes], name: str) -> Iterator[dict[str, Any]]:
    """Lead documents from the (decompressed) bytes returned by `export_bytes`, in order."""
    raw = io.BufferedReader(_ChunkStream(data), 1 << 20)
    yield from _iter_stream(Path(name), raw, 1 << 20, 256 << 20)


def line_blocks(data: Iterator[bytes], block_bytes: int = 4 << 20) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, block of complete lines) of about `block_bytes` each."""
    line = 1
    pending: list[bytes] = []
    size = 0
    threshold = block_bytes
    for chunk in data:
        pending.append(chunk)
        size += len(chunk)
        if size < threshold:
            continue
        buf = b"".join(pending)
        cut = buf.rfind(b"\n") + 1
        if cut == 0:  # one line longer than a block: wait for its end (without re-joining each chunk)
            pending, threshold = [buf], size * 2
            continue
        block, rest = buf[:cut], buf[cut:]
        yield line, block
        line += block.count(b"\n")
        pending, size, threshold = ([rest] if rest else []), len(rest), block_bytes
    buf = b"".join(pending)
    if buf.strip():
        yield line, buf


def _gunzip(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """The bytes of `chunks`, decompressed if they start with the gzip magic (members concatenated)."""
    it = iter(chunks)
    first = b""
    for chunk in it:  # the magic may straddle tiny chunks
        first += chunk
        if len(first) >= 2:
            break
    if first[:2] != GZIP_MAGIC:
        yield first
        yield from it
        return
    dec = _inflate.decompressobj(31)
    pending = first
    try:
        while True:
            while pending:
                out = dec.decompress(pending, 1 << 20)
                if out:
                    yield out
                if dec.eof:  # another gzip member may follow (concatenated .gz files are valid)
                    pending = dec.unused_data
                    if pending:
                        dec = _inflate.decompressobj(31)
                else:
                    pending = dec.unconsumed_tail
            nxt = next(it, None)
            if nxt is None:
                break
            pending = nxt
            if dec.eof:
                dec = _inflate.decompressobj(31)
    except _INFLATE_ERRORS as exc:
        raise CloseExportError(f"Cannot read {name}: corrupt gzip data ({exc})") from exc
    if not dec.eof:
        raise CloseExportError(f"Cannot read {name}: the gzip stream is truncated")


def _iter_stream(
    p: Path, raw: io.BufferedReader, chunk_size: int, max_document_chars: int
) -> Iterator[dict[str, Any]]:
    try:
        with raw:
            data = _decompressed(raw)
            # Sniff without consuming; never readline() first: a one-line JSON array would be read
            # whole into memory.
            head = data.peek(65536)[:65536].decode("utf-8-sig", errors="replace")
            _check_not_csv(p, head.split("\n", 1)[0])
            if head.lstrip().startswith("["):
                text = io.TextIOWrapper(data, encoding="utf-8-sig", newline="")
                yield from _iter_array(p, text, text.read(65536), chunk_size, max_document_chars)
            else:
                yield from _iter_lines(p, data)
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # corrupt gzip, truncated stream, bad bytes
        raise CloseExportError(f"Cannot read Close export {p}: {exc}") from exc


def _as_lead(p: Path, obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CloseExportError(f"{p} {where}: expected a lead object, found {type(obj).__name__}")
    return obj


def _iter_lines(p: Path, data: IO[bytes]) -> Iterator[dict[str, Any]]:
    # Binary lines straight into orjson: no text decoding layer on the hot path.
    for lineno, line in enumerate(data, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            yield decode_lead_line(text, f"line {lineno}")
        except ExportLineError as exc:
            raise CloseExportError(f"{p} {exc}") from exc


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
