"""DV-EDGE: service-protection limits per application user (reference §5.1)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from test_dataverse_edge_support import (
    API,
    USER_A,
    USER_B,
    asgi_client,
    batch_body,
    ca_context,
    edge_config,
    fake_app,
    http_part,
    token_for,
)

from emulators.dataverse.config import ServiceProtection
from emulators.dataverse.server import EmulatorServer


def limited(**limits: object):
    config = edge_config(protection=ServiceProtection(enabled=True, **limits))  # type: ignore[arg-type]
    app = fake_app(config)
    return config, app, asgi_client(app, config, USER_A), asgi_client(app, config, USER_B)


def test_request_limit_per_app_user_with_retry_after_and_sliding_window() -> None:
    config, app, a, b = limited(max_requests=3, window_seconds=300)
    remaining = [
        int(a.get(API + "WhoAmI").headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) for _ in range(3)
    ]
    assert remaining == [2, 1, 0]
    throttled = a.get(API + "WhoAmI")
    assert throttled.status_code == 429
    assert throttled.json() == {
        "error": {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
        }
    }
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    assert b.get(API + "WhoAmI").status_code == 200  # user B has its own budget
    app.state.edge_control.advance_clock(int(throttled.headers["Retry-After"]))
    assert a.get(API + "WhoAmI").status_code == 200  # the oldest request left the window


def test_execution_time_limit_counts_bulk_targets_and_batch_parts() -> None:
    config, app, a, b = limited(max_execution_ms=100, cost_ms_per_request=10, cost_ms_per_record=10)
    ok = a.post(API + "accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{"name": "x"}] * 4})
    assert ok.status_code == 200 and len(ok.json()["Ids"]) == 4
    assert (
        a.get(API + "WhoAmI").headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "50.00"
    )  # 100-(10+40)
    # a batch is one request but is charged per part: 10 + 4 * 10 = 50 -> the budget is used up
    batch = batch_body("batch_t", [http_part("GET", API + "WhoAmI")] * 4)
    response = a.post(
        API + "$batch", content=batch, headers={"Content-Type": "multipart/mixed; boundary=batch_t"}
    )
    assert response.status_code == 200
    throttled = a.get(API + "WhoAmI")
    assert throttled.status_code == 429
    assert throttled.json()["error"] == {
        "code": "0x80072321",
        "message": "Combined execution time of incoming requests exceeded limit of 100 milliseconds over time "
        "window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and "
        "try again later.",
    }
    assert int(throttled.headers["Retry-After"]) >= 1
    assert b.get(API + "WhoAmI").status_code == 200
    stats = app.state.edge_control.snapshot()["stats"]["protection"]
    assert stats[USER_A.client_id]["throttled_execution_time"] == 1
    assert stats[USER_A.client_id]["records"] == 8


def test_real_limit_messages_by_default() -> None:
    config, app, a, _ = limited(max_requests=6000)
    app.state.edge_control.set_protection(max_requests=1)
    a.get(API + "WhoAmI")
    assert "limit of 1 over time window of 300 seconds" in a.get(API + "WhoAmI").json()["error"]["message"]
    app.state.edge_control.set_protection(ServiceProtection(enabled=True, max_execution_ms=1_200_000))
    app.state.edge_control.reset_protection()
    assert a.get(API + "WhoAmI").headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "1,200,000.00"


def test_concurrency_limit_fails_immediately_per_user(tmp_path: Path) -> None:
    config = edge_config(protection=ServiceProtection(enabled=True, max_concurrent=1))
    app = fake_app(config)
    control = app.state.edge_control
    with EmulatorServer(config, app=app, tls_dir=tmp_path) as server:
        verify = ca_context(server)
        with httpx.Client(base_url=server.base_url, verify=verify) as http:
            tokens = {u.client_id: token_for(http, config, u, server.base_url) for u in (USER_A, USER_B)}
        control.set_faults(slow_rate=1.0, slow_seconds=1.0)
        results: list[int] = []

        def slow_call() -> None:
            with httpx.Client(base_url=server.base_url, verify=verify) as c:
                headers = {"Authorization": f"Bearer {tokens[USER_A.client_id]}"}
                results.append(c.get(API + "WhoAmI", headers=headers).status_code)

        worker = threading.Thread(target=slow_call)
        worker.start()
        while control.limiter.inflight(USER_A.client_id) == 0 and worker.is_alive():
            threading.Event().wait(0.01)
        control.set_faults(slow_rate=0.0)
        with httpx.Client(base_url=server.base_url, verify=verify) as c:
            second = c.get(API + "WhoAmI", headers={"Authorization": f"Bearer {tokens[USER_A.client_id]}"})
            other = c.get(API + "WhoAmI", headers={"Authorization": f"Bearer {tokens[USER_B.client_id]}"})
        worker.join()
    assert second.status_code == 429
    assert second.json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 1.",
    }
    assert "Retry-After" in second.headers
    assert other.status_code == 200
    assert results == [200]


def _simulate_polite_client(app, client, seconds: float, request) -> int:
    """Send back-to-back; on 429 move the emulator clock by Retry-After (no sleeping). Returns successes."""
    control = app.state.edge_control
    start = control.clock.now()
    done = 0
    while control.clock.now() - start < seconds:
        response = request(client)
        if response.status_code == 429:
            control.advance_clock(float(response.headers["Retry-After"]))
        else:
            assert response.status_code in (200, 204), response.text
            done += 1
            control.advance_clock(0.05)  # the client's own latency
    return done


def test_polite_client_reaches_most_of_the_request_budget() -> None:
    config, app, a, _ = limited(max_requests=50, window_seconds=60)
    done = _simulate_polite_client(app, a, 600, lambda c: c.get(API + "WhoAmI"))
    allowed = 50 * 600 / 60
    assert 0.8 * allowed <= done <= allowed + 50


def test_polite_client_reaches_most_of_the_execution_time_budget() -> None:
    config, app, a, _ = limited(
        max_execution_ms=10_000, window_seconds=60, cost_ms_per_request=100, cost_ms_per_record=9
    )
    body = {"Targets": [{"name": "r"}] * 100}  # 100 + 900 ms per request
    done = _simulate_polite_client(
        app, a, 600, lambda c: c.post(API + "accounts/Microsoft.Dynamics.CRM.CreateMultiple", json=body)
    )
    allowed = 10_000 / 1_000 * 600 / 60  # requests the execution-time budget allows over the run
    assert 0.8 * allowed <= done <= allowed + 10


def test_limits_off_by_default_but_headers_present() -> None:
    config = edge_config()
    app = fake_app(config)
    a = asgi_client(app, config)
    for _ in range(5):
        response = a.get(API + "WhoAmI")
        assert response.status_code == 200
    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5995"
    assert response.headers["x-ms-dop-hint"] == "8"
