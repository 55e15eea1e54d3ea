"""``POST /api/data/v9.2/$batch``: multipart/mixed batches and changesets (reference §3).

Each inner request is dispatched in-process to the same ASGI app (so records, bulk messages and metadata
all work inside a batch) with the outer caller's identity; service protection counts the batch as one
request charged per part (see protection.py). Behaviour worth knowing:

* Changesets are atomic through ``app.state.store.transaction()``: the first failing part rolls the
  changeset back and is the changeset's only response part. GET is refused inside a changeset, every
  changeset part needs a ``Content-ID``, and ``$n`` references resolve only within the same changeset
  (in the URL — ``PATCH $1``, ``$1/x/$ref`` — and in ``@odata.bind`` / ``@odata.id`` values).
* Without ``Prefer: odata.continue-on-error`` processing stops at the first failure: the outer status is
  400 and the body holds the responses so far, ending with the error. With it, every part runs and the
  outer status is 200.
* At most 1000 requests (changeset operations included); more is an outer 400.
* Lines must end in CRLF: a part framed with bare LF that carries a body fails with the real
  ``0x80048d19 … Stream was not readable`` error (body-less parts such as GET still work).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message

from emulators.dataverse.errors import ODATA_HEADERS, DataverseError, error_response

API_ROOT = "/api/data/v9.2/"
MAX_REQUESTS = 1000
INNER_SCOPE_KEY = "close2d365.batch_inner"  # tells the edge middleware: already authenticated, not counted
PARSED_BODY = "close2d365.parsed_body"  # request state: a bulk body parsed at the edge (http.ParsedBody)

_CANONICAL = {
    "odata-version": "OData-Version",
    "odata-entityid": "OData-EntityId",
    "req_id": "REQ_ID",
    "etag": "ETag",
    "content-id": "Content-ID",
}
_SKIPPED_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "date", "server", "connection"}
_REF = re.compile(r"^\$(\d+)((?:/.*)?)$")


class BatchFormatError(Exception):
    """The body is not a well-formed batch; answered as a plain (non-multipart) 400."""


@dataclass
class Part:
    method: str = ""
    target: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_id: str | None = None
    lf_framing: bool = False
    error: str | None = None  # a malformed request line/headers: answered as this part's 400


@dataclass
class Changeset:
    parts: list[Part]


@dataclass
class Result:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    content_id: str | None = None


def _boundary(content_type: str) -> str:
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/mixed":
        raise BatchFormatError(
            f"The batch request must have Content-Type multipart/mixed with a boundary, got '{content_type}'."
        )
    match = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', params, re.IGNORECASE)
    if not match:
        raise BatchFormatError(
            "The multipart/mixed Content-Type of the batch request has no boundary parameter."
        )
    return match.group(2) or match.group(1)


def _split(body: bytes, boundary: str, outermost: bool = False) -> list[tuple[bytes, bool]]:
    """Split a multipart body into (part bytes, badly-framed) pairs, per RFC 2046 delimiters.

    A part is badly framed when a delimiter around it ends in bare LF, or (outermost body only) when the
    closing delimiter is not followed by CRLF: the real service then cannot read the last part's body.
    """
    delim = re.compile(rb"(^|\r\n|\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(\r\n|\n|$)")
    matches = list(delim.finditer(body))
    if not matches:
        raise BatchFormatError(f"The batch body contains no delimiter '--{boundary}'.")
    parts: list[tuple[bytes, bool]] = []
    for current, following in zip(matches, matches[1:], strict=False):
        if current.group(2):
            break
        lf = current.group(3) == b"\n" or following.group(1) == b"\n"
        lf = lf or bool(outermost and following.group(2) and following.group(3) != b"\r\n")
        parts.append((body[current.end() : following.start()], lf))
    if not any(m.group(2) for m in matches):
        raise BatchFormatError(f"The batch body is missing its closing delimiter '--{boundary}--'.")
    return parts


def _head_and_body(data: bytes) -> tuple[list[str], bytes, bool]:
    """Header lines, body and whether the head used bare LF line endings."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        head, body = data[:crlf], data[crlf + 4 :]
    elif lf != -1:
        head, body = data[:lf], data[lf + 2 :]
    else:
        head, body = data, b""
    bare_lf = re.search(rb"(?<!\r)\n", head) is not None or (crlf == -1 and lf != -1)
    lines = [line.rstrip("\r") for line in head.decode("utf-8", "replace").split("\n") if line.strip()]
    return lines, body, bare_lf


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise BatchFormatError(f"Invalid header line in the batch body: '{line}'.")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _parse_part(data: bytes, lf: bool) -> Part | Changeset:
    lines, content, bare = _head_and_body(data)
    mime = _headers(lines)
    ctype = _get(mime, "content-type") or ""
    if ctype.lower().startswith("multipart/mixed"):
        inner = [_parse_part(chunk, chunk_lf) for chunk, chunk_lf in _split(content, _boundary(ctype))]
        if any(isinstance(p, Changeset) for p in inner):
            raise BatchFormatError("Change sets cannot be nested inside a change set.")
        return Changeset([p for p in inner if isinstance(p, Part)])
    part = Part(content_id=_get(mime, "content-id"), lf_framing=lf or bare)
    if not ctype.lower().startswith("application/http"):
        part.error = f"Each batch part must have Content-Type application/http, got '{ctype}'."
        return part
    req_lines, body, req_bare = _head_and_body(content)
    part.lf_framing = part.lf_framing or req_bare
    if not req_lines:
        part.error = "The batch part has no HTTP request line."
        return part
    pieces = req_lines[0].split()
    if len(pieces) != 3 or not pieces[2].upper().startswith("HTTP/"):
        part.error = f"Invalid HTTP request line in the batch part: '{req_lines[0]}'."
        return part
    part.method, part.target = pieces[0].upper(), pieces[1]
    try:
        part.headers = _headers(req_lines[1:])
    except BatchFormatError as exc:
        part.error = str(exc)
    part.content_id = part.content_id or _get(part.headers, "content-id")
    # the CRLF before the next delimiter belongs to the delimiter; blank padding lines carry nothing
    part.body = b"" if not body.strip() else body
    return part


