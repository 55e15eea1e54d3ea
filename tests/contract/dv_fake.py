"""A small scriptable fake of Entra ID + Dataverse (contacts only) behind `httpx.MockTransport`.

Used to drive the client's transport deterministically through exact fault sequences (a 429 for one app
user, a connection dropped after the work landed, an expired token...). Broad API fidelity is tested
against the real emulator in test_dataverse_client_emulator.py; shapes here follow the reference.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

ENV = "https://org.crm.dynamics.com"
AUTHORITY_HOST = "https://login.fake.test"
TENANT = "tenant-x"
API = "/api/data/v9.2/"

Fault = Callable[[httpx.Request, str], httpx.Response | None]  # (request, client_id) -> override


@dataclass
class FakeDataverse:
    secrets: dict[str, str] = field(default_factory=lambda: {"app-a": "secret-a", "app-b": "secret-b"})
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> client id
    token_requests: int = 0
    faults: list[Fault] = field(default_factory=list)  # consulted in order; a fault returning a response wins
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (client id, method, path)
    bulk_supported: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # -- routing ----------------------------------------------------------------------------------------
    def handle(self, req: httpx.Request) -> httpx.Response:
        if req.url.host == "login.fake.test":
            return self._idp(req)
        token = req.headers.get("Authorization", "").removeprefix("Bearer ")
        client = self.tokens.get(token)
        if client is None:
            return _error(401, "0x80044302", "Request is not authenticated.")
        path = req.url.raw_path.decode().split("?")[0]
        with self.lock:
            self.log.append((client, req.method, path))
        for fault in list(self.faults):
            out = fault(req, client)
            if out is not None:
                return out
        with self.lock:
            return self._api(req, path.removeprefix(API))

    def _idp(self, req: httpx.Request) -> httpx.Response:
        base = f"{AUTHORITY_HOST}/{TENANT}"
        if req.url.path.endswith("/v2.0/.well-known/openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "issuer": base + "/v2.0",
                    "authorization_endpoint": base + "/oauth2/v2.0/authorize",
                    "token_endpoint": base + "/oauth2/v2.0/token",
                },
            )
        form = httpx.QueryParams(req.content.decode())
        self.token_requests += 1
        cid = form.get("client_id", "")
        if self.secrets.get(cid) != form.get("client_secret"):
            return httpx.Response(
                401,
                json={
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        token = f"tok-{cid}-{self.token_requests}"
        self.tokens[token] = cid
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    def _api(self, req: httpx.Request, path: str) -> httpx.Response:
        if path.startswith("EntityDefinitions(LogicalName='contact')"):
            return self._metadata(path.removeprefix("EntityDefinitions(LogicalName='contact')"))
        if path == "sdkmessagefilters":
            return httpx.Response(
                200, json={"value": [{"sdkmessagefilterid": "f1"}] if self.bulk_supported else []}
            )
        if path.startswith("contacts/Microsoft.Dynamics.CRM."):
            return self._bulk(path.rsplit(".", 1)[1], json.loads(req.content))
        if path == "contacts" and req.method == "POST":
            return self._create_one(json.loads(req.content))
        if path == "contacts" and req.method == "GET":
            ids = re.findall(r"contactid eq ([0-9a-f-]{36})", req.url.params.get("$filter", ""))
            return httpx.Response(200, json={"value": [{"contactid": i} for i in ids if i in self.contacts]})
        return _error(404, "0x8006088a", f"Resource not found for the segment '{path}'.")

    def _metadata(self, rest: str) -> httpx.Response:
        if rest == "":
            return httpx.Response(
                200,
                json={
                    "LogicalName": "contact",
                    "SchemaName": "Contact",
                    "EntitySetName": "contacts",
                    "PrimaryIdAttribute": "contactid",
                    "PrimaryNameAttribute": "fullname",
                    "ObjectTypeCode": 2,
                    "IsActivity": False,
                },
            )
        if rest == "/Attributes":
            attrs = [
                {"LogicalName": "contactid", "AttributeType": "Uniqueidentifier"},
                {"LogicalName": "lastname", "AttributeType": "String", "MaxLength": 50},
                {"LogicalName": "firstname", "AttributeType": "String", "MaxLength": 50},
            ]
            return httpx.Response(200, json={"value": attrs})
        return httpx.Response(200, json={"value": []})

    # -- records ------------------------------------------------------------------------------------------
    def _validate(self, row: dict[str, Any]) -> httpx.Response | None:
        for key in row:
            if not key.startswith("@") and key not in ("contactid", "lastname", "firstname"):
                return _error(
                    400,
                    "0x0",
                    f"An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid "
                    f"property '{key}' was found in entity 'Microsoft.Dynamics.CRM.contact'.",
                )
        if len(row.get("lastname") or "") > 50:
            return _error(
                400,
                "0x80044331",
                "A validation error occurred.  The length of the 'lastname' attribute of the 'contact' entity "
                "exceeded the maximum allowed length of '50'.",
            )
        return None

    def _create_one(self, row: dict[str, Any]) -> httpx.Response:
        bad = self._validate(row)
        if bad is not None:
            return bad
        rid = row.get("contactid") or f"00000000-0000-0000-0000-{len(self.contacts):012d}"
        if rid in self.contacts:
            return _error(412, "0x80040237", "Cannot insert duplicate key.")
        self.contacts[rid] = {k: v for k, v in row.items() if not k.startswith("@")}
        return httpx.Response(204, headers={"OData-EntityId": f"{ENV}{API}contacts({rid})"})

    def _bulk(self, message: str, body: dict[str, Any]) -> httpx.Response:
        snapshot = dict(self.contacts)  # all-or-nothing: roll back on the first failure
        ids = []
        for row in body["Targets"]:
            if row.get("@odata.type") != "Microsoft.Dynamics.CRM.contact":
                self.contacts = snapshot
                return _error(400, "0x80048d19", "The '@odata.type' annotation is missing or invalid.")
            bad = self._validate(row)
            if bad is None and message == "CreateMultiple":
                bad = self._create_one(row)
                bad = None if bad.status_code == 204 else bad
            elif bad is None:
                self.contacts.setdefault(row["contactid"], {}).update(
                    {k: v for k, v in row.items() if not k.startswith("@")}
                )
            if bad is not None:
                self.contacts = snapshot
                return bad
            ids.append(row.get("contactid"))
        if message == "CreateMultiple":
            return httpx.Response(200, json={"Ids": ids})
        return httpx.Response(204)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def once(
    match: Callable[[httpx.Request, str], bool], response: Callable[[httpx.Request], httpx.Response]
) -> Fault:
    """A fault that fires on the first matching request only."""
    fired = threading.Event()

    def fault(req: httpx.Request, client: str) -> httpx.Response | None:
        if not fired.is_set() and match(req, client):
            fired.set()
            return response(req)
        return None

    return fault
