"""Encoding and decoding of Dataverse `$batch` bodies (multipart/mixed, OData v4; reference §3).

Pure functions: no HTTP. The wire rules that matter and are easy to get wrong:
- every line ends in CRLF (bare LF makes Dataverse fail the part with 0x80048d19, reference §3.1);
- changesets are nested multipart parts, each request in them carries a `Content-ID`;
- GET is not allowed inside a changeset; at most 1000 requests per batch;
- the response boundary is new (`batchresponse_<guid>`) and must be read from the response Content-Type;
- a failed changeset may come back as ONE error part instead of a nested multipart.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

CRLF = "\r\n"
MAX_BATCH_REQUESTS = 1000


class BatchEncodingError(ValueError):
    """A `$batch` that Dataverse would refuse; raised before anything is sent."""


class BatchDecodingError(ValueError):
    """A `$batch` response that is not the multipart body the OData protocol promises."""


@dataclass
class BatchRequest:
    method: str
    url: str  # relative to the Web API root ("accounts"), absolute, or a "$1" Content-ID reference
    body: dict[str, Any] | list[Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_id: str | None = None


@dataclass
class ChangeSet:
    """Requests that succeed or roll back together (ExecuteTransaction)."""

    requests: list[BatchRequest]


@dataclass
class BatchPartResponse:
    status: int
    reason: str
    headers: dict[str, str]  # keys lower-cased
    body: str
    content_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    @property
    def error(self) -> tuple[str, str] | None:
        """(code, message) of a failed part, from the standard `{"error": {...}}` body."""
        if self.ok:
            return None
        try:
            err = (self.json() or {}).get("error") or {}
        except (ValueError, AttributeError):
            return ("", self.body.strip() or self.reason)
        return (str(err.get("code", "")), str(err.get("message", "")) or self.reason)

    @property
    def entity_id(self) -> str | None:
        """The GUID in `OData-EntityId` (or `Location`) of a create/upsert answer."""
        ref = self.headers.get("odata-entityid") or self.headers.get("location")
        return entity_id_from_url(ref) if ref else None


_ID_RE = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


def entity_id_from_url(url: str) -> str | None:
    match = _ID_RE.search(url)
    return match.group(1).lower() if match else None


def _resolve_url(url: str, api_root: str) -> str:
    if url.startswith(("$", "http://", "https://", "/")):
        return url
    return api_root.rstrip("/") + "/" + url


def _encode_request(req: BatchRequest, api_root: str, in_changeset: bool) -> list[str]:
    method = req.method.upper()
    if in_changeset and method == "GET":
        raise BatchEncodingError("GET is not allowed inside a changeset; put reads outside changesets")
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if req.content_id is not None:
        lines.append(f"Content-ID: {req.content_id}")
    lines += ["", f"{method} {_resolve_url(req.url, api_root)} HTTP/1.1"]
    body = req.body
    headers = dict(req.headers)
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json; type=entry"
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("")
    if body is None:
        lines.append("")
    else:
        lines.append(body if isinstance(body, str) else json.dumps(body, separators=(",", ":")))
    return lines


def encode_batch(
    items: list[BatchRequest | ChangeSet], api_root: str, boundary: str | None = None
) -> tuple[str, bytes]:
    """Return (Content-Type header, body bytes) for `POST $batch`. CRLF line endings throughout."""
    count = sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)
    if count == 0:
        raise BatchEncodingError("a $batch needs at least one request")
    if count > MAX_BATCH_REQUESTS:
        raise BatchEncodingError(
            f"a $batch may hold at most {MAX_BATCH_REQUESTS} requests, got {count}; split it"
        )
    boundary = boundary or f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, ChangeSet):
            if not item.requests:
                raise BatchEncodingError("an empty changeset cannot be sent")
            cs = f"changeset_{uuid.uuid4()}"
            lines += [f"Content-Type: multipart/mixed; boundary={cs}", ""]
            for n, req in enumerate(item.requests, start=1):
                if req.content_id is None:
                    req = BatchRequest(req.method, req.url, req.body, req.headers, str(n))
                lines.append(f"--{cs}")
                lines += _encode_request(req, api_root, in_changeset=True)
            lines.append(f"--{cs}--")
        else:
            lines += _encode_request(item, api_root, in_changeset=False)
    lines.append(f"--{boundary}--")
    lines.append("")
    return f"multipart/mixed; boundary={boundary}", CRLF.join(lines).encode("utf-8")


_BOUNDARY_RE = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY_RE.search(content_type or "")
    if not match or not content_type.lower().lstrip().startswith("multipart/"):
        raise BatchDecodingError(f"expected a multipart/mixed response, got Content-Type {content_type!r}")
    return match.group(1).strip()


def _split_parts(text: str, boundary: str) -> list[str]:
    delim = "--" + boundary
    parts: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        bare = line.rstrip("\r").rstrip()
        if bare == delim + "--":  # the close delimiter: anything after it is epilogue
            if current is not None:
                parts.append("\n".join(current))
            break
        if bare == delim:
            if current is not None:
                parts.append("\n".join(current))
            current = []
            continue
        if current is not None:
            current.append(line)
    return parts


def _split_head(text: str) -> tuple[dict[str, str], str]:
    """Split "headers CRLF CRLF body" (tolerating bare LF) into lower-cased headers and the body."""
    lines = text.split("\n")
    headers: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].rstrip("\r") == "" and not headers:
        i += 1  # leading blank lines before the part headers
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if line == "":
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = "\n".join(lines[i:])
    return headers, body.removesuffix("\r")


def _parse_http(text: str, content_id: str | None) -> BatchPartResponse:
    text = text.lstrip("\r\n")
    status_line, _, rest = text.partition("\n")
    pieces = status_line.strip().split(" ", 2)
    if len(pieces) < 2 or not pieces[0].startswith("HTTP/") or not pieces[1].isdigit():
        raise BatchDecodingError(f"malformed status line in a $batch part: {status_line.strip()!r}")
    headers, body = _split_head(rest)
    return BatchPartResponse(
        int(pieces[1]), pieces[2] if len(pieces) > 2 else "", headers, body.strip("\r\n"), content_id
    )


def decode_batch(content_type: str, body: bytes | str) -> list[BatchPartResponse | list[BatchPartResponse]]:
    """Parse a `$batch` response: one entry per top-level part; a changeset response is a list."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    out: list[BatchPartResponse | list[BatchPartResponse]] = []
    for part in _split_parts(text, boundary_of(content_type)):
        headers, payload = _split_head(part)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/"):
            inner: list[BatchPartResponse] = []
            for sub in _split_parts(payload, boundary_of(ctype)):
                sub_headers, sub_payload = _split_head(sub)
                inner.append(_parse_http(sub_payload, sub_headers.get("content-id")))
            out.append(inner)
        else:
            out.append(_parse_http(payload, headers.get("content-id")))
    return out


def match_responses(
    items: list[BatchRequest | ChangeSet],
    decoded: list[BatchPartResponse | list[BatchPartResponse]],
) -> list[BatchPartResponse | None]:
    """One response per request (flattened in request order), None where processing stopped early.

    A changeset answered with a single error part gives that error to every request of the changeset
    (they were all rolled back); changeset answers are matched by Content-ID, falling back to position.
    """
    flat: list[BatchPartResponse | None] = []
    for pos, item in enumerate(items):
        entry = decoded[pos] if pos < len(decoded) else None
        if isinstance(item, BatchRequest):
            flat.append(entry[0] if isinstance(entry, list) and entry else entry)  # type: ignore[arg-type]
            continue
        if entry is None or isinstance(entry, BatchPartResponse):
            flat += [entry] * len(item.requests)
            continue
        by_id = {r.content_id: r for r in entry if r.content_id is not None}
        for n, req in enumerate(item.requests, start=1):
            cid = req.content_id if req.content_id is not None else str(n)
            flat.append(by_id.get(cid) or (entry[n - 1] if n - 1 < len(entry) else None))
    return flat