def parse_batch(body: bytes, content_type: str) -> list[Part | Changeset]:
    items = [_parse_part(chunk, lf) for chunk, lf in _split(body, _boundary(content_type), outermost=True)]
    top = len(items)
    total = sum(len(i.parts) if isinstance(i, Changeset) else 1 for i in items)
    for item in items:
        if isinstance(item, Changeset) and len(item.parts) > MAX_REQUESTS:
            raise BatchFormatError(
                "The current change set contains too many operations. A maximum number of "
                f"'{MAX_REQUESTS}' operations are allowed in a change set."
            )
    if top > MAX_REQUESTS or total > MAX_REQUESTS:
        raise BatchFormatError(
            "The current batch message contains too many parts. Only batch messages with a maximum number "
            f"of '{MAX_REQUESTS}' query operations, including changeset operations, are allowed."
        )
    return items


def count_targets(path: str, body: bytes | bytearray) -> int:
    """Records in a bulk message body (Targets length), else 0."""
    if not path.rstrip("/").endswith("Multiple") or not body:
        return 0
    try:
        return targets_in(json.loads(body))
    except ValueError:
        return 0


def targets_in(document: Any) -> int:
    """Records in a parsed bulk message body (Targets length), else 0."""
    targets = document.get("Targets") if isinstance(document, dict) else None
    return len(targets) if isinstance(targets, list) else 0


def _error_result(status: int, code: str, message: str, content_id: str | None = None) -> Result:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [("Content-Type", "application/json; odata.metadata=minimal"), ("OData-Version", "4.0")]
    return Result(status, [("REQ_ID", str(uuid.uuid4())), *headers], body, content_id)


