"""Fast JSON (orjson when installed, else the standard library) and the response helpers built on it."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

try:  # orjson is ~10x faster; the emulator must never be the bottleneck of an extraction benchmark.
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def dumps_line(obj: Any) -> bytes:
        """`dumps(obj) + b"\\n"` without the copy (JSON lines)."""
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - exercised only where orjson is absent

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def dumps_line(obj: Any) -> bytes:
        return dumps(obj) + b"\n"

    def loads(data: bytes | str) -> Any:
        return json.loads(data)


JSONDecodeError = (ValueError, json.JSONDecodeError)

# Object URLs in the data point at Close's hosts; the emulator serves those files itself (close_api.md §4.16).
_APP_FILES = b'"https://app.close.com/go/'
_API_CALLS = b'"https://api.close.com/call/'


def rewrite_hosts(body: bytes, root: bytes) -> bytes:
    """Point attachment/recording URLs at the emulator (`root` = b"http://host:port", no trailing slash).

    Only string values that *start* with the file URL prefixes are touched: inside a JSON string a quote is
    always escaped, so `"https://app.close.com/go/` can only be the start of a value.
    """
    if _APP_FILES in body:
        body = body.replace(_APP_FILES, b'"' + root + b"/go/")
    if _API_CALLS in body:
        body = body.replace(_API_CALLS, b'"' + root + b"/call/")
    return body


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status_code=status, headers=headers, media_type="application/json")


def raw_json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")
