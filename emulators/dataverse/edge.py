"""The emulator's edge: identity provider, bearer auth, service protection, fault injection and ``$batch``.

``install_edge(app, config)`` adds to a Starlette app:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``POST /{tenant}/oauth2/v2.0/token``
  (identity.py);
* ``POST /api/data/v9.2/$batch`` (batch.py);
* a middleware in front of every ``/api/data/*`` request: bearer-token check (401 +
  ``WWW-Authenticate: Bearer authorization_uri=…, resource_id=…``), then fault injection, then service
  protection (protection.py). It sets ``request.state.caller_systemuserid`` and ``request.state.app_user``;
* ``app.state.edge_control`` (an :class:`EdgeControl`) and the admin route ``/_emulator/faults``.

Runtime control, for tests and benchmarks, on a running server::

    GET  /_emulator/faults   -> {"faults": {...}, "protection": {...}, "stats": {...}}
    POST /_emulator/faults   {"faults": {"seed": 1, "drop_rate": 0.1},        # merged into the current values
                              "protection": {"enabled": true, "max_requests": 10},
                              "reset_protection": true,                        # empty every sliding window
                              "advance_clock_seconds": 301}                    # tokens expire, windows slide
                             -> the same document as GET (400 with a message for unknown fields)

A kill test arms the hold rule (``{"faults": {"hold_request": "POST \\S*/contacts\\b",
"hold_after_work": true}}``), waits until ``stats.faults.held`` counts the request, then kills its client
from outside: the emulator keeps the request open (the work done or not) until the client's socket closes.

The same operations exist as methods of ``app.state.edge_control``. The admin route needs no token: the
emulator is a local test double. Dropped connections need a real socket (``EmulatorServer``/``serve``);
in-process ASGI clients get :class:`ConnectionDroppedByEmulator` raised instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
import weakref
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulators.dataverse.batch import (
    API_ROOT,
    INNER_SCOPE_KEY,
    PARSED_BODY,
    BatchProcessor,
    count_targets,
    targets_in,
)
from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, Faults, ServiceProtection
from emulators.dataverse.errors import DataverseError, error_response
from emulators.dataverse.http import parse_body
from emulators.dataverse.identity import (
    Clock,
    IdentityProvider,
    InvalidToken,
    TokenIssuer,
    environment_url,
)
from emulators.dataverse.protection import (
    CODE_EXECUTION_TIME,
    FaultInjector,
    ServiceProtectionLimiter,
    execution_time_message,
    merge_dataclass,
    throttle_error,
)

ADMIN_PATH = "/_emulator/faults"
# Bulk bodies of at least this size (or of unknown size) are read and parsed one at a time. The work on a
# body runs on the event loop anyway, so nothing waits longer; but a load keeping several ~100 MB uploads
# in flight would otherwise have each of them read into memory (and parsed) at once.
LARGE_BODY_BYTES = 4 * 1024 * 1024


class ConnectionDroppedByEmulator(ConnectionError):
    """Raised to in-process (ASGI transport) clients where a socket-level connection drop is impossible."""


@dataclasses.dataclass
class RecordMeter:
    records: int = 0  # records processed by this request (bulk Targets, batch parts): execution-time cost


class EdgeControl:
    """Runtime knobs of a running emulator (``app.state.edge_control``); thread-safe."""

    def __init__(self, config: DataverseEmulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.issuer = TokenIssuer(config, self.clock)
        self.limiter = ServiceProtectionLimiter(config.protection, self.clock)
        self.faults = FaultInjector(config.faults)

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the fault settings (or merge `changes` into them); re-seeds the random sequence."""
        new = merge_dataclass(faults or self.config.faults, changes, "faults")
        self.faults.configure(new)
        self.config.faults = new
        return new

    def set_protection(
        self, protection: ServiceProtection | None = None, **changes: Any
    ) -> ServiceProtection:
        new = merge_dataclass(protection or self.config.protection, changes, "protection")
        for name in ("window_seconds", "max_requests", "max_execution_ms", "max_concurrent"):
            if getattr(new, name) <= 0:
                raise ValueError(f"protection.{name} must be > 0, got {getattr(new, name)}")
        self.limiter.settings = new
        self.config.protection = new
        return new

    def reset_protection(self) -> None:
        self.limiter.reset()

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: tokens expire and sliding windows slide, without sleeping."""
        self.clock.advance(seconds)

    def issue_token(self, client_id: str, environment: str) -> str:
        """A valid access token for `client_id` (what the token endpoint would return)."""
        user = self.config.app_user_by_client_id(client_id)
        if user is None:
            raise ValueError(f"no application user with client id {client_id!r} is configured")
        return self.issuer.issue(user, environment.rstrip("/"))[0]

    def snapshot(self) -> dict[str, Any]:
        return {
            "faults": dataclasses.asdict(self.config.faults),
            "protection": dataclasses.asdict(self.config.protection),
            "stats": {
                "faults": dataclasses.asdict(self.faults.stats),
                "protection": {user: dataclasses.asdict(s) for user, s in self.limiter.stats.items()},
            },
        }

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        """The admin route's POST body (see the module docstring)."""
        known = {"faults", "protection", "reset_protection", "advance_clock_seconds"}
        unknown = sorted(set(document) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; known: {sorted(known)}")
        if "faults" in document:
            self.set_faults(**_object(document["faults"], "faults"))
        if "protection" in document:
            self.set_protection(**_object(document["protection"], "protection"))
        if document.get("reset_protection"):
            self.reset_protection()
        if "advance_clock_seconds" in document:
            self.advance_clock(float(document["advance_clock_seconds"]))
        return self.snapshot()


def _object(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"'{label}' must be a JSON object")
    return value


class EdgeMiddleware:
    """Outermost ASGI layer for /api/data/*: auth → faults → service protection → app (+ headers)."""

    def __init__(self, app: ASGIApp, control: EdgeControl, hand_over_parsed: bool = False) -> None:
        self.app = app
        self.control = control
        # The app reads bodies with read_json (http.py): a bulk body is parsed once, here, and only the
        # document is kept while the app works on it (a bulk message of file uploads is ~100 MB).
        self.hand_over_parsed = hand_over_parsed
        self._large_body_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _reading(self, scope: Scope) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held while a request body is read and parsed: one large body at a time (LARGE_BODY_BYTES)."""
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) < LARGE_BODY_BYTES:
            return contextlib.nullcontext()
        loop = asyncio.get_running_loop()
        lock = self._large_body_locks.get(loop)
        if lock is None:
            lock = self._large_body_locks[loop] = asyncio.Lock()
        return lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get(INNER_SCOPE_KEY)
            or not scope["path"].startswith("/api/data/")
        ):
            await self.app(scope, receive, send)
            return
        control = self.control
        request = Request(scope)
        origin = f"{request.url.scheme}://{request.url.netloc}"
        try:
            user = self._authenticate(request, origin)
        except DataverseError as err:
            await error_response(err)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["caller_systemuserid"] = user.systemuserid
        state["app_user"] = user
        meter = state["edge_meter"] = RecordMeter()
        decision = control.faults.decide()
        if decision.kind == "drop":
            await _drop_connection(send)
            return
        if decision.kind is not None:
            await error_response(_fault_error(decision.kind, decision.status, decision.retry_after))(
                scope, receive, send
            )
            return
        try:
            control.limiter.admit(user.client_id)
        except DataverseError as err:
            err.headers.update(self._edge_headers(user))
            await error_response(err)(scope, receive, send)
            return
        try:
            if decision.slow:  # a slow server holds its concurrency slot while it works
                await asyncio.sleep(control.config.faults.slow_seconds)
            body: bytes | bytearray = b""
            bulk = scope["path"].rstrip("/").endswith("Multiple")
            if scope["method"] == "POST" and (bulk or control.faults.hold_armed):
                async with self._reading(scope):
                    body = await _read_body(receive)
                    if bulk and self.hand_over_parsed and not control.faults.hold_armed:
                        parsed = state[PARSED_BODY] = parse_body(body)
                        meter.records = targets_in(parsed.document)
                    elif bulk:
                        meter.records = count_targets(scope["path"], body)
                receive = _replay(body, receive)
            # Only an armed rule reads the body as text (bulk file uploads are large).
            hold = control.faults.hold_armed and control.faults.claim_hold(
                f"{scope['method']} {scope['path']}\n{body.decode('utf-8', 'replace')}"
            )
            if hold:
                if control.config.faults.hold_after_work:
                    await self.app(scope, receive, _discard)
                control.faults.count_held()
                await _until_disconnect(receive)
            elif decision.drop_after_work:
                await self.app(scope, receive, _discard)
                await _drop_connection(send)
            else:
                await self.app(scope, receive, self._with_headers(send, user))
        finally:
            control.limiter.finish(user.client_id, meter.records)

    def _authenticate(self, request: Request, origin: str) -> AppUser:
        config = self.control.config
        env = environment_url(config, origin)
        host = request.url.netloc
        challenge = (
            f"Bearer authorization_uri=https://{host}/{config.tenant_id}/oauth2/authorize, resource_id={env}/"
        )
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise DataverseError(
                401,
                "0x80044302",
                "Request is not authenticated: send 'Authorization: Bearer <token>' with a token from "
                f"https://{host}/{config.tenant_id}/oauth2/v2.0/token (scope {env}/.default).",
                headers={"WWW-Authenticate": challenge},
            )
        try:
            claims = self.control.issuer.validate(token.strip(), env)
        except InvalidToken as exc:
            raise DataverseError(
                401,
                "0x80044302",
                f"Request is not authenticated: {exc}. Acquire a new token and retry.",
                headers={
                    "WWW-Authenticate": f'{challenge}, error="invalid_token", error_description="{exc}"'
                },
            ) from None
        user = config.app_user_by_client_id(claims.client_id)
        if user is None:
            raise DataverseError(
                401,
                "0x80044302",
                f"Request is not authenticated: no application user exists for client id {claims.client_id}.",
                headers={"WWW-Authenticate": challenge},
            )
        return user

    def _edge_headers(self, user: AppUser) -> dict[str, str]:
        headers = self.control.limiter.headers(user.client_id)
        headers["x-ms-dop-hint"] = str(self.control.config.dop_hint)
        return headers

    def _with_headers(self, send: Send, user: AppUser) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = self._edge_headers(user)
                request_id = str(uuid.uuid4())
                extra.setdefault("x-ms-service-request-id", request_id)
                extra.setdefault("REQ_ID", request_id)
                added = [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in extra.items()
                    if k.lower().encode("latin-1") not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        return wrapped


def _fault_error(kind: str, status: int, retry_after: int) -> DataverseError:
    if kind == "throttle_storm":
        # a storm looks like the execution-time limit, the one busy environments hit first
        return throttle_error(CODE_EXECUTION_TIME, execution_time_message(ServiceProtection()), retry_after)
    messages = {
        500: ("0x80040216", "An unexpected error occurred."),
        502: ("0x80040216", "Bad Gateway: the web server did not answer in time."),
        503: ("0x80040216", "Service Unavailable: the environment is temporarily unable to serve requests."),
        504: ("0x80040216", "Gateway Timeout: the request did not complete in time."),
    }
    code, message = messages.get(status, messages[503])
    return DataverseError(status, code, message)


async def _drop_connection(send: Send) -> None:
    """Close the client's TCP/TLS connection without any response bytes.

    uvicorn passes its per-request ``RequestResponseCycle.send`` bound method, whose owner holds the
    asyncio transport; aborting it is the only way for an ASGI app to make the client see a broken
    connection rather than a 500. After ``connection_lost`` has run, uvicorn knows the client is gone and
    sends nothing.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise ConnectionDroppedByEmulator(
            "fault injection dropped the connection (run the emulator with EmulatorServer to see a real drop)"
        )
    transport.abort()
    for _ in range(20):  # let the loop run connection_lost (SSL unwraps in two steps)
        if getattr(send.__self__, "disconnected", True):  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0)


