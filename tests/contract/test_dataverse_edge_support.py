"""Shared helpers for the DV-EDGE contract tests: a tiny stand-in Web API app, batch builders, fixtures.

The stand-in app lets the edge (auth, limits, faults, $batch) be tested independently of DV-CORE's
record semantics; the same tests also run against the real `create_app` when it is importable.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

with warnings.catch_warnings():  # starlette 1.x nags about httpx vs httpx2; httpx is what the project uses
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id
from emulators.dataverse.edge import install_edge
from emulators.dataverse.errors import DataverseError, error_response
from emulators.dataverse.server import EmulatorServer

API = "/api/data/v9.2/"
USER_A = AppUser("c2d36500-0000-4000-8000-00000000000a", "secret-a", deterministic_id("systemuser", "a"))
USER_B = AppUser("c2d36500-0000-4000-8000-00000000000b", "secret-b", deterministic_id("systemuser", "b"))


def edge_config(**overrides: Any) -> DataverseEmulatorConfig:
    config = DataverseEmulatorConfig(app_users=[copy.copy(USER_A), copy.copy(USER_B)])
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class FakeStore:
    """Rows per entity set; transaction() snapshots and restores on error (enough for a test double)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict]] = {}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        saved = copy.deepcopy(self.rows)
        try:
            yield
        except BaseException:
            self.rows = saved
            raise


_TARGET = re.compile(r"^(?P<set>[a-z_]+)(?:\((?P<id>[0-9a-f-]{36})\))?(?:/(?P<rest>.*))?$")


def fake_app(config: DataverseEmulatorConfig) -> Starlette:
    """A minimal Web API: WhoAmI, create/read/patch/delete by id, CreateMultiple, binds to existing rows."""

    store = FakeStore()

    def base(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{API}"

    def check_binds(body: dict) -> dict:
        out = {}
        for key, value in body.items():
            if key.endswith("@odata.bind"):
                match = _TARGET.match(str(value).lstrip("/"))
                if not match or match["id"] not in store.rows.get(match["set"], {}):
                    raise DataverseError(404, "0x80040217", f"Entity With Id = {value} Does Not Exist")
            if key == "name" and len(str(value)) > 20:
                raise DataverseError(
                    400,
                    "0x80044331",
                    "A validation error occurred.  The length of the 'name' attribute of the 'account' entity "
                    "exceeded the maximum allowed length of '20'.",
                )
            out[key] = value
        return out

    async def api(request: Request) -> Response:
        assert request.state.caller_systemuserid == request.state.app_user.systemuserid
        path = request.path_params["path"]
        if path in ("WhoAmI", "WhoAmI()") and request.method == "GET":
            return JSONResponse(
                {"UserId": request.state.caller_systemuserid, "caller": request.state.app_user.client_id}
            )
        match = _TARGET.match(path)
        if not match:
            raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{path}'.")
        entity_set, record_id, rest = match["set"], match["id"], match["rest"]
        table = store.rows.setdefault(entity_set, {})
        if rest == "Microsoft.Dynamics.CRM.CreateMultiple" and request.method == "POST":
            targets = (await request.json())["Targets"]
            rows = [check_binds(t) for t in targets]
            ids = []
            with store.transaction():
                for row in rows:
                    new_id = str(uuid.uuid4())
                    table[new_id] = row
                    ids.append(new_id)
            return JSONResponse({"Ids": ids})
        if request.method == "POST" and record_id is None:
            row = check_binds(await request.json())
            new_id = row.pop("accountid", None) or str(uuid.uuid4())
            table[new_id] = row
            return Response(
                status_code=204, headers={"OData-EntityId": f"{base(request)}{entity_set}({new_id})"}
            )
        if record_id is None:
            return JSONResponse({"value": [{"id": k, **v} for k, v in table.items()]})
        if request.method == "GET":
            if record_id not in table:
                raise DataverseError(
                    404, "0x80040217", f"Entity '{entity_set}' With Id = {record_id} Does Not Exist"
                )
            return JSONResponse({"id": record_id, **table[record_id]})
        if request.method == "PATCH":
            table.setdefault(record_id, {}).update(check_binds(await request.json()))
            return Response(
                status_code=204, headers={"OData-EntityId": f"{base(request)}{entity_set}({record_id})"}
            )
        if request.method == "DELETE":
            if table.pop(record_id, None) is None:
                raise DataverseError(
                    404, "0x80040217", f"Entity '{entity_set}' With Id = {record_id} Does Not Exist"
                )
            return Response(status_code=204)
        raise DataverseError(405, "0x0", "method not allowed")

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DataverseError)
        return error_response(exc)

    app = Starlette(
        routes=[Route(API + "{path:path}", api, methods=["GET", "POST", "PATCH", "DELETE"])],
        exception_handlers={DataverseError: on_error},
    )
    app.state.store = store
    install_edge(app, config)
    return app


