"""HTTP helpers shared by the route modules: JSON responses with OData headers, Prefer parsing, base URLs."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from emulators.dataverse.annotations import NONE, AnnotationFilter
from emulators.dataverse.batch import PARSED_BODY
from emulators.dataverse.errors import JSON_MEDIA_TYPE, DataverseError

API_ROOT = "/api/data/v9.2"
_PREFERENCE = re.compile(r'(?:[^,"]|"[^"]*")+')


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=JSON_MEDIA_TYPE,
        headers={"OData-Version": "4.0", **(headers or {})},
    )


def no_content(headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=204, headers={"OData-Version": "4.0", **(headers or {})})


def service_headers() -> dict[str, str]:
    req_id = str(uuid.uuid4())
    return {"REQ_ID": req_id, "x-ms-service-request-id": req_id}


@dataclass
class Prefer:
    representation: bool = False
    max_page_size: int | None = None
    annotations: AnnotationFilter = NONE  # odata.include-annotations (falsy when absent)

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        out = cls()
        # Commas separate preferences, except inside a quoted value (an annotation filter lists several).
        for raw in _PREFERENCE.findall(header or ""):
            item = raw.strip()
            low = item.lower()
            if low == "return=representation":
                out.representation = True
            elif low.startswith("odata.maxpagesize="):
                try:
                    out.max_page_size = max(1, int(item.split("=", 1)[1].strip().strip('"')))
                except ValueError:
                    raise DataverseError(400, "0x0", f"Invalid Prefer value '{item}'.") from None
            elif low.startswith("odata.include-annotations="):
                out.annotations = AnnotationFilter.parse(item.split("=", 1)[1])
        return out


def base_url(request: Request, org_url: str | None) -> str:
    """The environment URL (scheme://host[:port]) used in OData-EntityId, @odata.context and nextLink."""
    if org_url:
        return org_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}"


@dataclass
class ParsedBody:
    """A request body parsed before it reached its route (edge.py): the document, or why it is not JSON."""

    document: Any = None
    error: ValueError | None = None


def parse_body(buffer: bytearray) -> ParsedBody:
    """What `read_json` makes of the body in `buffer`, emptying the buffer on the way.

    `json.loads(bytes)` decodes the bytes to text and parses that, holding the body three times at once
    (bytes, text, document); a bulk message of file uploads is ~100 MB. The body is parsed from its bytes
    by orjson wherever orjson answers what json.loads would (_orjson_document): two forms at most (bytes,
    document), and about half the CPU of decoding and parsing (measured on bulk messages of 1 MB base64
    bodies), which the emulator's one thread spends on every uploaded file. Elsewhere the same two steps
    as json.loads let the bytes go once decoded (two forms at most again: a body that is not ASCII can
    decode to text of 2 or 4 bytes a character); the document and every error are the same."""
    if not buffer or buffer.isspace():  # what read_json answers {} for (strip() would copy the body)
        return ParsedBody({})
    document = _orjson_document(buffer)
    if document is not _NO_ANSWER:
        buffer.clear()
        return ParsedBody(document)
    try:
        text = buffer.decode(json.detect_encoding(buffer), "surrogatepass")  # as json.loads does
    except ValueError as exc:
        return ParsedBody(error=exc)
    buffer.clear()
    try:
        return ParsedBody(json.JSONDecoder().decode(text))
    except ValueError as exc:
        return ParsedBody(error=exc)


_NO_ANSWER = object()
_INT64_BOUND = 2.0**63  # orjson answers an integer literal of this magnitude or more with a float


def _orjson_document(buffer: bytearray) -> Any:
    """orjson's document of the body, or _NO_ANSWER where it may differ from json.loads's: orjson refuses
    what json.loads accepts (NaN, Infinity, lone surrogate escapes, a byte order mark, UTF-16) and turns
    integers beyond 64 bits into floats; everything else it answers the same."""
    try:
        document = orjson.loads(buffer)
    except orjson.JSONDecodeError:
        return _NO_ANSWER
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, float) and abs(node) >= _INT64_BOUND and node.is_integer():
            return _NO_ANSWER
    return document


async def read_json(request: Request, entity_set: str = "") -> Any:
    parsed: ParsedBody | None = request.scope.get("state", {}).pop(PARSED_BODY, None)
    try:
        if parsed is not None:  # the body was read and parsed at the edge, which dropped its bytes
            if parsed.error is not None:
                raise parsed.error
            return parsed.document
        raw = await request.body()
        if not raw.strip():
            return {}
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataverseError(
            400,
            "0x80048d19",
            f"Error identified in Payload provided by the user for Entity :'{entity_set}'  ---->  InnerException : "
            f"Microsoft.OData.ODataException: The request body is not valid JSON ({exc}).",
        ) from None


def require_object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise DataverseError(400, "0x80048d19", f"The body of {what} must be a JSON object.")
    return body
