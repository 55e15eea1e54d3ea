"""DV-EDGE: fault injection seen by a real httpx client over HTTPS, and its runtime control."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_dataverse_edge_support import API, USER_A, asgi_client, ca_context, edge_config, fake_app, token_for

from emulators.dataverse.config import Faults
from emulators.dataverse.edge import ConnectionDroppedByEmulator
from emulators.dataverse.server import EmulatorServer


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    config = edge_config()
    with EmulatorServer(config, app=fake_app(config), tls_dir=tmp_path_factory.getbasetemp() / "tls") as srv:
        yield srv


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, verify=ca_context(server)) as http:
        http.headers["Authorization"] = "Bearer " + token_for(http, server.config, USER_A, server.base_url)
        yield http


def accounts(server: EmulatorServer) -> dict:
    return server.app.state.store.rows.get("accounts", {})


def test_5xx_before_any_work(server: EmulatorServer, client: httpx.Client) -> None:
    server.app.state.edge_control.set_faults(error_5xx_rate=1.0)
    statuses = set()
    for _ in range(12):
        response = client.post(API + "accounts", json={"name": "never"})
        statuses.add(response.status_code)
        assert set(response.json()["error"]) == {"code", "message"}
    assert statuses <= {500, 502, 503, 504} and 503 in statuses
    assert accounts(server) == {}


def test_dropped_connection_before_the_work(server: EmulatorServer, client: httpx.Client) -> None:
    server.app.state.edge_control.set_faults(drop_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(API + "accounts", json={"name": "lost"})
    assert accounts(server) == {}
    server.app.state.edge_control.set_faults(drop_rate=0.0)
    assert client.get(API + "WhoAmI").status_code == 200  # the client reconnects


def test_dropped_connection_after_the_work_lands_the_write(
    server: EmulatorServer, client: httpx.Client
) -> None:
    server.app.state.edge_control.set_faults(drop_after_work_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(API + "accounts", json={"name": "landed"})
    assert [row["name"] for row in accounts(server).values()] == ["landed"]


def test_slow_response_trips_a_client_read_timeout(server: EmulatorServer, client: httpx.Client) -> None:
    server.app.state.edge_control.set_faults(slow_rate=1.0, slow_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        client.get(API + "WhoAmI", timeout=httpx.Timeout(5.0, read=0.2))


def test_throttle_storm_answers_429_even_with_limits_off(
    server: EmulatorServer, client: httpx.Client
) -> None:
    server.app.state.edge_control.set_faults(throttle_storm_rate=1.0)
    response = client.get(API + "WhoAmI")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "0x80072321"
    assert 1 <= int(response.headers["Retry-After"]) <= 3


def test_admin_route_changes_faults_and_limits_on_a_running_server(
    server: EmulatorServer, client: httpx.Client
) -> None:
    changed = client.post(
        "/_emulator/faults",
        json={
            "faults": {"seed": 3, "error_5xx_rate": 1.0},
            "protection": {"enabled": True, "max_requests": 2},
        },
    )
    assert changed.status_code == 200
    assert changed.json()["faults"]["error_5xx_rate"] == 1.0
    assert changed.json()["protection"]["max_requests"] == 2
    assert client.get(API + "WhoAmI").status_code >= 500
    client.post("/_emulator/faults", json={"faults": {"error_5xx_rate": 0.0}, "reset_protection": True})
    assert [client.get(API + "WhoAmI").status_code for _ in range(3)] == [200, 200, 429]
    current = client.get("/_emulator/faults").json()
    assert current["stats"]["protection"][USER_A.client_id]["throttled_requests"] == 1
    bad = client.post("/_emulator/faults", json={"faults": {"drop_rat": 1}})
    assert bad.status_code == 400 and "drop_rat" in bad.json()["error"]["message"]
    assert client.post("/_emulator/faults", json={"faults": {"drop_rate": 2}}).status_code == 400


def _outcomes(seed: int) -> list[str]:
    config = edge_config(
        faults=Faults(
            seed=seed, error_5xx_rate=0.2, drop_rate=0.2, throttle_storm_rate=0.2, drop_after_work_rate=0.1
        )
    )
    app = fake_app(config)
    client = asgi_client(app, config)
    out = []
    for _ in range(40):
        try:
            out.append(str(client.get(API + "WhoAmI").status_code))
        except ConnectionDroppedByEmulator:
            out.append("dropped")
    return out


def test_faults_are_deterministic_for_a_seed() -> None:
    first, again, other = _outcomes(11), _outcomes(11), _outcomes(12)
    assert first == again
    assert first != other
    assert {"200", "429", "dropped"} <= set(first)
    assert any(code.startswith("5") for code in first)


def test_tls_dir_default_is_reusable(tmp_path: Path) -> None:
    config = edge_config()
    with EmulatorServer(config, app=fake_app(config), tls_dir=tmp_path) as first:
        ca = Path(first.ca_bundle).read_bytes()
    with EmulatorServer(config, app=fake_app(config), tls_dir=tmp_path) as second:
        assert Path(second.ca_bundle).read_bytes() == ca
        with httpx.Client(verify=ca_context(second)) as http:
            assert http.get(second.authority + "/v2.0/.well-known/openid-configuration").status_code == 200