def token_for(client: httpx.Client, config: DataverseEmulatorConfig, user: AppUser, env: str) -> str:
    response = client.post(
        f"/{config.tenant_id}/oauth2/v2.0/token",
        data={
            "client_id": user.client_id,
            "grant_type": "client_credentials",
            "client_info": "1",
            "client_secret": user.client_secret,
            "scope": f"{env}/.default",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def asgi_client(app: Starlette, config: DataverseEmulatorConfig, user: AppUser = USER_A) -> TestClient:
    """An in-process client with a bearer token for `user` (no sockets)."""
    client = TestClient(app, base_url="https://testserver")
    client.headers["Authorization"] = "Bearer " + token_for(client, config, user, "https://testserver")
    return client


def ca_context(server: EmulatorServer) -> ssl.SSLContext:
    """httpx 0.28 deprecates verify=<path>: trust the emulator's CA through an SSLContext."""
    return server.ssl_context()


# ---- $batch builders (CRLF, per reference §3) ---------------------------------------------------------------


def http_part(
    method: str, url: str, body: dict | None = None, content_id: str | None = None, nl: str = "\r\n"
) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines += ["Content-Type: application/json; type=entry", "", json.dumps(body)]
    else:
        lines += ["", ""]
    return nl.join(lines) + nl


def batch_body(boundary: str, parts: list[str], nl: str = "\r\n") -> bytes:
    return ("".join(f"--{boundary}{nl}{p}" for p in parts) + f"--{boundary}--{nl}").encode()


def changeset(boundary: str, parts: list[str], nl: str = "\r\n") -> str:
    inner = batch_body(boundary, parts, nl).decode()
    return f"Content-Type: multipart/mixed; boundary={boundary}{nl}{nl}{inner}"


def parse_batch_response(response: httpx.Response) -> list[dict]:
    """Flatten a multipart batch response into [{'status', 'headers', 'body', 'content_id', 'changeset'}]."""
    ctype = response.headers["content-type"]
    assert ctype.startswith("multipart/mixed; boundary=batchresponse_"), ctype
    return _parse(response.content.decode(), ctype.split("boundary=")[1], None)


def _parse(text: str, boundary: str, changeset_id: str | None) -> list[dict]:
    assert text.endswith(f"--{boundary}--\r\n") or f"--{boundary}--" in text
    chunks = text.split(f"--{boundary}")[1:-1]
    out: list[dict] = []
    for chunk in chunks:
        assert chunk.startswith("\r\n"), "delimiters must end with CRLF"
        head, _, rest = chunk[2:].partition("\r\n\r\n")
        mime = dict(line.split(": ", 1) for line in head.split("\r\n"))
        if mime["Content-Type"].startswith("multipart/mixed"):
            out += _parse(rest, mime["Content-Type"].split("boundary=")[1], mime["Content-Type"])
            continue
        assert mime["Content-Transfer-Encoding"] == "binary"
        status_head, _, body = rest.partition("\r\n\r\n")
        lines = status_head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        body = body[:-2] if body.endswith("\r\n") else body
        out.append(
            {
                "status": int(lines[0].split()[1]),
                "status_line": lines[0],
                "headers": headers,
                "body": json.loads(body) if body.strip() else None,
                "content_id": mime.get("Content-ID"),
                "changeset": changeset_id,
            }
        )
    return out
