"""DV-EDGE: the hold rule that kill tests use: the first matching request is held (its work done or not)
until its client goes away, seen by a real httpx client over HTTPS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from test_dataverse_edge_support import API, USER_A, ca_context, edge_config, fake_app, token_for

from emulators.dataverse.server import EmulatorServer

HOLD_ACCOUNTS = r"POST \S*/accounts\b"


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    config = edge_config()
    with EmulatorServer(config, app=fake_app(config), tls_dir=tmp_path_factory.getbasetemp() / "tls") as srv:
        yield srv


def _client(server: EmulatorServer, timeout: float = 10.0) -> httpx.Client:
    http = httpx.Client(base_url=server.base_url, verify=ca_context(server), timeout=timeout)
    http.headers["Authorization"] = "Bearer " + token_for(http, server.config, USER_A, server.base_url)
    return http


def accounts(server: EmulatorServer) -> dict:
    return server.app.state.store.rows.get("accounts", {})


def _held_post(server: EmulatorServer, name: str) -> tuple[httpx.Client, list[BaseException]]:
    """POST an account from a thread whose client gives up after 2 s; returns once the emulator holds it."""
    http = _client(server, timeout=2.0)
    errors: list[BaseException] = []

    def post() -> None:
        try:
            http.post(API + "accounts", json={"name": name})
        except httpx.HTTPError as exc:
            errors.append(exc)

    threading.Thread(target=post, daemon=True).start()
    deadline = time.monotonic() + 10
    while server.app.state.edge_control.faults.stats.held == 0:
        assert time.monotonic() < deadline, "the request was not held"
        time.sleep(0.02)
    return http, errors


@pytest.mark.parametrize("after_work", [True, False])
def test_the_first_matching_request_is_held_until_its_client_goes(
    server: EmulatorServer, after_work: bool
) -> None:
    control = server.app.state.edge_control
    control.set_faults(hold_request=HOLD_ACCOUNTS, hold_after_work=after_work)
    other = _client(server)
    assert other.get(API + "WhoAmI").status_code == 200  # not matching: answered
    http, errors = _held_post(server, "held")
    # Held: the work is done only with hold_after_work, and no answer ever comes (the client times out).
    assert [r["name"] for r in accounts(server).values()] == (["held"] if after_work else [])
    deadline = time.monotonic() + 10
    while not errors:
        assert time.monotonic() < deadline, "the held request was answered"
        time.sleep(0.05)
    assert isinstance(errors[0], httpx.ReadTimeout)
    http.close()
    # The rule is spent: the next matching request is answered.
    assert other.post(API + "accounts", json={"name": "next"}).status_code in (201, 204)
    other.close()
    assert control.faults.stats.held == 1


def test_a_bad_pattern_is_refused(server: EmulatorServer) -> None:
    with pytest.raises(ValueError, match="hold_request"):
        server.app.state.edge_control.set_faults(hold_request="(")
