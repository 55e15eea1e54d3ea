"""DV-EDGE against DV-CORE's real `create_app`: msal over HTTPS → token → WhoAmI → records in a $batch."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import msal
import pytest
from test_dataverse_edge_support import (
    API,
    batch_body,
    ca_context,
    changeset,
    http_part,
    parse_batch_response,
)

from emulators.dataverse.config import DataverseEmulatorConfig, ServiceProtection
from emulators.dataverse.server import EmulatorServer


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    with EmulatorServer(DataverseEmulatorConfig(), tls_dir=tmp_path_factory.getbasetemp() / "tls") as srv:
        yield srv


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    user = server.config.app_users[0]
    with httpx.Client(verify=ca_context(server)) as http:
        app = msal.ConfidentialClientApplication(
            user.client_id,
            client_credential=user.client_secret,
            authority=server.authority,
            instance_discovery=False,
            http_client=http,
        )
        result = app.acquire_token_for_client(scopes=[server.base_url + "/.default"])
    assert "access_token" in result, result
    headers = {
        "Authorization": f"Bearer {result['access_token']}",
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    }
    with httpx.Client(base_url=server.base_url, verify=ca_context(server), headers=headers) as http:
        yield http


def post_batch(client: httpx.Client, body: bytes, boundary: str, prefer: str | None = None) -> httpx.Response:
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    return client.post(API + "$batch", content=body, headers=headers)


def account_names(client: httpx.Client) -> list[str]:
    response = client.get(API + "accounts?$select=name")
    assert response.status_code == 200, response.text
    return sorted(row["name"] for row in response.json()["value"])


def test_whoami_with_an_msal_token(server: EmulatorServer, client: httpx.Client) -> None:
    response = client.get(API + "WhoAmI")
    assert response.status_code == 200, response.text
    assert response.json()["UserId"] == server.config.app_users[0].systemuserid
    assert response.headers["x-ms-dop-hint"] == str(server.config.dop_hint)
    assert "x-ms-ratelimit-burst-remaining-xrm-requests" in response.headers


def test_create_account_and_contact_in_a_changeset_with_references(client: httpx.Client) -> None:
    cs = changeset(
        "changeset_dd81ccab",
        [
            http_part("POST", API + "accounts", {"name": "Batch account"}, "1"),
            http_part("POST", API + "contacts", {"firstname": "Ada", "lastname": "Lovelace"}, "2"),
            http_part("PATCH", "$1", {"primarycontactid@odata.bind": "$2"}, "3"),
        ],
    )
    body = batch_body("batch_AAA123", [http_part("GET", API + "WhoAmI"), cs])
    response = post_batch(client, body, "batch_AAA123")
    assert response.status_code == 200, response.text
    parts = parse_batch_response(response)
    assert [p["status"] for p in parts] == [200, 204, 204, 204]
    account_url = parts[1]["headers"]["OData-EntityId"]
    contact_url = parts[2]["headers"]["OData-EntityId"]
    contact_id = contact_url.rsplit("(", 1)[1].rstrip(")")
    account = client.get(account_url + "?$select=name,_primarycontactid_value").json()
    assert account["name"] == "Batch account"
    assert account["_primarycontactid_value"] == contact_id


def test_failed_changeset_rolls_back_real_records(client: httpx.Client) -> None:
    cs = changeset(
        "changeset_z",
        [
            http_part("POST", API + "accounts", {"name": "rolled back"}, "1"),
            http_part("POST", API + "accounts", {"name": "Y" * 200}, "2"),
        ],
    )
    response = post_batch(client, batch_body("batch_q", [cs]), "batch_q")
    assert response.status_code == 400
    [part] = parse_batch_response(response)
    assert part["body"]["error"]["code"] == "0x80044331"
    assert account_names(client) == []


def test_bulk_message_inside_a_batch_counts_its_targets(server: EmulatorServer, client: httpx.Client) -> None:
    control = server.app.state.edge_control
    control.set_protection(ServiceProtection(enabled=True))
    targets = [{"name": f"bulk {i}", "@odata.type": "Microsoft.Dynamics.CRM.account"} for i in range(3)]
    body = batch_body(
        "batch_b",
        [
            http_part("POST", API + "accounts/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets}),
            http_part("POST", API + "accounts", {"name": "single"}),
        ],
    )
    response = post_batch(client, body, "batch_b", prefer="odata.continue-on-error")
    assert response.status_code == 200, response.text
    parts = parse_batch_response(response)
    assert [p["status"] for p in parts] == [200, 204], parts
    assert len(parts[0]["body"]["Ids"]) == 3
    assert account_names(client) == ["bulk 0", "bulk 1", "bulk 2", "single"]
    user = server.config.app_users[0].client_id
    assert control.limiter.stats[user].records == 3 + 1  # Targets of the bulk part + the single part
