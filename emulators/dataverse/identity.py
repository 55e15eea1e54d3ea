"""A local Microsoft Entra ID stand-in: OpenID discovery + the client-credentials token endpoint.

Shapes follow reference §1.2-§1.4 so that ``msal.ConfidentialClientApplication(..., authority=<server>/<tenant>,
instance_discovery=False)`` works unchanged. Tokens are JWT-shaped (header.payload.signature, HS256 with a
key generated per process) carrying ``aud`` (the environment URL), ``appid`` (the client id), ``tid`` and
``exp``; the Web API accepts a token only while ``exp`` is in the future on the emulator's clock, so clients
must refresh like against the real service. A server restart invalidates all tokens (401 → re-acquire).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.dataverse.config import AppUser, DataverseEmulatorConfig

# OAuth scopes msal may add on its own; they never name a resource.
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}
_LOCAL_HOST_ALIASES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class Clock:
    """Wall-clock seconds plus an offset that tests move forward (token expiry, sliding windows)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"the emulator clock only moves forward (got {seconds} seconds)")
        with self._lock:
            self._offset += seconds


@dataclass(frozen=True)
class TokenClaims:
    client_id: str
    audience: str
    expires_at: float


class InvalidToken(Exception):
    """The bearer token is malformed, forged, for another environment, or expired (reason in the message)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def normalize_origin(url: str) -> str:
    """`https://LOCALHOST:443/` -> `https://localhost:443`, with local aliases folded to `localhost`."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host in _LOCAL_HOST_ALIASES:
        host = "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme.lower()}://{host}:{port}"


class TokenIssuer:
    """Issues and validates access tokens for the configured application users."""

    def __init__(self, config: DataverseEmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._key = secrets.token_bytes(32)

    def issue(self, user: AppUser, audience: str) -> tuple[str, int]:
        lifetime = int(self.config.token_lifetime_seconds)
        now = int(self.clock.now())
        header = {"typ": "JWT", "alg": "HS256"}
        payload = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.config.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": user.client_id,
            "azp": user.client_id,
            "tid": self.config.tenant_id,
            "oid": user.systemuserid,
            "uti": _b64(secrets.token_bytes(12)),
            "ver": "1.0",
        }
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature), lifetime

    def validate(self, token: str, expected_origin: str) -> TokenClaims:
        pieces = token.split(".")
        if len(pieces) != 3:
            raise InvalidToken("the token is not a JWT")
        signing_input = (pieces[0] + "." + pieces[1]).encode("ascii", "replace")
        expected = hmac.new(self._key, signing_input, hashlib.sha256).digest()
        try:
            signature_ok = hmac.compare_digest(expected, _unb64(pieces[2]))
            payload = json.loads(_unb64(pieces[1]))
        except (ValueError, TypeError):
            raise InvalidToken("the token cannot be decoded") from None
        if not signature_ok:
            raise InvalidToken("the token signature is invalid (issued by another emulator run?)")
        if float(payload.get("exp", 0)) <= self.clock.now():
            raise InvalidToken("the token is expired")
        audience = str(payload.get("aud", ""))
        if normalize_origin(audience) != normalize_origin(expected_origin):
            raise InvalidToken(f"the token audience {audience} is not this environment ({expected_origin})")
        return TokenClaims(str(payload.get("appid", "")), audience, float(payload["exp"]))


def request_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def environment_url(config: DataverseEmulatorConfig, origin: str) -> str:
    """The environment (resource) URL without a trailing slash: config.org_url, else the request origin."""
    return (config.org_url or origin).rstrip("/")


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description


def _oauth_error_response(err: _OAuthError, request: Request) -> JSONResponse:
    trace_id = str(uuid.uuid4())
    correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{err.aadsts}: {err.description} Trace ID: {trace_id} "
        f"Correlation ID: {correlation_id} Timestamp: {stamp}"
    )
    body = {
        "error": err.error,
        "error_description": description,
        "error_codes": [err.aadsts],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{request_origin(request)}/error?code={err.aadsts}",
    }
    return JSONResponse(body, status_code=err.status, headers={"Cache-Control": "no-store, no-cache"})


class IdentityProvider:
    """The routes of the local identity provider (added to the emulator app by install_edge)."""

    def __init__(self, config: DataverseEmulatorConfig, issuer: TokenIssuer) -> None:
        self.config = config
        self.issuer = issuer

    def routes(self) -> list[Route]:
        return [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
            Route("/{tenant}/discovery/v2.0/keys", self.keys),
        ]

    def _check_tenant(self, tenant: str) -> None:
        known = {self.config.tenant_id.lower(), f"{self.config.org_name}.onmicrosoft.com".lower()}
        if tenant.lower() not in known:
            raise _OAuthError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                f"signing into the correct cloud. This emulator serves tenant '{self.config.tenant_id}'.",
            )

    async def openid_configuration(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        try:
            self._check_tenant(tenant)
        except _OAuthError as err:
            return _oauth_error_response(err, request)
        base = f"{request_origin(request)}/{tenant}"
        return JSONResponse(
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "grant_types_supported": ["client_credentials"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def keys(self, request: Request) -> Response:
        # Access tokens are HS256 with a private key: there is nothing public to publish.
        return JSONResponse({"keys": []})

    async def token(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
            # parsed by hand: Starlette's form parser needs python-multipart, which we do not depend on
            fields = dict(
                parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
            )
            user, audience = self._authenticate_client(fields, request)
        except _OAuthError as err:
            return _oauth_error_response(err, request)
        token, lifetime = self.issuer.issue(user, audience)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _authenticate_client(self, fields: dict[str, str], request: Request) -> tuple[AppUser, str]:
        grant_type = fields.get("grant_type", "")
        if not grant_type:
            raise _OAuthError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant_type != "client_credentials":
            raise _OAuthError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'. "
                "This emulator supports only the client credentials flow.",
            )
        client_id = fields.get("client_id", "")
        if not client_id:
            raise _OAuthError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        user = self.config.app_user_by_client_id(client_id)
        if user is None:
            raise _OAuthError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.config.tenant_id}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant. You may have "
                "sent your authentication request to the wrong tenant.",
            )
        secret = fields.get("client_secret")
        if secret is None:
            raise _OAuthError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if not hmac.compare_digest(secret.encode(), user.client_secret.encode()):
            raise _OAuthError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        return user, self._check_scope(fields.get("scope", ""), request)

    def _check_scope(self, scope: str, request: Request) -> str:
        env = environment_url(self.config, request_origin(request))
        scopes = [s for s in scope.split() if s not in _RESERVED_SCOPES]
        if not scopes:
            raise _OAuthError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _OAuthError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                f"scope value with /.default suffixed to the resource identifier (application ID URI); "
                f"here: {env}/.default",
            )
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if normalize_origin(resource) != normalize_origin(env) or urlsplit(resource).path not in ("", "/"):
            raise _OAuthError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.config.tenant_id}. This can happen if the application has not been installed by the "
                f"administrator of the tenant. The environment URL of this emulator is {env}.",
            )
        return env
