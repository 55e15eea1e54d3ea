"""File bodies of records kept on disk, apart from the in-memory record store.

Dataverse keeps the data of note attachments in file storage, not in the database rows: the AnnotationBase
table counts against the environment's *file* capacity (learn.microsoft.com power-platform/admin/
capacity-storage, "File"). The emulator does the same so that a large org's attachments do not live in its
memory: a row holds a `StoredBody` (a file name and its length) in place of the text, and the text is read
back from disk only when a response carries it (`plain`).

The Web API contract is unchanged: `documentbody` is written and read as the base64 text the client sent
(stored as given, so a read is byte-identical). Each write gets a new file and a file is never rewritten,
so a rolled-back transaction can restore the previous row's body as it was. A body no longer referenced by
any row is deleted; with persistence on (persistence.py) only once the saved state no longer refers to it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The columns whose values are file bodies, per table (annotation.documentbody holds the note's attachment).
BODY_COLUMNS: dict[str, tuple[str, ...]] = {"annotation": ("documentbody",)}
JSON_MARKER = "$stored_body"  # how a StoredBody is written in the persisted state (persistence.py)


@dataclass(frozen=True, eq=False)
class StoredBody:
    """A reference to one body on disk; identity (not value) equality, since each write has its own file."""

    path: Path
    length: int  # characters of the stored text

    def read(self) -> str:
        return self.path.read_text(encoding="ascii")

    def to_json(self) -> dict[str, Any]:
        return {JSON_MARKER: self.path.name, "length": self.length}


_BASE64_AND_PAD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_PADDING = {2: 2, 3: 1}  # digits of an unfinished last group -> the "=" that complete it (1: never valid)
# A body is checked and written a slice at a time: its whole encoding would be a new ~50-100 MB block for
# each body (fresh pages the kernel maps and zeroes, under heap.py's mmap threshold), where a slice's buffer
# stays in the CPU's cache and the heap reuses it. Under LARGE_BLOCK_BYTES, so a slice never gets a mapping.
SLICE_CHARS = 256 * 1024


def decoded_size(text: str) -> int:
    """The length of `base64.b64decode(text, validate=True)`, refused (ValueError) exactly where it refuses,
    without decoding: a body of ~100 MB is checked in one pass. validate=True is binascii's strict mode
    (Python 3.11): base64 digits, not starting with "=", whose count is not one more than a multiple of 4,
    then only "=": exactly "==" after two digits of a last group, "=" after three, any number after a whole
    group. The text is read in slices of SLICE_CHARS (never encoded whole: see SLICE_CHARS)."""
    if not text.isascii():  # b64decode's UnicodeEncodeError, a ValueError
        raise ValueError("string argument should contain only ASCII characters")
    first_pad = text.find("=")
    digits = len(text) if first_pad == -1 else first_pad
    pads = len(text) - digits
    rest = digits % 4
    padded = (pads == 0 or digits > 0) if rest == 0 else pads == _PADDING.get(rest)
    if (
        not padded
        or text.count("=", digits) != pads
        or any(s.translate(None, _BASE64_AND_PAD) for s in slices(text))
    ):
        raise ValueError("Only base64 data with the padding of its last group is allowed")
    return digits // 4 * 3 + max(0, rest - 1)


def slices(text: str) -> Iterator[bytes]:
    """`text` (ASCII) as bytes, SLICE_CHARS at a time."""
    for start in range(0, len(text), SLICE_CHARS):
        yield text[start : start + SLICE_CHARS].encode("ascii")


def plain(value: Any) -> Any:
    """A column value as the client sees it: a stored body's text, anything else as it is."""
    return value.read() if isinstance(value, StoredBody) else value


def bodies_in(row: dict[str, Any] | None, table: str) -> list[StoredBody]:
    if row is None:
        return []
    return [v for c in BODY_COLUMNS.get(table, ()) if isinstance(v := row.get(c), StoredBody)]


class BodyStore:
    """The directory of one emulator's bodies: a temporary directory removed with the store by default,
    or a directory next to the persisted state once `keep_in` moved it there."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dataverse-emulator-bodies-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)
        self._lock = threading.Lock()
        self._keep_until_saved = False
        self._released: list[Path] = []

    def keep_in(self, directory: Path) -> None:
        """Store bodies in `directory` (kept across restarts) and delete released ones only when
        `take_released` hands them to the caller that saved a state without them (persistence.py)."""
        with self._lock:
            if any(self.directory.iterdir()):
                raise RuntimeError("The emulator's body directory can only move before any body is stored.")
            self._cleanup()
            directory.mkdir(parents=True, exist_ok=True)
            self.directory = directory
            self._keep_until_saved = True

    def save(self, text: str) -> StoredBody:
        path = self.directory / f"{uuid.uuid4().hex}.b64"
        with path.open("wb") as out:
            for chunk in slices(text):
                out.write(chunk)
        return StoredBody(path, len(text))

    def release(self, bodies: Iterable[StoredBody]) -> None:
        """Bodies no row refers to any more: deleted now, or after the next save with persistence on."""
        paths = [b.path for b in bodies]
        if self._keep_until_saved:
            with self._lock:
                self._released.extend(paths)
            return
        delete(paths)

    def take_released(self) -> list[Path]:
        """The released bodies to delete once a state saved from now on is on disk."""
        with self._lock:
            out, self._released = self._released, []
        return out

    def give_back(self, paths: list[Path]) -> None:
        """Released bodies whose deletion has to wait for a later save (this one failed)."""
        with self._lock:
            self._released[:0] = paths

    def from_json(self, value: Any) -> Any:
        """A persisted column value: a marker becomes the StoredBody it names, anything else is kept."""
        if isinstance(value, dict) and JSON_MARKER in value:
            return StoredBody(self.directory / str(value[JSON_MARKER]), int(value["length"]))
        return value

    def remove_unreferenced(self, referenced: set[str]) -> None:
        """Delete body files the loaded state does not name (written after its last save, then lost)."""
        delete(p for p in self.directory.glob("*.b64") if p.name not in referenced)


def delete(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
