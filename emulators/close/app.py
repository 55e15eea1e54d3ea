"""The Starlette app: routing under /api/v1/ (with or without trailing slash), Basic auth, `_params` bodies
with `x-http-method-override`, fault injection, rate limits and the `RateLimit` header on every response.

`create_app(org, config)` is the entry point; the app keeps its `EmulatorState` in `app.state.emulator`
(tests use `app.state.emulator.faults.inject(...)`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import exports, files, uploads
from .config import CloseEmulatorConfig
from .errors import ApiError, invalid_json, unauthorized
from .faults import DropResponse, server_error
from .jsonutil import JSONDecodeError, dumps, loads, rewrite_hosts
from .latency import LatencyMiddleware, record_served
from .ratelimit import Decision, endpoint_group, too_many_requests
from .resources import (
    activities,
    config_objects,
    events,
    leads,
    records,
    write_activities,
    write_merge,
    write_records,
)
from .resources.base import Ctx
from .state import EmulatorState

if TYPE_CHECKING:
    from emulators.orgdata import CloseOrg

Handler = Callable[[Ctx], Any]
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class ApiRouter:
    """Literal paths by dict lookup, parametrised ones by regex (more literal segments first)."""

    def __init__(self, routes: list[tuple[str, str, Handler]]) -> None:
        self.literal: dict[str, dict[str, Handler]] = {}
        self.patterns: list[tuple[int, re.Pattern[str], str, dict[str, Handler]]] = []
        by_pattern: dict[str, dict[str, Handler]] = {}
        for method, pattern, handler in routes:
            by_pattern.setdefault(pattern, {})[method] = handler
        for pattern, methods in by_pattern.items():
            if "{" not in pattern:
                self.literal[pattern] = methods
                continue
            regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
            literal_count = sum(1 for s in pattern.split("/") if "{" not in s)
            self.patterns.append((literal_count, regex, pattern, methods))
        self.patterns.sort(key=lambda t: -t[0])

    def match(self, path: str) -> tuple[str, dict[str, Handler], dict[str, str]] | None:
        methods = self.literal.get(path)
        if methods is not None:
            return path, methods, {}
        for _, regex, pattern, methods in self.patterns:
            m = regex.match(path)
            if m:
                return pattern, methods, m.groupdict()
        return None


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _api_key(request: Request) -> str | None:
    """The API key from `Authorization: Basic base64(key:)`; the password must be empty."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, sep, password = decoded.partition(":")
    if not sep or password:
        return None
    return key


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_stringify(v) for v in value)
    if value is None:
        return ""
    return str(value)


def _error_response(err: ApiError) -> Response:
    return Response(
        dumps(err.body), status_code=err.status, headers=err.headers, media_type="application/json"
    )


