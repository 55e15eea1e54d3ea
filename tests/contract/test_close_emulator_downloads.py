"""Exports (poll → signed gzip download, JSON lines with activities, CSV without) and authenticated files."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators.close import CloseEmulatorConfig
from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate


class FakeClock:
    """Injectable time so URL expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny")


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server(org: CloseOrg, clock: FakeClock) -> Iterator[CloseEmulatorServer]:
    cfg = CloseEmulatorConfig(clock=clock, export_polls_before_done=3)
    cfg.rate_limit.enabled = False
    with CloseEmulatorServer(org, cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: CloseEmulatorServer, org: CloseOrg) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, auth=(org.api_key, ""), timeout=30) as client:
        yield client


def run_export(api: httpx.Client, path: str, request: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    created = api.post(path, json=request).raise_for_status().json()
    assert created["status"] == "created" and created["download_url"] is None
    assert created["n_docs"] is None and created["n_docs_processed"] == 0
    statuses = []
    for _ in range(10):
        export = api.get(f"export/{created['id']}/").json()
        statuses.append(export["status"])
        if export["status"] == "done":
            return export, statuses
    raise AssertionError(f"export never finished: {statuses}")


def test_json_lead_export_with_activities(api: httpx.Client, org: CloseOrg) -> None:
    export, statuses = run_export(
        api, "export/lead/", {"format": "json", "type": "leads", "include_activities": True}
    )
    assert statuses == ["started", "in_progress", "done"]
    assert export["n_docs"] == export["n_docs_processed"] == len(org.leads)
    raw = httpx.get(export["download_url"])  # a pre-signed URL: no auth needed
    assert raw.status_code == 200
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["content-type"].startswith("application/json")
    lines = raw.text.splitlines()  # httpx decodes the gzip transfer
    leads = [json.loads(line) for line in lines]
    assert [x["id"] for x in leads] == [x["id"] for x in org.leads]
    acts = {a["id"] for x in leads for a in x["activities"]}
    assert acts == {a["id"] for a in org.activities}
    one = leads[0]
    assert one == {**api.get(f"lead/{one['id']}/").json(), "activities": one["activities"]}


def test_csv_exports_have_no_activities(api: httpx.Client, org: CloseOrg) -> None:
    export, _ = run_export(
        api, "export/lead/", {"format": "csv", "type": "leads", "include_activities": True}
    )
    assert export["include_activities"] is False  # only honoured for json + leads
    with httpx.stream("GET", export["download_url"]) as r:
        compressed = b"".join(r.iter_raw())
        assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(compressed).decode("utf-8"))))
    assert [r["id"] for r in rows] == [x["id"] for x in org.leads]
    assert not any("activit" in column for column in rows[0])
    for kind, source in (("contacts", org.contacts), ("lead_opps", org.opportunities)):
        export, _ = run_export(api, "export/lead/", {"format": "csv", "type": kind})
        rows = list(csv.DictReader(io.StringIO(httpx.get(export["download_url"]).text)))
        assert [r["id"] for r in rows] == [x["id"] for x in source]


def test_export_url_expires_after_60_seconds(api: httpx.Client, clock: FakeClock) -> None:
    export, _ = run_export(api, "export/lead/", {"format": "json", "type": "contacts"})
    clock.now += 61
    r = httpx.get(export["download_url"])
    assert r.status_code == 403
    assert "<Code>AccessDenied</Code>" in r.text and "Request has expired" in r.text
    fresh = api.get(f"export/{export['id']}/").json()["download_url"]  # polling again gives a new URL
    assert httpx.get(fresh).status_code == 200
    tampered = fresh.replace("X-Amz-Expires=60", "X-Amz-Expires=6000")
    assert httpx.get(tampered).status_code == 403


def test_bad_export_request_is_a_400(api: httpx.Client) -> None:
    r = api.post("export/lead/", json={"format": "xml"})
    assert r.status_code == 400 and "format" in r.json()["field-errors"]
    assert api.get("export/expo_nope/").status_code == 404


def test_file_download_redirects_to_signed_url_and_streams_bytes(
    api: httpx.Client, org: CloseOrg, server: CloseEmulatorServer, clock: FakeClock
) -> None:
    oversize = org.truth["edge_cases"]["oversize_attachment"]
    path = oversize["url"].split("://", 1)[1].split("/", 1)[1]
    blob = org.files[path]
    url = server.root_url + "/" + path
    assert httpx.get(url).status_code == 401
    first = api.get(url)
    assert first.status_code == 302
    location = first.headers["location"]
    assert location.startswith(server.root_url + "/") and "X-Amz-Signature=" in location
    got = httpx.get(location)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith(blob.content_type)
    assert int(got.headers["content-length"]) == blob.size == oversize["size"] > 5_000_000
    assert got.content == blob.read()
    clock.now += 61
    assert httpx.get(location).status_code == 403
    assert api.get(server.root_url + "/go/file/persisted/nothing/here.pdf").status_code == 404


def test_call_recording_download(api: httpx.Client, org: CloseOrg, server: CloseEmulatorServer) -> None:
    call = next(a for a in org.activities if a["_type"] == "Call" and a.get("recording_url"))
    served = api.get(f"activity/call/{call['id']}/").json()
    assert served["recording_url"].startswith(server.root_url + "/call/")
    r = api.get(served["recording_url"], follow_redirects=True)
    key = call["recording_url"].split("://", 1)[1].split("/", 1)[1]
    assert r.status_code == 200 and r.content == org.files[key].read()


def test_export_done_after_configured_seconds(org: CloseOrg) -> None:
    clock = FakeClock()
    cfg = CloseEmulatorConfig(clock=clock, export_seconds_before_done=30)
    with (
        CloseEmulatorServer(org, cfg) as srv,
        httpx.Client(base_url=srv.base_url, auth=(org.api_key, "")) as api,
    ):
        export_id = api.post("export/lead/", json={"format": "json"}).json()["id"]
        seen = []
        for _ in range(4):
            seen.append(api.get(f"export/lead/{export_id}/").json()["status"])
            clock.now += 11
        assert seen == ["created", "started", "in_progress", "done"]
        assert [e["id"] for e in api.get("export/").json()["data"]] == [export_id]