async def _discard(message: Message) -> None:
    return None


async def _until_disconnect(receive: Receive) -> None:
    """Wait until the client goes away (a held request: no answer is ever sent). Needs a real socket."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: Receive) -> bytearray:
    # Grown in place (a large buffer is remapped, not copied): a list of chunks joined at the end would
    # hold the body twice.
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return body


def _replay(body: bytes | bytearray, original: Receive) -> Receive:
    done = False

    async def receive() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()  # the server reports the client leaving

    return receive


async def _admin(request: Request) -> Response:
    control: EdgeControl = request.app.state.edge_control
    if request.method == "GET":
        return JSONResponse(control.snapshot())
    try:
        document = json.loads(await request.body() or b"{}")
        if not isinstance(document, dict):
            raise ValueError("the body must be a JSON object")
        return JSONResponse(control.apply(document))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": {"code": "0x80040203", "message": str(exc)}}, status_code=400)


def install_edge(app: Starlette, config: DataverseEmulatorConfig, bodies_via_read_json: bool = False) -> None:
    """Add IdP routes, auth, service protection, fault injection, $batch and the admin route to `app`.

    `bodies_via_read_json`: the app reads every JSON body with http.read_json, so a bulk body can be handed
    to it parsed (see EdgeMiddleware); other apps get the bytes."""
    control = EdgeControl(config)
    app.state.edge_control = control
    batch = BatchProcessor(app)
    routes = [
        Route(API_ROOT + "$batch", batch.endpoint, methods=["POST"]),
        Route(ADMIN_PATH, _admin, methods=["GET", "POST"]),
        *IdentityProvider(config, control.issuer).routes(),
    ]
    # ahead of the app's own routes, so a catch-all API route cannot shadow them
    app.router.routes[0:0] = routes
    build = app.build_middleware_stack

    def build_with_edge() -> ASGIApp:
        # outermost, in front of Starlette's ServerErrorMiddleware: only there does `send` still belong
        # to the server, which connection drops need
        return EdgeMiddleware(build(), control, bodies_via_read_json)

    app.build_middleware_stack = build_with_edge  # type: ignore[method-assign]
