"""Authenticated file URLs (`/go/file/...`, `/go/sms/...`, `/call/<acti>/recording/`) and their downloads.

GET of an object URL with Basic auth answers 302 to a signed URL on the emulator (valid
`download_url_lifetime` seconds) that streams the bytes with `iter_chunks`: generated from a `FileBlob`'s
seed, or read from disk for a file a client uploaded (uploads.py), so no file is ever held in memory whole.
Unknown paths answer 404 like the API. Injected storage faults (faults.py) answer as S3 does: an XML
500/503, or the first half of the body and then a dropped connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .errors import not_found
from .faults import DroppedConnection

if TYPE_CHECKING:
    from emulators.orgdata import FileBlob

    from .state import EmulatorState

SIGNED_PREFIX = "/_s3/files/"


def find_blob(state: EmulatorState, path: str) -> tuple[str, FileBlob]:
    """The org.files entry for a request path (with or without the trailing slash)."""
    files = state.store.org.files
    key = unquote(path).lstrip("/")
    for candidate in (key, key.rstrip("/"), key.rstrip("/") + "/"):
        blob = files.get(candidate)
        if blob is not None:
            return candidate, blob
    raise not_found("File")


def redirect_to_signed(state: EmulatorState, root: str, path: str) -> Response:
    key, _ = find_blob(state, path)
    target = state.signer.sign(SIGNED_PREFIX + key, SIGNED_PREFIX + quote(key, safe="/"))
    return RedirectResponse(root + target, status_code=302)


# A streamed body is handed to the server a piece at a time, each piece generated in a worker thread
# (Starlette iterates a plain iterator in its thread pool): large pieces keep the thread hops per file few.
# The bytes on the wire are the same whatever the piece size.
CHUNK = 1 << 20


def _chunks(blob: FileBlob) -> Iterator[bytes]:
    yield from blob.iter_chunks(CHUNK)


# S3's answers for the faults it has (its error responses are XML documents).
_STORAGE_ERRORS = {
    "500": b"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again."
    b"</Message></Error>",
    "503": b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
}


class _DroppedBody(Response):
    """A 200 with the file's headers that sends the first half of its bytes, then drops the connection."""

    def __init__(self, blob: FileBlob, headers: dict[str, str]) -> None:
        super().__init__(b"", status_code=200, media_type=blob.content_type)
        self.blob = blob
        self.file_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k.lower().encode(), v.encode()) for k, v in self.file_headers.items()]
        headers.append((b"content-type", self.blob.content_type.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        left = self.blob.size // 2
        for chunk in _chunks(self.blob):
            if left <= 0:
                break
            await send({"type": "http.response.body", "body": chunk[:left], "more_body": True})
            left -= len(chunk)
        raise DroppedConnection()


def serve_signed(state: EmulatorState, signed_path: str, params: dict[str, str]) -> Response:
    denied = state.signer.check(signed_path, params)
    if denied is not None:
        return denied
    key = signed_path[len(SIGNED_PREFIX) :]  # already percent-decoded by the server
    blob = state.store.org.files.get(key)
    if blob is None:
        return Response(
            b"<Error><Code>NoSuchKey</Code></Error>", status_code=404, media_type="application/xml"
        )
    filename = quote(blob.filename)
    headers = {
        "Content-Length": str(blob.size),
        "Content-Disposition": f"inline; filename*=UTF-8''{filename}",
    }
    fault = state.faults.next_storage_fault(signed_path)
    if fault == "drop":
        return _DroppedBody(blob, headers)
    if fault is not None:
        return Response(
            _STORAGE_ERRORS[fault],
            status_code=int(fault),
            media_type="application/xml",
            headers={"X-Emulator-Fault": fault},
        )
    return StreamingResponse(_chunks(blob), media_type=blob.content_type, headers=headers)