class BatchProcessor:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        try:
            items = parse_batch(body, request.headers.get("content-type", ""))
        except BatchFormatError as exc:
            return error_response(DataverseError(400, "0x0", str(exc)))
        prefer = [p.strip().lower() for p in request.headers.get("prefer", "").split(",")]
        keep_going = any(p in ("odata.continue-on-error", "odata.continue-on-error=true") for p in prefer)
        meter = getattr(request.state, "edge_meter", None)
        chunks: list[bytes] = []
        failed = False
        for item in items:
            if isinstance(item, Changeset):
                results, ok = await self._changeset(request, item, meter)
                chunks.append(_changeset_chunk(results) if ok else _part_chunk(results[-1]))
            else:
                result = await self._run(request, item, {}, meter)
                ok = result.status < 400
                chunks.append(_part_chunk(result))
            if not ok:
                failed = True
                if not keep_going:
                    break
        boundary = f"batchresponse_{uuid.uuid4()}"
        payload = b"".join(f"--{boundary}\r\n".encode() + chunk for chunk in chunks)
        payload += f"--{boundary}--\r\n".encode()
        headers = dict(ODATA_HEADERS)
        if keep_going:
            headers["Preference-Applied"] = "odata.continue-on-error"
        status = 400 if failed and not keep_going else 200
        return Response(payload, status, headers, media_type=f"multipart/mixed; boundary={boundary}")

    async def _changeset(self, request: Request, cs: Changeset, meter: Any) -> tuple[list[Result], bool]:
        refs: dict[str, str] = {}
        results: list[Result] = []
        store = getattr(request.app.state, "store", None)
        try:
            with store.transaction() if store is not None else _no_transaction():
                for part in cs.parts:
                    if part.content_id is None:
                        result = _error_result(
                            400,
                            "0x80060888",
                            "Content-ID header is required for every request in a change set.",
                        )
                    elif part.method == "GET":
                        result = _error_result(
                            400,
                            "0x0",
                            "GET requests are not allowed inside a change set; send them as separate batch parts.",
                            part.content_id,
                        )
                    else:
                        result = await self._run(request, part, refs, meter)
                    results.append(result)
                    if result.status >= 400:
                        raise _ChangesetFailed
                    entity = _get(result.headers, "odata-entityid") or _get(result.headers, "location")
                    if entity and part.content_id:
                        refs[part.content_id] = entity
        except _ChangesetFailed:
            return results, False
        return results, True

    async def _run(self, request: Request, part: Part, refs: dict[str, str], meter: Any) -> Result:
        if meter is not None:
            meter.records += max(1, count_targets(part.target, part.body))
        if part.error:
            return _error_result(400, "0x0", part.error, part.content_id)
        try:
            path, query = _resolve_target(part.target, refs)
            body = _resolve_body(part, refs)
        except DataverseError as err:
            return _error_result(err.status, err.code, err.message, part.content_id)
        if path.rstrip("/").endswith("/$batch"):
            return _error_result(400, "0x0", "Batch requests cannot be nested.", part.content_id)
        if part.lf_framing and body:
            entity_set = (
                path[len(API_ROOT) :].split("(")[0].split("/")[0] if path.startswith(API_ROOT) else path
            )
            return _error_result(400, "0x80048d19", _stream_not_readable(entity_set), part.content_id)
        result = await dispatch(self.app, request, part.method, path, query, part.headers, body)
        result.content_id = part.content_id
        return result


class _ChangesetFailed(Exception):
    pass


class _no_transaction:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stream_not_readable(entity_set: str) -> str:
    return (
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information "
        "on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293 ---->  "
        "InnerException : System.ArgumentException: Stream was not readable.\r\n   at "
        "System.IO.StreamReader..ctor(Stream stream, Encoding encoding, Boolean detectEncodingFromByteOrderMarks, "
        "Int32 bufferSize, Boolean leaveOpen) (the $batch body must use CRLF line endings)."
    )


