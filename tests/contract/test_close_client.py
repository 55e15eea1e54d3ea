"""The Close client against the Close emulator (a real HTTP server): every paging shape, rate limits,
faults, the `_skip` cap, exports, file downloads, auth. Id sets are compared with the org's truth."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from emulators.close.config import CloseEmulatorConfig, RateLimitConfig
from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets.clients.close.client import CloseAuthError, CloseClient
from migration_assets.clients.close.export_file import CloseExportError
from migration_assets.extract.sources import ACTIVITY_PATHS, api_config, api_pages
from migration_assets.extract.tables import ACTIVITY_TABLE_TYPES


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny")


@pytest.fixture(scope="module")
def server(org: CloseOrg) -> Iterator[CloseEmulatorServer]:
    with CloseEmulatorServer(org) as srv:
        yield srv


def client_for(org: CloseOrg, srv: CloseEmulatorServer, **kw: Any) -> CloseClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("default_rate_limit_delay", 0.05)
    return CloseClient(org.api_key, srv.base_url, **kw)


def ids(pages: Any) -> list[str]:
    return [obj["id"] for page in pages for obj in page]


def truth_ids(org: CloseOrg, table: str) -> set[str]:
    if table == "leads":
        return {x["id"] for x in org.leads}
    if table == "contacts":
        return {x["id"] for x in org.contacts}
    if table == "opportunities":
        return {x["id"] for x in org.opportunities}
    if table == "tasks":
        return {x["id"] for x in org.tasks}
    types = ACTIVITY_TABLE_TYPES[table]
    return {x["id"] for x in org.activities if x["_type"] in types}


BIG_TABLES = ["leads", "contacts", "opportunities", "tasks", *ACTIVITY_PATHS]


@pytest.mark.parametrize("table", BIG_TABLES)
def test_every_record_exactly_once(org: CloseOrg, server: CloseEmulatorServer, table: str) -> None:
    with client_for(org, server) as client:
        got = ids(api_pages(client, table))
    assert len(got) == len(set(got))
    assert set(got) == truth_ids(org, table)


def test_config_lists_match_truth(org: CloseOrg, server: CloseEmulatorServer) -> None:
    with client_for(org, server) as client:
        for table in (
            "users",
            "lead_statuses",
            "pipelines",
            "opportunity_statuses",
            "custom_fields",
            "custom_activity_types",
            "sequences",
            "smart_views",
        ):
            assert len(api_config(client, table)) == org.truth["counts"][table], table
        users = api_config(client, "users")
    inactive = {u["id"] for u in org.inactive_users}
    assert {u["id"] for u in users if not u["__is_active"]} == inactive


def test_small_page_size_pages_in_order(org: CloseOrg, server: CloseEmulatorServer) -> None:
    with client_for(org, server, page_size=7, concurrency=3) as client:
        got = ids(client.iter_pages("activity/call/", {}))
    assert len(got) == len(set(got)) == len(truth_ids(org, "calls"))


def test_skip_cap_splits_windows_without_loss(org: CloseOrg) -> None:
    # Rate limiting off: this test is about windows, and it makes many small requests.
    config = CloseEmulatorConfig(max_skip=20, rate_limit=RateLimitConfig(enabled=False))
    with CloseEmulatorServer(org, config) as srv, client_for(org, srv, page_size=10) as client:
        for table in ("leads", "calls", "emails", "tasks", "contacts"):
            got = ids(api_pages(client, table))
            assert len(got) == len(set(got)), table
            assert set(got) == truth_ids(org, table), table
        assert client.windows_split > 0
        assert client.max_skip_for("lead/") == 20  # learned from the server's 400


@pytest.mark.parametrize("kind", ["429", "429_ingress", "500", "502", "503", "504", "drop"])
def test_faults_are_retried_without_loss(org: CloseOrg, kind: str) -> None:
    with CloseEmulatorServer(org) as srv, client_for(org, srv, page_size=10) as client:
        srv.state.faults.inject(kind, times=2, path_contains="activity/email")
        got = ids(api_pages(client, "emails"))
        stats = client.stats
        fired = [f for f in srv.state.faults.fired if f[2] == kind]
    assert len(fired) == 2
    assert len(got) == len(set(got)) and set(got) == truth_ids(org, "emails")
    counter = {"429": "rate_limited_429", "429_ingress": "rate_limited_429", "drop": "connection_errors"}.get(
        kind, "server_errors"
    )
    assert stats[counter] >= 2


def test_random_fault_storm(org: CloseOrg) -> None:
    config = CloseEmulatorConfig(rate_limit=RateLimitConfig(enabled=False))
    config.faults.seed = 7
    config.faults.rate_429 = 0.03
    config.faults.rate_5xx = 0.05
    config.faults.rate_drop = 0.05
    with CloseEmulatorServer(org, config) as srv, client_for(org, srv, page_size=5, max_attempts=8) as client:
        for table in ("leads", "contacts", "calls", "notes", "tasks"):
            got = ids(api_pages(client, table))
            assert len(got) == len(set(got)) and set(got) == truth_ids(org, table), table
        assert client.stats["retries"] > 0


def test_rate_limit_headers_are_honoured(org: CloseOrg) -> None:
    config = CloseEmulatorConfig(rate_limit=RateLimitConfig(requests_per_second=5))
    with CloseEmulatorServer(org, config) as srv, client_for(org, srv, page_size=5, concurrency=4) as client:
        got = ids(api_pages(client, "calls"))
        stats = client.stats
    assert set(got) == truth_ids(org, "calls") and len(got) == len(set(got))
    # Paced from the RateLimit header: the server rarely has to refuse a request.
    assert stats["rate_limited_429"] <= 2
    assert stats["requests"] >= 20


def test_wrong_key_is_a_clear_auth_error(org: CloseOrg, server: CloseEmulatorServer) -> None:
    with CloseClient("api_notthekey", server.base_url) as client, pytest.raises(CloseAuthError) as info:
        client.check_connection()
    assert "Close rejected the API key (401). Check CLOSE_API_KEY" in str(info.value)
    assert "api_notthekey" not in str(info.value)


def test_json_export_streams_every_lead_with_activities(org: CloseOrg, server: CloseEmulatorServer) -> None:
    with client_for(org, server, export_poll_seconds=0.01) as client:
        leads = list(client.export_leads(include_activities=True))
    assert {lead["id"] for lead in leads} == truth_ids(org, "leads")
    activity_ids = {a["id"] for lead in leads for a in lead.get("activities", [])}
    assert activity_ids == {a["id"] for a in org.activities}


def test_csv_export_is_refused_with_explanation(
    org: CloseOrg, server: CloseEmulatorServer, tmp_path: Path
) -> None:
    with client_for(org, server, export_poll_seconds=0.01) as client:
        export = client.post("export/lead/", {"format": "csv", "type": "leads"})
        done = client.wait_export(export["id"])
        raw = b"".join(client.http.stream_download(done["download_url"], decode=False))
    path = tmp_path / "close_export.json.gz"  # misleading name on purpose: detection is by content
    path.write_bytes(raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw))
    with pytest.raises(CloseExportError) as info:
        list(CloseClient(org.api_key, server.base_url).export_leads(export_file=str(path)))
    message = str(info.value)
    assert "CSV" in message and "no activity history" in message
    assert '"include_activities": true' in message and "Settings" in message


def test_download_follows_redirect_and_returns_exact_bytes(
    org: CloseOrg, server: CloseEmulatorServer
) -> None:
    with client_for(org, server) as client:
        calls = [
            a for page in client.iter_pages("activity/call/", {}) for a in page if a.get("recording_url")
        ]
        emails = [
            a for page in client.iter_pages("activity/email/", {}) for a in page if a.get("attachments")
        ]
        recording = calls[0]["recording_url"]
        attachment = min((att for e in emails for att in e["attachments"]), key=lambda att: att["size"])
        rec_bytes = b"".join(client.download(recording))
        att_bytes = b"".join(client.download(attachment["url"]))
    rec_key = recording.split("://", 1)[1].split("/", 1)[1]
    att_key = attachment["url"].split("://", 1)[1].split("/", 1)[1]
    assert rec_bytes == org.files[rec_key].read()
    assert att_bytes == org.files[att_key].read() and len(att_bytes) == attachment["size"]


def test_download_resumes_after_dropped_connection(org: CloseOrg) -> None:
    with CloseEmulatorServer(org) as srv, client_for(org, srv) as client:
        emails = [
            a for page in client.iter_pages("activity/email/", {}) for a in page if a.get("attachments")
        ]
        attachment = max((att for e in emails for att in e["attachments"]), key=lambda att: att["size"])
        srv.state.faults.inject("drop", times=1, path_contains="_s3")
        data = b"".join(client.download(attachment["url"]))
    key = attachment["url"].split("://", 1)[1].split("/", 1)[1]
    assert data == org.files[key].read()


def test_deleted_ids_from_event_log(org: CloseOrg, server: CloseEmulatorServer) -> None:
    expected = {e["object_id"] for e in org.events if e["object_type"] == "lead" and e["action"] == "deleted"}
    with client_for(org, server) as client:
        assert set(client.deleted_ids("lead")) == expected
        pages = list(client.iter_events(object_type="activity.call", action="updated", limit=1))
    assert sum(len(p) for p in pages) == sum(
        1 for e in org.events if e["object_type"] == "activity.call" and e["action"] == "updated"
    )


def _median_date(objs: list[dict[str, Any]], field: str) -> str:
    values = sorted(o[field] for o in objs)
    return values[len(values) // 2]


def test_incremental_reads_by_supported_filters(org: CloseOrg, server: CloseEmulatorServer) -> None:
    from migration_assets.clients.close.paging import parse_close_datetime

    with client_for(org, server) as client:
        for path, objs in (("opportunity/", org.opportunities), ("task/", org.tasks)):
            since = parse_close_datetime(_median_date(objs, "date_updated"))
            assert since is not None
            got = set(ids(client.iter_updated(path, updated_since=since)))
            assert got == {o["id"] for o in objs if parse_close_datetime(o["date_updated"]) >= since}, path
        # Leads: the query language has minute precision, so compare from a whole minute.
        since = parse_close_datetime(_median_date(org.leads, "date_updated"))
        assert since is not None
        since = since.replace(second=0, microsecond=0)
        got = set(ids(client.iter_leads(updated_since=since)))
        assert got == {x["id"] for x in org.leads if parse_close_datetime(x["date_updated"]) >= since}
        # Activities: only date_created can be filtered, so a look-back window is re-read.
        calls = [a for a in org.activities if a["_type"] == "Call"]
        since = parse_close_datetime(_median_date(calls, "date_created"))
        assert since is not None
        got = set(ids(client.iter_activities("activity/call/", created_since=since)))
        lookback_start = since - timedelta(hours=24)
        assert got == {a["id"] for a in calls if parse_close_datetime(a["date_created"]) >= lookback_start}
