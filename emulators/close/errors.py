"""API errors with the bodies the real Close API sends (close_api.md §1.4)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised by handlers; turned into a JSON response with `status` and `body`."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, {"error": message})


def field_error(field: str, message: str) -> ApiError:
    # Validation errors use the flask-mongorest shape the official client parses into ValidationError.
    return ApiError(400, {"errors": [], "field-errors": {field: message}})


def not_found(model: str) -> ApiError:
    return ApiError(404, {"error": f"Empty query: {model} matching query does not exist."})


def unauthorized() -> ApiError:
    return ApiError(401, {"error": "Unauthorized"}, {"WWW-Authenticate": 'Basic realm="api"'})


def invalid_json() -> ApiError:
    return ApiError(400, {"error": "The request contains invalid JSON."})