def _missing_ref(ref: str) -> DataverseError:
    return DataverseError(400, "0x0", f"Content-ID Reference: '{ref}' does not exist in the batch context.")


def _resolve_target(target: str, refs: dict[str, str]) -> tuple[str, str]:
    match = _REF.match(target)
    if match:
        ref = f"${match.group(1)}"
        if match.group(1) not in refs:
            raise _missing_ref(ref)
        target = refs[match.group(1)] + match.group(2)
    parts = urlsplit(target)
    path = parts.path
    if not parts.scheme and not path.startswith("/"):
        path = API_ROOT + path  # relative to the service root, as OData allows
    return path, parts.query


def _resolve_body(part: Part, refs: dict[str, str]) -> bytes:
    if not part.body or b"$" not in part.body:
        return part.body
    try:
        data = json.loads(part.body)
    except ValueError:
        return part.body  # not JSON: the handler reports it
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if isinstance(value, str) and (key.endswith("@odata.bind") or key == "@odata.id"):
                match = _REF.match(value)
                if match:
                    if match.group(1) not in refs:
                        raise _missing_ref(f"${match.group(1)}")
                    path = urlsplit(refs[match.group(1)]).path
                    value = (
                        "/" + path[len(API_ROOT) :] + match.group(2) if path.startswith(API_ROOT) else path
                    )
                    changed = True
            out[key] = walk(value)
        return out

    resolved = walk(data)
    return json.dumps(resolved).encode() if changed else part.body


async def dispatch(
    app: ASGIApp,
    outer: Request,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> Result:
    """Run one inner request through the app in-process and collect its response."""
    outer_scope = outer.scope
    state = {k: v for k, v in outer_scope.get("state", {}).items() if k != "edge_meter"}
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw_headers = [(k, v) for k, v in raw_headers if k not in (b"host", b"content-length")]
    raw_headers.append((b"host", outer.headers.get("host", "localhost").encode("latin-1")))
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": outer_scope.get("asgi", {"version": "3.0"}),
        "http_version": "1.1",
        "method": method,
        "scheme": outer_scope.get("scheme", "https"),
        "path": unquote(path),
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": query.encode("latin-1", "replace"),
        "root_path": "",
        "headers": raw_headers,
        "server": outer_scope.get("server"),
        "client": outer_scope.get("client"),
        "state": state,
        "extensions": {},
        INNER_SCOPE_KEY: True,
    }
    sent = False
    start: Message | None = None
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except DataverseError as err:  # an app without a DataverseError handler
        if start is None:
            return _error_result(err.status, err.code, err.message)
    except Exception as exc:  # noqa: BLE001 - one broken part must not break the whole batch
        if start is None:
            return _error_result(500, "0x80040216", f"An unexpected error occurred: {exc}")
    if start is None:
        return _error_result(
            500, "0x80040216", "An unexpected error occurred: the request produced no response."
        )
    out_headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in start.get("headers", [])
        if k.decode("latin-1").lower() not in _SKIPPED_RESPONSE_HEADERS
    ]
    return Result(int(start["status"]), out_headers, b"".join(chunks))


def _canonical(name: str) -> str:
    lower = name.lower()
    if lower.startswith("x-ms-"):
        return lower  # the service sends its x-ms-* headers in lower case
    return _CANONICAL.get(lower) or "-".join(w[:1].upper() + w[1:] for w in lower.split("-"))


def _part_chunk(result: Result) -> bytes:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if result.content_id:
        head += f"Content-ID: {result.content_id}\r\n"
    try:
        reason = HTTPStatus(result.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {result.status} {reason}".rstrip()]
    lines += [f"{_canonical(k)}: {v}" for k, v in result.headers]
    return (head + "\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + result.body + b"\r\n"


def _changeset_chunk(results: list[Result]) -> bytes:
    boundary = f"changesetresponse_{uuid.uuid4()}"
    out = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode()
    for result in results:
        out += f"--{boundary}\r\n".encode() + _part_chunk(result)
    return out + f"--{boundary}--\r\n".encode()
