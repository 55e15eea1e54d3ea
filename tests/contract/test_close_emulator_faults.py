"""Rate limits (headers, 429 bodies, per key and per org) and every kind of injected fault."""

from __future__ import annotations

import re

import anyio
import httpx
import pytest

from emulators.close import (
    CloseEmulatorConfig,
    DroppedConnection,
    EmulatorConfigError,
    FaultConfig,
    create_app,
)
from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate

# The official client's parser (closeio-api 2.1).
OFFICIAL_REGEX = re.compile(r"limit=(\d+), remaining=(\d+), reset=(\d+)")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.25

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny")


def client_for(server: CloseEmulatorServer, key: str, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, auth=(key, ""), timeout=timeout)


def test_ratelimit_header_on_every_response_matches_the_official_regex(org: CloseOrg) -> None:
    with CloseEmulatorServer(org) as server, client_for(server, org.api_key) as api:
        for path in ("me/", "lead/", "activity/call/", "lead/lead_missing000000000000000000000000000000000/"):
            m = OFFICIAL_REGEX.search(api.get(path).headers["ratelimit"])
            assert m and int(m.group(1)) == 20
        assert OFFICIAL_REGEX.search(httpx.get(server.base_url + "me/").headers["ratelimit"])


def test_per_key_limit_429_body_and_headers(org: CloseOrg) -> None:
    clock = FakeClock()
    cfg = CloseEmulatorConfig(clock=clock)
    cfg.rate_limit.requests_per_second = 3
    with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key) as api:
        remaining = [
            int(OFFICIAL_REGEX.search(api.get("lead/").headers["ratelimit"]).group(2)) for _ in range(3)
        ]
        assert remaining == [2, 1, 0]
        r = api.get("lead/")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1" and r.headers["ratelimit-remaining"] == "0"
        assert OFFICIAL_REGEX.search(r.headers["ratelimit"]).groups() == ("3", "0", "1")
        body = r.json()
        assert body["rate_reset"] == body["error"]["rate_reset"] == pytest.approx(0.75)
        assert (
            body["rate_limit_type"] == "key"
            and body["error"]["message"] == "API call count exceeded for this period"
        )
        assert api.get("contact/").status_code == 200  # another endpoint group has its own budget
        clock.now += 1  # next window
        assert api.get("lead/").status_code == 200


def test_org_limit_is_three_times_the_key_limit(org: CloseOrg) -> None:
    clock = FakeClock()
    keys = ("api_second_key_for_tests", "api_third_key_for_tests", "api_fourth_key_for_tests")
    cfg = CloseEmulatorConfig(clock=clock, extra_api_keys=keys)
    cfg.rate_limit.requests_per_second = 2
    with CloseEmulatorServer(org, cfg) as server:
        statuses = []
        for key in (org.api_key, *keys):
            with client_for(server, key) as api:
                statuses.append([api.get("user/").status_code for _ in range(2)])
        assert statuses[:3] == [[200, 200]] * 3
        assert statuses[3] == [429, 429]
        with client_for(server, keys[2]) as api:
            assert api.get("user/").json()["rate_limit_type"] in ("key", "org")


def test_limits_can_be_disabled_and_overridden_per_group(org: CloseOrg) -> None:
    clock = FakeClock()
    cfg = CloseEmulatorConfig(clock=clock)
    cfg.rate_limit.requests_per_second = 1
    cfg.rate_limit.group_overrides = {"GET /lead/": 5}
    with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key) as api:
        assert [api.get("lead/").status_code for _ in range(5)] == [200] * 5
        assert [api.get("contact/").status_code for _ in range(2)] == [200, 429]
    cfg = CloseEmulatorConfig(clock=FakeClock())
    cfg.rate_limit.enabled = False
    cfg.rate_limit.requests_per_second = 1
    with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key) as api:
        assert {api.get("lead/").status_code for _ in range(10)} == {200}


def test_fail_nth_and_injected_5xx_and_429_variants(org: CloseOrg) -> None:
    cfg = CloseEmulatorConfig(faults=FaultConfig(fail_nth={2: "503", 3: "502", 4: "504"}))
    with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key) as api:
        assert [api.get("user/").status_code for _ in range(5)] == [200, 503, 502, 504, 200]
        faults = server.state.faults
        faults.inject("429_ingress", times=1, path_contains="/activity/")
        assert api.get("user/").status_code == 200  # path filter: not an activity request
        r = api.get("activity/call/")
        assert r.status_code == 429 and r.content == b""
        assert "retry-after" not in r.headers and OFFICIAL_REGEX.search(r.headers["ratelimit"])
        faults.inject("429")
        r = api.get("lead/")
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "rate_reset" in r.json()
        assert api.get("lead/").status_code == 200
        with pytest.raises(EmulatorConfigError):
            faults.inject("teapot")


