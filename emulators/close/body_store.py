"""Uploaded file bodies on disk: the request is spooled to a file, its form fields are found by offset, and
the file part is copied into the emulator's body directory, so an upload is never held in memory whole.

The generated org's attachments and call recordings need none of this: a `FileBlob` derives its bytes
block by block from a seed (emulators/orgdata/model.py) and files.py streams them. Bytes a client uploads
have no seed; they stand in S3 (close_api.md §4.16) and are kept in a temporary directory that goes with
the emulator.
"""

from __future__ import annotations

import hashlib
import mmap
import shutil
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

CHUNK = 1 << 16


class BodyDirectory:
    """A temporary directory of body files, made on first use and removed with its owner."""

    def __init__(self) -> None:
        self._path: Path | None = None

    def new_file(self, suffix: str) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="close-emulator-bodies-"))
            weakref.finalize(self, shutil.rmtree, self._path, True)
        return self._path / f"{uuid.uuid4().hex}{suffix}"


async def spool(chunks: AsyncIterator[bytes], path: Path) -> None:
    """Write a request body to `path` as it arrives."""
    with open(path, "wb") as fh:
        async for chunk in chunks:
            fh.write(chunk)


def multipart_fields(path: Path, content_type: str) -> dict[str, tuple[int, int]]:
    """Offsets (start, end) in the file at `path` of each field of a multipart/form-data body (RFC 7578)."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary or path.stat().st_size == 0:
        return {}
    delimiter = b"--" + boundary.encode()
    out: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        starts = []
        at = mm.find(delimiter)
        while at != -1:
            starts.append(at)
            at = mm.find(delimiter, at + len(delimiter))
        ends = [*starts[1:], len(mm)]
        for start, end in zip(starts, ends, strict=True):
            start += len(delimiter)
            if mm[start : start + 2] == b"--":  # the closing delimiter
                break
            if mm[start : start + 2] == b"\r\n":
                start += 2
            head_end = mm.find(b"\r\n\r\n", start, end)
            head_stop, data = (end, (end, end)) if head_end == -1 else (head_end, (head_end + 4, end))
            if data[1] - data[0] >= 2 and mm[data[1] - 2 : data[1]] == b"\r\n":
                data = (data[0], data[1] - 2)
            name = _field_name(mm[start:head_stop].decode("utf-8", "replace"))
            if name is not None:
                out[name] = data
    return out


def _field_name(head: str) -> str | None:
    name = None
    for line in head.split("\r\n"):
        if line.lower().startswith("content-disposition:"):
            for item in line.split(";")[1:]:
                key, _, value = item.strip().partition("=")
                if key == "name":
                    name = value.strip('"')
    return name


def read_range(path: Path, span: tuple[int, int]) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(span[0])
        return fh.read(span[1] - span[0])


def copy_range(source: Path, span: tuple[int, int], target: Path) -> str:
    """Copy bytes `span` of `source` into a new file `target`; returns their MD5 (S3's ETag of an object)."""
    digest = hashlib.md5()  # noqa: S324 - S3's ETag is the MD5 of the object
    left = span[1] - span[0]
    with open(source, "rb") as src, open(target, "wb") as dst:
        src.seek(span[0])
        while left > 0:
            chunk = src.read(min(CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            dst.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def iter_file(path: Path, chunk: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while piece := fh.read(chunk):
            yield piece