class CloseApi:
    """The request pipeline shared by API calls and authenticated file URLs."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.router = ApiRouter(
            [
                *config_objects.ROUTES,
                *leads.ROUTES,
                *records.ROUTES,
                *activities.ROUTES,
                *events.ROUTES,
                *exports.ROUTES,
                *write_records.ROUTES,
                *write_merge.ROUTES,
                *write_activities.ROUTES,
                *uploads.ROUTES,
            ]
        )

    async def _guard(self, request: Request, key: str, group: str) -> tuple[Response | None, Decision]:
        """Faults first (a storm does not spend the caller's budget), then the rate limit."""
        state = self.state
        org_id = state.store.organization_id
        fault = state.faults.next_fault(request.url.path)
        if fault == "slow":
            await asyncio.sleep(state.config.faults.slow_seconds)
        elif fault is not None:
            nominal = state.limiter.peek(key, org_id, group)
            if fault == "drop":
                return DropResponse(), nominal
            if fault in ("429", "429_ingress"):
                reset = max(nominal.reset_seconds, float(state.config.faults.retry_after_seconds))
                forced = Decision(False, nominal.limit, 0, reset, "key", group)
                response = too_many_requests(forced, retry_after=fault == "429", with_body=fault == "429")
                response.headers["X-Emulator-Fault"] = fault
                return response, forced
            response = server_error(fault)
            response.headers["RateLimit"] = nominal.header_value()
            return response, nominal
        decision = state.limiter.check(key, org_id, group)
        if not decision.allowed:
            return too_many_requests(decision), decision
        return None, decision

    async def api(self, request: Request) -> Response:
        path = request.path_params.get("path", "").strip("/")
        method = request.method
        override = request.headers.get("x-http-method-override")
        if override and method == "POST":
            method = override.upper()
        group = endpoint_group(method, path)
        key = _api_key(request)
        if key is None or key not in self.state.api_keys:
            response = _error_response(unauthorized())
            limit = self.state.limiter.key_limit(group)
            response.headers["RateLimit"] = f"limit={limit}, remaining={limit}, reset=1"
            return response
        blocked, decision = await self._guard(request, key, group)
        if blocked is not None:
            return blocked
        try:
            response = await self._dispatch(request, method, path)
        except ApiError as err:
            response = _error_response(err)
        response.headers["RateLimit"] = decision.header_value()
        return response

    async def _dispatch(self, request: Request, method: str, path: str) -> Response:
        found = self.router.match(path)
        if found is None:
            raise ApiError(404, {"error": f"The requested URL /api/v1/{path}/ was not found on the server."})
        _, methods, args = found
        handler = methods.get(method)
        if handler is None:
            raise ApiError(405, {"error": "The method is not allowed for the requested URL."})
        params: dict[str, str] = dict(request.query_params)
        body: dict[str, Any] | None = None
        raw = await request.body()
        if raw:
            try:
                parsed = loads(raw)
            except JSONDecodeError:
                raise invalid_json() from None
            if not isinstance(parsed, dict):
                raise ApiError(400, {"error": "JSON data must be a dict."})
            body = parsed
            if "_params" in parsed and isinstance(parsed["_params"], dict):
                # flask-mongorest: a `_params` body replaces the query string.
                params = {k: _stringify(v) for k, v in parsed["_params"].items()}
        ctx = Ctx(
            state=self.state,
            method=method,
            params=params,
            args=args,
            root=_root(request),
            body=body,
            path=path,
        )
        result = handler(ctx)
        record_served(request.scope, ctx.served)
        if isinstance(result, Response):
            return result
        return Response(rewrite_hosts(result, ctx.root.encode()), media_type="application/json")

    async def file_url(self, request: Request) -> Response:
        """`/go/...` and `/call/...`: authenticated, then 302 to a short-lived signed URL."""
        key = _api_key(request)
        if key is None or key not in self.state.api_keys:
            return _error_response(unauthorized())
        group = endpoint_group("GET", request.url.path.split("/", 2)[1])
        blocked, decision = await self._guard(request, key, group)
        if blocked is not None:
            return blocked
        try:
            response = files.redirect_to_signed(self.state, _root(request), request.url.path)
        except ApiError as err:
            response = _error_response(err)
        response.headers["RateLimit"] = decision.header_value()
        return response

    async def signed_file(self, request: Request) -> Response:
        return files.serve_signed(self.state, request.url.path, dict(request.query_params))

    async def s3_upload(self, request: Request) -> Response:
        return await uploads.receive_upload(self.state, request)

    async def signed_export(self, request: Request) -> Response:
        return exports.serve_export(self.state, request.url.path, dict(request.query_params), _root(request))


async def _not_found(request: Request, exc: Exception) -> Response:
    return Response(dumps({"error": "Not found"}), status_code=404, media_type="application/json")


def create_app(org: CloseOrg, config: CloseEmulatorConfig | None = None) -> Starlette:
    """A Starlette (ASGI) app serving `org` as the Close REST API v1 under /api/v1/."""
    state = EmulatorState.build(org, config or CloseEmulatorConfig())
    api = CloseApi(state)
    routes = [
        Route("/api/v1/{path:path}", api.api, methods=_METHODS),
        Route("/api/v1", api.api, methods=_METHODS),
        Route("/go/{rest:path}", api.file_url, methods=["GET"]),
        Route("/call/{rest:path}", api.file_url, methods=["GET"]),
        Route(files.SIGNED_PREFIX + "{rest:path}", api.signed_file, methods=["GET"]),
        Route(exports.SIGNED_PREFIX + "{rest:path}", api.signed_export, methods=["GET"]),
        Route(uploads.UPLOAD_PATH, api.s3_upload, methods=["POST"]),
    ]
    middleware = [Middleware(LatencyMiddleware, config=state.config), Middleware(ServerDate, state=state)]
    app = Starlette(routes=routes, exception_handlers={404: _not_found}, middleware=middleware)
    app.state.emulator = state
    return app


class ServerDate:
    """Every answer's `Date` header (RFC 9110 §6.6.1, sent by any HTTP server, Close's included) comes from
    the emulator's one clock, so a client that judges time by the server's clock sees the emulator's."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                now = formatdate(self.state.config.clock(), usegmt=True).encode("latin-1")
                message = {**message, "headers": [*headers, (b"date", now)]}
            await send(message)

        await self.app(scope, receive, dated)
