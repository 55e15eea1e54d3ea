"""Shared helpers for the DV-CORE contract tests: an in-process emulator client (no sockets).

The emulator is the real `create_app`; when DV-EDGE's auth middleware is installed, the client carries a
token issued by the emulator's own identity provider, exactly as a real caller would.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import httpx

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2; httpx is what the project uses
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from emulators.dataverse.app import create_app
from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id

API = "/api/data/v9.2/"
BASE = "https://dv.test"
APP_USER = AppUser(
    "c2d36500-0000-4000-8000-0000000c0001", "core-secret", deterministic_id("systemuser", "core")
)
SEED_USERS = [
    {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "internalemailaddress": "ada@example.com",
        "isdisabled": False,
    },
    {"firstname": "Gone", "lastname": "Away", "internalemailaddress": "gone@example.com", "isdisabled": True},
]


def core_config(**overrides: Any) -> DataverseEmulatorConfig:
    config = DataverseEmulatorConfig(
        app_users=[AppUser(APP_USER.client_id, APP_USER.client_secret, APP_USER.systemuserid)],
        seed_users=[dict(u) for u in SEED_USERS],
        key_activation_seconds=0.0,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def user_id(email: str) -> str:
    return deterministic_id("systemuser", email.lower())


class Dv:
    """A thin synchronous client of one in-process emulator."""

    def __init__(self, config: DataverseEmulatorConfig | None = None):
        self.config = config or core_config()
        self.app = create_app(self.config)
        self.client = TestClient(self.app, base_url=BASE)
        control = getattr(self.app.state, "edge_control", None)
        if control is not None:
            token = control.issue_token(self.config.app_users[0].client_id, BASE)
            self.client.headers["Authorization"] = f"Bearer {token}"
        self.client.headers["Accept"] = "application/json"

    @property
    def env(self) -> Any:
        return self.app.state.env

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        return self.client.request(method, API + path, **kwargs)

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.request("GET", path, **headers)

    def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return self.request("POST", path, body if body is not None else {}, **headers)

    def patch(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return self.request("PATCH", path, body, **headers)

    def put(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return self.request("PUT", path, body, **headers)

    def delete(self, path: str, **headers: str) -> httpx.Response:
        return self.request("DELETE", path, **headers)

    def create(self, entity_set: str, body: dict) -> str:
        resp = self.post(entity_set, body)
        assert resp.status_code == 204, resp.text
        return resp.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")

    def row(self, table: str, record_id: str) -> dict:
        return self.env.store.get(table, record_id)

    def add_column(self, table: str, body: dict) -> httpx.Response:
        return self.post(f"EntityDefinitions(LogicalName='{table}')/Attributes", body)

    def use_solution(
        self, prefix: str = "c2d", name: str = "close2d365", option_value_prefix: int = 72700
    ) -> tuple[str, str]:
        """What a client does before its first schema write: create a publisher with its prefix and a
        solution it owns (POST publishers, POST solutions), then name that solution in
        MSCRM.SolutionUniqueName on every request, so custom SchemaNames carry that publisher's prefix.
        Returns (publisherid, solutionid)."""
        publisher = self.create(
            "publishers",
            {
                "uniquename": f"{name}publisher",
                "friendlyname": f"{name} publisher",
                "customizationprefix": prefix,
                "customizationoptionvalueprefix": option_value_prefix,
            },
        )
        solution = self.create(
            "solutions",
            {
                "uniquename": name,
                "friendlyname": name,
                "version": "1.0.0.0",
                "publisherid@odata.bind": f"/publishers({publisher})",
            },
        )
        self.client.headers["MSCRM.SolutionUniqueName"] = name
        return publisher, solution


def label(text: str) -> dict:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
        ],
    }


def string_column(schema: str, max_length: int = 100) -> dict:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "AttributeType": "String",
        "AttributeTypeName": {"Value": "StringType"},
        "SchemaName": schema,
        "MaxLength": max_length,
        "FormatName": {"Value": "Text"},
        "RequiredLevel": {
            "Value": "None",
            "CanBeChanged": True,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "DisplayName": label(schema),
    }


def error_of(resp: httpx.Response) -> tuple[int, str, str]:
    body = resp.json()
    assert set(body) == {"error"}, body
    return resp.status_code, body["error"]["code"], body["error"]["message"]


def new_id() -> str:
    return str(uuid.uuid4())
