"""Dataverse error type and the real error body shape ({"error": {"code", "message"}})."""

from __future__ import annotations

import json

from starlette.responses import Response

ODATA_HEADERS = {"OData-Version": "4.0"}
JSON_MEDIA_TYPE = "application/json; odata.metadata=minimal"


class DataverseError(Exception):
    """A failure the emulator answers with the real HTTP status, hex error code and message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def error_response(err: DataverseError) -> Response:
    headers = {**ODATA_HEADERS, **err.headers}
    return Response(
        json.dumps(err.body()),
        status_code=err.status,
        media_type=JSON_MEDIA_TYPE,
        headers=headers,
    )


# Frequently raised errors, with the codes and messages of reference §2.6.
def not_found(table: str, record_id: str) -> DataverseError:
    return DataverseError(404, "0x80040217", f"Entity '{table}' With Id = {record_id} Does Not Exist")


def bad_request(message: str, code: str = "0x80040203") -> DataverseError:
    return DataverseError(400, code, message)
