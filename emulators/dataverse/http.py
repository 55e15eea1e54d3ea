"""HTTP helpers shared by the route modules: JSON responses with OData headers, Prefer parsing, base URLs."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulators.dataverse.annotations import NONE, AnnotationFilter
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


async def read_json(request: Request, entity_set: str = "") -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
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
