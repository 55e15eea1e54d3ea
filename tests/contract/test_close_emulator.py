"""Contract tests of the Close emulator's read API: auth, envelopes, paging, filters, query language, events."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators.close import CloseEmulatorConfig
from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny")


@pytest.fixture(scope="module")
def server(org: CloseOrg) -> Iterator[CloseEmulatorServer]:
    cfg = CloseEmulatorConfig()
    cfg.rate_limit.enabled = False
    with CloseEmulatorServer(org, cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: CloseEmulatorServer, org: CloseOrg) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, auth=(org.api_key, ""), timeout=10) as client:
        yield client


def page_all(api: httpx.Client, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """What a real client does: `_skip += _limit` while `has_more`."""
    rows: list[dict[str, Any]] = []
    skip = 0
    while True:
        body = api.get(path, params={**params, "_skip": skip, "_limit": limit}).raise_for_status().json()
        rows.extend(body["data"])
        if not body["has_more"]:
            return rows
        skip += limit


# ----- auth and routing ------------------------------------------------------------------------------------
def test_auth_failures_get_401_with_the_close_body(server: CloseEmulatorServer, org: CloseOrg) -> None:
    for auth in (None, ("api_wrong", ""), (org.api_key, "secret")):
        r = httpx.get(server.base_url + "me/", auth=auth)
        assert r.status_code == 401
        assert r.json() == {"error": "Unauthorized"}
    assert httpx.get(server.base_url + "me/", auth=(org.api_key, "")).status_code == 200


def test_paths_with_and_without_trailing_slash(api: httpx.Client) -> None:
    a = api.get("lead/", params={"_limit": 3}).json()
    b = api.get("lead", params={"_limit": 3}).json()
    assert a == b and len(a["data"]) == 3


def test_unknown_path_and_unknown_id(api: httpx.Client, org: CloseOrg) -> None:
    assert api.get("no_such_resource/").status_code == 404
    r = api.get("lead/lead_doesnotexist0000000000000000000000000000000/")
    assert r.status_code == 404
    assert r.json() == {"error": "Empty query: Lead matching query does not exist."}
    call = next(a for a in org.activities if a["_type"] == "Call")
    assert api.get(f"activity/email/{call['id']}/").status_code == 404
    assert api.get(f"activity/call/{call['id']}/").json()["id"] == call["id"]


# ----- envelopes ----------------------------------------------------------------------------------------------
def test_list_envelopes(api: httpx.Client, org: CloseOrg) -> None:
    users = api.get("user/").json()
    assert set(users) == {"data", "has_more"} and users["has_more"] is False
    assert [u["id"] for u in users["data"]] == [u["id"] for u in org.users]
    pipelines = api.get("pipeline/").json()
    assert set(pipelines) == {"data"} and len(pipelines["data"]) == len(org.pipelines)
    leads = api.get("lead/", params={"_limit": 5}).json()
    assert leads["total_results"] == len(org.leads) and leads["has_more"] is True
    opps = api.get("opportunity/", params={"_limit": 2}).json()
    assert opps["total_results"] == len(org.opportunities)
    assert sum(opps["count_by_value_period"].values()) == len(org.opportunities)
    one_time = sum(o["value"] for o in org.opportunities if o["value_period"] == "one_time")
    assert opps["total_value_one_time"] == one_time


def test_has_more_is_exact(api: httpx.Client, org: CloseOrg) -> None:
    n = len(org.contacts)
    assert api.get("contact/", params={"_limit": 100}).json()["has_more"] is (n > 100)
    assert api.get("contact/", params={"_skip": n - 5, "_limit": 5}).json()["has_more"] is False
    assert api.get("contact/", params={"_skip": n - 6, "_limit": 5}).json()["has_more"] is True


def test_lead_embeds_contacts_opportunities_tasks(api: httpx.Client, org: CloseOrg) -> None:
    opp = org.opportunities[0]
    lead = api.get(f"lead/{opp['lead_id']}/").json()
    assert opp["id"] in [o["id"] for o in lead["opportunities"]]
    contacts = [c["id"] for c in org.contacts if c["lead_id"] == lead["id"]]
    assert sorted(c["id"] for c in lead["contacts"]) == sorted(contacts)
    assert sorted(lead["contact_ids"]) == sorted(contacts)
    assert all(t["_type"] == "lead" and t["lead_id"] == lead["id"] for t in lead["tasks"])
    source = next(x for x in org.leads if x["id"] == lead["id"])
    assert lead["date_created"] == source["date_created"]  # timestamps exactly as in the data


def test_organization_memberships_and_legacy_custom_field_path(api: httpx.Client, org: CloseOrg) -> None:
    body = api.get(f"organization/{org.organization['id']}/").json()
    assert len(body["memberships"]) == len(org.users)
    assert len(body["inactive_memberships"]) == len(org.inactive_users)
    expanded = api.get(
        f"organization/{org.organization['id']}/", params={"_expand": "inactive_memberships__user"}
    ).json()
    assert expanded["inactive_memberships"][0]["user"]["id"] == org.inactive_users[0]["id"]
    for kind in ("lead", "contact", "opportunity", "activity"):
        new = api.get(f"custom_field/{kind}/").json()["data"]
        legacy = api.get(f"custom_fields/{kind}/").json()["data"]
        assert new == legacy == org.custom_fields[kind]


# ----- paging -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "source", "limit"),
    [
        ("activity/email/", lambda o: [a for a in o.activities if a["_type"] == "Email"], 7),
        ("activity/", lambda o: [a for a in o.activities if a["_type"] != "EmailThread"], 33),
        ("lead/", lambda o: o.leads, 9),
        ("contact/", lambda o: o.contacts, 11),
        ("opportunity/", lambda o: o.opportunities, 4),
        ("task/", lambda o: o.tasks, 6),
    ],
)
def test_offset_paging_returns_every_id_exactly_once(
    api: httpx.Client, org: CloseOrg, path: str, source: Any, limit: int
) -> None:
    rows = page_all(api, path, limit)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == {o["id"] for o in source(org)}


def test_activities_and_leads_default_newest_first(api: httpx.Client) -> None:
    for path in ("activity/call/", "lead/"):
        rows = api.get(path, params={"_limit": 50}).json()["data"]
        keys = [r["date_created"] for r in rows]
        assert keys == sorted(keys, reverse=True)
    rows = api.get("activity/call/", params={"_limit": 50, "_order_by": "date_created"}).json()["data"]
    assert [r["date_created"] for r in rows] == sorted(r["date_created"] for r in rows)


def test_page_size_caps_only_where_the_reference_gives_a_maximum(api: httpx.Client) -> None:
    """Leads (200), activities (100) and events (50) refuse bigger pages; where the reference knows no
    maximum (Smart Views are paged with 600 by a public connector, contacts >= 100) any size is accepted."""
    for path, limit in (
        ("saved_search/", 600),
        ("contact/", 500),
        ("opportunity/", 1000),
        ("status/lead/", 600),
    ):
        r = api.get(path, params={"_limit": limit})
        assert r.status_code == 200, (path, r.text)
        assert "data" in r.json()
    for path, cap in (("lead/", 200), ("activity/call/", 100), ("event/", 50)):
        assert api.get(path, params={"_limit": cap}).status_code == 200
        r = api.get(path, params={"_limit": cap + 1})
        assert r.status_code == 400, path
        assert r.json() == {
            "error": f"The limit you set is larger than the maximum limit for this resource (max_limit = {cap})."
        }


def test_paging_errors_have_the_exact_messages(api: httpx.Client) -> None:
    cases = [
        (
            {"_limit": 101},
            "The limit you set is larger than the maximum limit for this resource (max_limit = 100).",
        ),
        ({"_limit": "x"}, '_limit must be an integer (got "x" instead).'),
        ({"_skip": "1.5"}, '_skip must be an integer (got "1.5" instead).'),
        ({"_skip": -1}, '_skip must be a non-negative integer (got "-1" instead).'),
    ]
    for params, message in cases:
        r = api.get("activity/email/", params=params)
        assert r.status_code == 400, params
        assert r.json() == {"error": message}
    assert api.get("activity/email/", params={"_skip": 250_000}).status_code == 200
    r = api.get("activity/email/", params={"_skip": 250_001, "_limit": 100})
    assert r.json() == {
        "error": "The skip you set is larger than the maximum skip for this resource (max_skip = 250000). "
        "Please refine your search query."
    }
    assert api.get("lead/", params={"_limit": 200}).status_code == 200
    assert api.get("lead/", params={"_limit": 201}).status_code == 400
    assert api.get("task/", params={"_limit": 1000}).status_code == 200


def test_max_skip_is_configurable_so_small_data_hits_it(org: CloseOrg) -> None:
    cfg = CloseEmulatorConfig(max_skip=60)
    with (
        CloseEmulatorServer(org, cfg) as srv,
        httpx.Client(base_url=srv.base_url, auth=(org.api_key, "")) as api,
    ):
        skip, pages = 0, 0
        while True:  # a naive full scan of the activities runs into the limit, like Airbyte #20959
            r = api.get("activity/", params={"_skip": skip, "_limit": 25})
            if r.status_code != 200:
                break
            skip, pages = skip + 25, pages + 1
        assert pages == 3 and skip == 75
        assert r.status_code == 400
        assert r.json()["error"].endswith("(max_skip = 60). Please refine your search query.")


def test_fields_selects_keys_and_drops_unknown_names(api: httpx.Client) -> None:
    rows = api.get("activity/call/", params={"_fields": "id,duration,no_such_field", "_limit": 5}).json()[
        "data"
    ]
    assert rows and all(set(r) == {"id", "duration"} for r in rows)
    lead = api.get("lead/", params={"_fields": "id,contacts", "_limit": 1}).json()["data"][0]
    assert set(lead) == {"id", "contacts"}


# ----- filters ------------------------------------------------------------------------------------------------
def test_activity_date_windows_partition_the_data(api: httpx.Client, org: CloseOrg) -> None:
    calls = [a for a in org.activities if a["_type"] == "Call"]
    dates = sorted(a["date_created"] for a in calls)
    cut = dates[len(dates) // 2]
    before = page_all(api, "activity/call/", 10, date_created__lt=cut)
    after = page_all(api, "activity/call/", 10, date_created__gte=cut)
    assert all(r["date_created"] < cut for r in before) and all(r["date_created"] >= cut for r in after)
    assert {r["id"] for r in before} | {r["id"] for r in after} == {a["id"] for a in calls}
    assert not {r["id"] for r in before} & {r["id"] for r in after}
    day_only = cut[:10]
    window = page_all(api, "activity/call/", 10, date_created__gte=day_only, date_created__lte=cut)
    assert all(day_only <= r["date_created"][:10] and r["date_created"] <= cut for r in window)


def test_date_updated_on_activities_is_silently_ignored(api: httpx.Client, org: CloseOrg) -> None:
    future = "2999-01-01T00:00:00+00:00"
    with_trap = page_all(api, "activity/note/", 25, date_updated__gt=future)
    assert len(with_trap) == sum(1 for a in org.activities if a["_type"] == "Note")  # nothing filtered out
    opps = api.get("opportunity/", params={"date_updated__gt": future}).json()
    assert opps["data"] == [] and opps["total_results"] == 0  # opportunities do filter on date_updated


def test_activity_filter_restrictions(api: httpx.Client, org: CloseOrg) -> None:
    act = next(a for a in org.activities if a["_type"] == "Call" and a.get("user_id"))
    for params in ({"user_id": act["user_id"]}, {"contact_id": "cont_x"}, {"_type": "Call"}):
        r = api.get("activity/", params=params)
        assert r.status_code == 400 and "lead_id" in r.json()["error"]
    ok = api.get("activity/", params={"lead_id": act["lead_id"], "_type": "Call"}).json()["data"]
    assert act["id"] in [a["id"] for a in ok] and all(a["_type"] == "Call" for a in ok)
    # on typed endpoints user_id is a plain filter
    mine = page_all(api, "activity/call/", 50, user_id=act["user_id"])
    assert mine and all(a["user_id"] == act["user_id"] for a in mine)
    custom = next(a for a in org.activities if a["_type"] == "CustomActivity")
    type_id = custom["custom_activity_type_id"]
    r = api.get("activity/custom/", params={"custom_activity_type_id": type_id})
    assert r.status_code == 400
    ok = api.get(
        "activity/custom/", params={"custom_activity_type_id": type_id, "lead_id": custom["lead_id"]}
    ).json()
    assert custom["id"] in [a["id"] for a in ok["data"]]
    assert api.get("activity/", params={"_order_by": "-activity_at"}).status_code == 400


def test_activity_lead_id_in(api: httpx.Client, org: CloseOrg) -> None:
    leads = sorted({a["lead_id"] for a in org.activities})[:3]
    rows = page_all(api, "activity/note/", 10, lead_id__in=",".join(leads))
    expected = {a["id"] for a in org.activities if a["_type"] == "Note" and a["lead_id"] in leads}
    assert {r["id"] for r in rows} == expected
    assert api.get("activity/", params={"lead_id__in": ",".join(leads), "_type": "Note"}).status_code == 400


def test_activity_without_thread_emails_has_no_threads(api: httpx.Client, org: CloseOrg) -> None:
    lead_id = next(a["lead_id"] for a in org.activities if a["_type"] == "EmailThread")
    plain = api.get("activity/", params={"lead_id": lead_id}).json()["data"]
    assert all(a["_type"] != "EmailThread" for a in plain)
    only = api.get("activity/", params={"lead_id": lead_id, "thread_emails": "only"}).json()["data"]
    assert only and all(a["_type"] == "EmailThread" for a in only)


def test_opportunity_and_task_filters(api: httpx.Client, org: CloseOrg) -> None:
    won = api.get("opportunity/", params={"status_type": "won"}).json()
    assert {o["id"] for o in won["data"]} == {o["id"] for o in org.opportunities if o["status_type"] == "won"}
    ordered = api.get("opportunity/", params={"_order_by": "-value"}).json()["data"]
    assert [o["value"] for o in ordered] == sorted((o["value"] for o in ordered), reverse=True)
    done = page_all(api, "task/", 50, is_complete="true")
    assert {t["id"] for t in done} == {t["id"] for t in org.tasks if t["is_complete"]}
    cut = sorted(t["date_updated"] for t in org.tasks)[len(org.tasks) // 2]
    newer = page_all(api, "task/", 50, date_updated__gt=cut)
    assert {t["id"] for t in newer} == {t["id"] for t in org.tasks if t["date_updated"] > cut}


def test_params_in_json_body_with_method_override(api: httpx.Client, org: CloseOrg) -> None:
    ids = [c["id"] for c in org.activities if c["_type"] == "Call"][:3]
    lead_id = org.activities[0]["lead_id"]
    direct = api.get("activity/", params={"lead_id": lead_id}).json()
    overridden = api.post(
        "activity/", json={"_params": {"lead_id": lead_id}}, headers={"x-http-method-override": "GET"}
    ).json()
    assert direct == overridden
    by_ids = api.post(
        "activity/call/", json={"_params": {"id__in": ids}}, headers={"x-http-method-override": "GET"}
    )
    assert sorted(a["id"] for a in by_ids.json()["data"]) == sorted(ids)
    bad = api.post(
        "activity/",
        content=b"{nope",
        headers={"x-http-method-override": "GET", "content-type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json() == {"error": "The request contains invalid JSON."}


def test_sequence_subscriptions_need_a_filter(api: httpx.Client, org: CloseOrg) -> None:
    assert api.get("sequence_subscription/").status_code == 400
    seq = org.sequences[0]["id"]
    rows = page_all(api, "sequence_subscription/", 100, sequence_id=seq)
    assert {r["id"] for r in rows} == {s["id"] for s in org.sequence_subscriptions if s["sequence_id"] == seq}


# ----- lead query language ------------------------------------------------------------------------------------
def test_lead_query_date_updated_window_and_sort(api: httpx.Client, org: CloseOrg) -> None:
    stamps = sorted(lead["date_updated"] for lead in org.leads)
    lo, hi = stamps[10], stamps[30]
    rows = page_all(api, "lead/", 7, query=f'sort:updated date_updated > "{lo}" date_updated <= {hi}')
    expected = sorted(
        (x for x in org.leads if lo < x["date_updated"] <= hi), key=lambda x: (x["date_updated"], x["id"])
    )
    assert [r["id"] for r in rows] == [x["id"] for x in expected]
    total = api.get(
        "lead/", params={"query": f"date_updated>={lo[:10]} sort:-date_updated", "_limit": 0}
    ).json()
    assert total["total_results"] == sum(1 for x in org.leads if x["date_updated"][:10] >= lo[:10])
    assert total["data"] == []


def test_lead_query_name_status_or_slice(api: httpx.Client, org: CloseOrg) -> None:
    named = next(x for x in org.leads if x.get("name") and re.fullmatch(r"[A-Za-z ]+", x["name"]))
    word = named["name"].split()[0]
    rows = page_all(api, "lead/", 50, query=f"name:{word}")
    assert named["id"] in {r["id"] for r in rows}
    status = org.lead_statuses[0]["label"]
    rows = page_all(api, "lead/", 50, query=f'status:"{status}"')
    assert {r["id"] for r in rows} == {x["id"] for x in org.leads if x["status_label"] == status}
    other = org.lead_statuses[1]["label"]
    either = page_all(api, "lead/", 50, query=f'status:"{status}" OR status:"{other}"')
    assert {r["id"] for r in either} == {x["id"] for x in org.leads if x["status_label"] in (status, other)}
    parts = [{r["id"] for r in page_all(api, "lead/", 50, query=f"* slice:{i}/3")} for i in range(3)]
    assert sum(len(p) for p in parts) == len(org.leads) and set().union(*parts) == {
        x["id"] for x in org.leads
    }
    r = api.get("lead/", params={"query": "has:phone_numbers"})
    assert r.status_code == 400 and "supports" in r.json()["error"]


def test_attachment_urls_point_at_the_emulator(
    api: httpx.Client, server: CloseEmulatorServer, org: CloseOrg
) -> None:
    with_attachment = next(a for a in org.activities if a["_type"] == "Email" and a.get("attachments"))
    served = api.get(f"activity/email/{with_attachment['id']}/").json()
    url = served["attachments"][0]["url"]
    assert url.startswith(server.root_url + "/go/file/")
    assert url.removeprefix(server.root_url + "/") in org.files


# ----- event log ----------------------------------------------------------------------------------------------
def test_event_cursor_paging_newest_first(api: httpx.Client, org: CloseOrg) -> None:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"_limit": 2}
    while True:
        body = api.get("event/", params=params).json()
        assert set(body) == {"data", "cursor_next", "cursor_previous"}
        seen.extend(body["data"])
        if not body["cursor_next"]:
            break
        params["_cursor"] = body["cursor_next"]
    assert sorted(e["id"] for e in seen) == sorted(e["id"] for e in org.events)
    keys = [e["date_updated"] for e in seen]
    assert keys == sorted(keys, reverse=True)
    r = api.get("event/", params={"_limit": 51})
    assert r.json() == {
        "error": "The limit you set is larger than the maximum limit for this resource (max_limit = 50)."
    }
    assert api.get("event/", params={"action": "deleted"}).status_code == 400
    deleted = api.get("event/", params={"object_type": "lead", "action": "deleted"}).json()["data"]
    assert {e["id"] for e in deleted} == {
        e["id"] for e in org.events if e["object_type"] == "lead" and e["action"] == "deleted"
    }


def test_reload_serves_an_edited_org(org: CloseOrg) -> None:
    edited = generate("tiny")
    lead = edited.leads[0]
    lead["name"] = "Renamed After Reload"
    lead["date_updated"] = "2030-01-01T00:00:00.000000+00:00"
    with (
        CloseEmulatorServer(org) as srv,
        httpx.Client(base_url=srv.base_url, auth=(org.api_key, "")) as api,
    ):
        assert api.get(f"lead/{lead['id']}/").json()["name"] != "Renamed After Reload"
        srv.reload(edited)
        assert api.get(f"lead/{lead['id']}/").json()["name"] == "Renamed After Reload"
        changed = api.get("lead/", params={"query": "date_updated >= 2029-12-31"}).json()
        assert [x["id"] for x in changed["data"]] == [lead["id"]]