def test_dropped_connection_over_a_real_socket(org: CloseOrg) -> None:
    cfg = CloseEmulatorConfig(faults=FaultConfig(fail_nth={1: "drop"}))
    with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key) as api:
        with pytest.raises(httpx.TransportError):
            api.get("lead/")
        assert api.get("lead/").status_code == 200  # the next request works (new connection)


def test_dropped_connection_in_process_is_a_transport_error(org: CloseOrg) -> None:
    app = create_app(org, CloseEmulatorConfig(faults=FaultConfig(fail_nth={1: "drop"})))

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://close.test", auth=(org.api_key, "")
        ) as api:
            with pytest.raises(DroppedConnection) as info:
                await api.get("/api/v1/lead/")
            assert isinstance(info.value, httpx.TransportError)
            assert (await api.get("/api/v1/lead/")).status_code == 200

    anyio.run(scenario)


def test_slow_response_times_out_a_short_client_timeout(org: CloseOrg) -> None:
    cfg = CloseEmulatorConfig(faults=FaultConfig(fail_nth={1: "slow"}, slow_seconds=1.5))
    with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key, timeout=0.2) as api:
        with pytest.raises(httpx.ReadTimeout):
            api.get("me/")
        assert api.get("me/").status_code == 200


def test_seeded_random_faults_are_reproducible(org: CloseOrg) -> None:
    def run() -> list[int]:
        faults = FaultConfig(seed=7, rate_429=0.1, storm_length=3, rate_5xx=0.1)
        cfg = CloseEmulatorConfig(faults=faults)
        cfg.rate_limit.enabled = False
        with CloseEmulatorServer(org, cfg) as server, client_for(server, org.api_key) as api:
            return [api.get("user/").status_code for _ in range(60)]

    first, second = run(), run()
    assert first == second
    assert 429 in first and {502, 503, 504} & set(first) and 200 in first
    storm = [i for i, s in enumerate(first) if s == 429]
    assert any(storm[i + 1] == storm[i] + 1 for i in range(len(storm) - 1))  # 429s come in storms


def test_invalid_config_is_rejected_with_a_clear_error(org: CloseOrg) -> None:
    with pytest.raises(EmulatorConfigError, match="fail_nth"):
        create_app(org, CloseEmulatorConfig(faults=FaultConfig(fail_nth={1: "boom"})))
    with pytest.raises(EmulatorConfigError, match="probability"):
        create_app(org, CloseEmulatorConfig(faults=FaultConfig(rate_5xx=2.0)))


def test_file_urls_throttle_like_the_api_and_storage_fails_like_s3(org: CloseOrg) -> None:
    attachment = next(k for k in org.files if k.startswith("go/file/"))
    recording = next(k for k in org.files if k.startswith("call/") and k.endswith("/recording/"))
    with CloseEmulatorServer(org) as server, client_for(server, org.api_key) as api:
        faults = server.state.faults
        faults.inject("429", times=1, path_contains="/go/file/")
        faults.inject("429_ingress", times=1, path_contains="/call/")
        r = api.get(f"{server.root_url}/{attachment}")
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "rate_reset" in r.json()
        assert OFFICIAL_REGEX.search(r.headers["ratelimit"])
        r = api.get(f"{server.root_url}/{recording}")
        assert r.status_code == 429 and r.content == b"" and "retry-after" not in r.headers
        assert OFFICIAL_REGEX.search(r.headers["ratelimit"])
        r = api.get(f"{server.root_url}/{recording}")
        assert r.status_code == 302
        signed = r.headers["location"]
        # Storage (S3): its own errors and a drop mid-body; never Close's 429, which stays pending.
        faults.inject("429", times=1, path_contains="_s3")
        faults.inject("503", times=1, path_contains="_s3")
        faults.inject("drop", times=1, path_contains="_s3")
        r = httpx.get(signed)
        assert r.status_code == 503 and b"<Code>SlowDown</Code>" in r.content
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", signed) as s:
            assert s.status_code == 200 and int(s.headers["content-length"]) == org.files[recording].size
            for chunk in s.iter_raw():
                received += chunk
        assert 0 < len(received) < org.files[recording].size
        assert bytes(received) == org.files[recording].read()[: len(received)]
        assert httpx.get(signed).content == org.files[recording].read()
        assert [kind for _, path, kind in faults.fired if "_s3" in path] == ["503", "drop"]
