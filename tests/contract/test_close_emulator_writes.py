"""Contract tests of the Close emulator's writes: create/update/delete of every record type, lead merge,
Files API attachments, the event log they write, and every read path (lists, filters, query language,
exports, the project's Close client) seeing them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from emulators.close import CloseEmulatorConfig
from emulators.close.server import CloseEmulatorServer
from emulators.close.store import SortedView
from emulators.orgdata import CloseOrg, generate
from migration_assets.clients.close.client import CloseClient

START = datetime(
    2026, 6, 1, 9, 0, tzinfo=UTC
)  # after every generated record (the data's "now" is 2026-01-15)
CLASSIC_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
NAIVE_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def close_id(prefix: str, length: int = 43) -> re.Pattern[str]:
    return re.compile(rf"^{prefix}_[0-9A-Za-z]{{{length}}}$")


class FakeClock:
    """The emulator's injectable clock: tests move time without sleeping."""

    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny")


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server(org: CloseOrg, clock: FakeClock) -> Iterator[CloseEmulatorServer]:
    cfg = CloseEmulatorConfig(clock=clock, export_polls_before_done=1)
    cfg.rate_limit.enabled = False
    with CloseEmulatorServer(org, cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: CloseEmulatorServer, org: CloseOrg) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, auth=(org.api_key, ""), timeout=30) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def events_of(api: httpx.Client, object_id: str) -> list[dict[str, Any]]:
    """The object's events, newest first (object_id+action and object_type+object_id are the supported
    combinations; the latter needs the type, so page the whole log's recent part instead)."""
    found: list[dict[str, Any]] = []
    for action in ("created", "updated", "deleted", "merged"):
        found += ok(api.get("event/", params={"object_id": object_id, "action": action}))["data"]
    return sorted(found, key=lambda e: (e["date_updated"], e["id"]), reverse=True)


def new_lead(api: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    return ok(api.post("lead/", json={"name": name, **extra}))


# ----- leads -------------------------------------------------------------------------------------------------
def test_lead_create_update_delete(api: httpx.Client, org: CloseOrg, clock: FakeClock) -> None:
    status = org.lead_statuses[1]
    field = next(f for f in org.custom_fields["lead"] if f["type"] == "text")
    clock.advance(60)
    created_at = datetime.fromtimestamp(clock.now, tz=UTC)
    lead = new_lead(
        api,
        "Writes Test Co",
        status=status["label"],
        url="https://writes.example.com",
        contacts=[{"name": "Wanda Writer", "emails": [{"email": "wanda@example.com", "type": "office"}]}],
        **{f"custom.{field['id']}": "from the API"},
    )
    assert close_id("lead").match(lead["id"])
    assert lead["status_id"] == status["id"] and lead["status_label"] == status["label"]
    assert CLASSIC_TS.match(lead["date_created"]) and lead["date_created"] == lead["date_updated"]
    assert datetime.fromisoformat(lead["date_created"]) == created_at
    assert lead[f"custom.{field['id']}"] == "from the API" and lead["custom"][field["name"]] == "from the API"
    assert [c["name"] for c in lead["contacts"]] == ["Wanda Writer"]
    assert lead["contact_ids"] == [lead["contacts"][0]["id"]] and close_id("cont").match(
        lead["contact_ids"][0]
    )
    assert lead["opportunities"] == [] and lead["tasks"] == []
    assert ok(api.get(f"lead/{lead['id']}/")) == lead

    clock.advance(60)
    updated = ok(
        api.put(f"lead/{lead['id']}/", json={"description": "Edited", f"custom.{field['id']}": None})
    )
    assert updated["description"] == "Edited" and updated["name"] == "Writes Test Co"  # PUT is a PATCH
    assert f"custom.{field['id']}" not in updated and field["name"] not in updated["custom"]
    assert updated["date_updated"] > lead["date_updated"] and updated["date_created"] == lead["date_created"]
    assert ok(api.get(f"lead/{lead['id']}/")) == updated

    contact_id = lead["contact_ids"][0]
    assert ok(api.delete(f"lead/{lead['id']}/")) == {}
    assert api.get(f"lead/{lead['id']}/").status_code == 404
    assert api.get(f"contact/{contact_id}/").status_code == 404
    assert api.put(f"lead/{lead['id']}/", json={"name": "x"}).status_code == 404
    assert api.delete(f"lead/{lead['id']}/").json() == {
        "error": "Empty query: Lead matching query does not exist."
    }

    lead_events = events_of(api, lead["id"])
    assert [e["action"] for e in lead_events] == ["deleted", "updated", "created"]
    deleted, changed, born = lead_events
    assert born["data"]["id"] == lead["id"] and born["previous_data"] == {} and born["changed_fields"] == []
    assert changed["changed_fields"] == sorted(
        ["custom", f"custom.{field['id']}", "date_updated", "description"]
    )
    assert changed["previous_data"]["description"] == "" and changed["data"]["description"] == "Edited"
    assert deleted["data"] == {} and deleted["previous_data"]["name"] == "Writes Test Co"
    assert deleted["meta"] == {"request_method": "DELETE", "request_path": f"/api/v1/lead/{lead['id']}/"}
    contact_deleted = ok(api.get("event/", params={"object_id": contact_id, "action": "deleted"}))["data"]
    assert [e["object_type"] for e in contact_deleted] == ["contact"]
    assert contact_deleted[0]["request_id"] == deleted["request_id"]  # the same request deleted both


def test_event_shape(api: httpx.Client, org: CloseOrg) -> None:
    lead = new_lead(api, "Event Shape Inc")
    (event,) = events_of(api, lead["id"])
    assert close_id("ev", 22).match(event["id"]) and close_id("req", 22).match(event["request_id"])
    assert NAIVE_TS.match(event["date_created"]) and event["date_created"] == event["date_updated"]
    assert event["date_created"] == lead["date_created"].removesuffix("+00:00")
    assert event["user_id"] == org.users[0]["id"]
    assert event["organization_id"] == org.organization["id"] and event["lead_id"] == lead["id"]
    assert event["object_type"] == "lead" and event["object_id"] == lead["id"]
    assert event["meta"] == {"request_method": "POST", "request_path": "/api/v1/lead/"}
    assert set(event) >= {"api_key_id", "oauth_client_id", "oauth_scope", "changed_fields", "previous_data"}
    assert ok(api.get(f"event/{event['id']}/")) == event


def test_lead_query_language_and_lists_see_writes(api: httpx.Client, org: CloseOrg, clock: FakeClock) -> None:
    clock.advance(3600)
    mark = datetime.fromtimestamp(clock.now, tz=UTC)
    clock.advance(60)
    lead = new_lead(api, "Query Language Ltd")
    older = org.leads[2]  # a generated lead: its date_updated moves from the past to now
    clock.advance(60)
    ok(api.put(f"lead/{older['id']}/", json={"name": "Renamed Now Ltd"}))
    since = mark.strftime("%Y-%m-%dT%H:%M:%S")
    rows = ok(api.get("lead/", params={"query": f'sort:updated date_updated > "{since}"', "_limit": 200}))
    assert [r["id"] for r in rows["data"]] == [lead["id"], older["id"]]
    assert rows["total_results"] == 2 and rows["data"][1]["name"] == "Renamed Now Ltd"
    newest = ok(api.get("lead/", params={"query": "sort:-updated", "_limit": 2}))["data"]
    assert [x["id"] for x in newest] == [older["id"], lead["id"]]
    assert ok(api.get("lead/", params={"query": '"Renamed Now"'}))["data"][0]["id"] == older["id"]
    assert ok(api.get("lead/", params={"_limit": 1}))["data"][0]["id"] == lead["id"]  # newest created first
    ok(api.delete(f"lead/{lead['id']}/"))
    rows = ok(api.get("lead/", params={"query": f'sort:updated date_updated > "{since}"'}))
    assert [r["id"] for r in rows["data"]] == [older["id"]]
    assert ok(api.get("lead/", params={"_fields": "id,name", "query": f"id:{older['id']}"}))["data"] == [
        {"id": older["id"], "name": "Renamed Now Ltd"}
    ]


# ----- contacts ----------------------------------------------------------------------------------------------
def test_contact_create_update_delete(api: httpx.Client, clock: FakeClock) -> None:
    lead = new_lead(api, "Contact Holder")
    clock.advance(60)
    contact = ok(api.post("contact/", json={"lead_id": lead["id"], "name": "Carl", "title": "CTO"}))
    assert contact["lead_id"] == lead["id"] and close_id("cont").match(contact["id"])
    after_add = ok(api.get(f"lead/{lead['id']}/"))
    assert (
        after_add["contact_ids"] == [contact["id"]] and after_add["date_updated"] == contact["date_created"]
    )
    lead_update = events_of(api, lead["id"])[0]
    assert lead_update["action"] == "updated" and "contact_ids" in lead_update["changed_fields"]
    assert lead_update["previous_data"]["contact_ids"] == [] and lead_update["data"]["contact_ids"] == [
        contact["id"]
    ]

    clock.advance(60)
    changed = ok(api.put(f"contact/{contact['id']}/", json={"title": "CEO", "phones": []}))
    assert changed["title"] == "CEO" and changed["name"] == "Carl"
    # An edit of an existing contact is the contact's event only ("updates to existing contacts do not
    # trigger this event", Close's list of event types), but it moves the lead's date_updated (§7.7).
    lead_now = ok(api.get(f"lead/{lead['id']}/"))
    assert lead_now["date_updated"] == changed["date_updated"] > after_add["date_updated"]
    assert lead_now["contacts"][0]["title"] == "CEO"
    assert events_of(api, lead["id"])[0] == lead_update
    event = events_of(api, contact["id"])[0]
    assert event["changed_fields"] == ["date_updated", "title"]
    assert event["previous_data"] == {"date_updated": contact["date_updated"], "title": "CTO"}
    assert ok(api.get("contact/", params={"lead_id": lead["id"]}))["data"] == [changed]

    ok(api.delete(f"contact/{contact['id']}/"))
    assert ok(api.get(f"lead/{lead['id']}/"))["contact_ids"] == []
    assert ok(api.get("contact/", params={"lead_id": lead["id"]}))["data"] == []
    assert [e["action"] for e in events_of(api, contact["id"])] == ["deleted", "updated", "created"]


def test_contact_without_lead_creates_one(api: httpx.Client) -> None:
    contact = ok(api.post("contact/", json={"name": "Solo Person"}))
    lead = ok(api.get(f"lead/{contact['lead_id']}/"))
    assert lead["name"] == "Solo Person" and lead["contact_ids"] == [contact["id"]]


# ----- opportunities -----------------------------------------------------------------------------------------
def test_opportunity_create_update_delete(api: httpx.Client, org: CloseOrg, clock: FakeClock) -> None:
    lead = new_lead(api, "Deal Maker")
    clock.advance(60)
    opp = ok(
        api.post(
            "opportunity/",
            json={
                "lead_id": lead["id"],
                "value": 50000,
                "confidence": 75,
                "value_period": "monthly",
                "note": "n",
            },
        )
    )
    assert close_id("oppo").match(opp["id"]) and opp["lead_name"] == "Deal Maker"
    assert (opp["value_formatted"], opp["annualized_value"], opp["expected_value"]) == (
        "$500 monthly",
        600000,
        37500,
    )
    assert opp["annualized_expected_value"] == 450000 and opp["note_html"] == "<body><p>n</p></body>"
    assert opp["status_type"] == "active" and opp["pipeline_id"]
    assert ok(api.get(f"lead/{lead['id']}/"))["opportunities"] == [opp]
    assert ok(api.get(f"lead/{lead['id']}/"))["date_updated"] == opp["date_created"]
    assert [e["action"] for e in events_of(api, lead["id"])] == ["created"]  # no lead event for it
    listed = ok(api.get("opportunity/", params={"lead_id": lead["id"]}))
    assert listed["data"] == [opp] and listed["total_results"] == 1 and listed["total_value_monthly"] == 50000

    won = next(s for s in org.opportunity_statuses if s["type"] == "won")
    clock.advance(60)
    after = ok(api.put(f"opportunity/{opp['id']}/", json={"status_id": won["id"]}))
    assert after["status_type"] == "won" and after["date_won"] == START.date().isoformat()
    since = datetime.fromisoformat(opp["date_updated"]).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    updated = ok(api.get("opportunity/", params={"date_updated__gt": since, "lead_id": lead["id"]}))["data"]
    assert [o["id"] for o in updated] == [opp["id"]]
    changes = ok(api.get("activity/status_change/opportunity/", params={"lead_id": lead["id"]}))["data"]
    assert [(c["opportunity_id"], c["new_status_id"]) for c in changes] == [(opp["id"], won["id"])]

    ok(api.delete(f"opportunity/{opp['id']}/"))
    assert api.get(f"opportunity/{opp['id']}/").status_code == 404
    assert ok(api.get("opportunity/", params={"lead_id": lead["id"]}))["total_results"] == 0
    assert ok(api.get(f"lead/{lead['id']}/"))["opportunities"] == []


# ----- tasks -------------------------------------------------------------------------------------------------
def test_task_create_update_delete(api: httpx.Client, org: CloseOrg, clock: FakeClock) -> None:
    lead = new_lead(api, "Task Owner")
    task = ok(api.post("task/", json={"lead_id": lead["id"], "text": "Call back", "date": "2026-05-01"}))
    assert close_id("task").match(task["id"]) and task["_type"] == "lead" and task["view"] == "inbox"
    assert task["assigned_to"] == org.users[0]["id"] and task["is_complete"] is False
    assert ok(api.get(f"lead/{lead['id']}/"))["tasks"] == [task]
    clock.advance(60)
    done = ok(api.put(f"task/{task['id']}/", json={"is_complete": True}))
    assert (
        done["is_complete"] is True and done["view"] == "archive" and done["object_type"] == "taskcompleted"
    )
    completion = ok(api.get(f"activity/task_completed/{done['object_id']}/"))
    assert completion["task_id"] == task["id"] and completion["lead_id"] == lead["id"]
    complete = ok(api.get("task/", params={"lead_id": lead["id"], "is_complete": "true"}))["data"]
    assert [t["id"] for t in complete] == [task["id"]]
    event = events_of(api, task["id"])[0]
    assert event["object_type"] == "task.lead" and "is_complete" in event["changed_fields"]
    ok(api.delete(f"task/{task['id']}/"))
    assert ok(api.get("task/", params={"lead_id": lead["id"]}))["data"] == []
    assert ok(api.get(f"lead/{lead['id']}/"))["tasks"] == []


# ----- activities --------------------------------------------------------------------------------------------
ACTIVITY_BODIES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "note": ("activity.note", {"note": "First"}, {"note_html": "<body><p>Second</p></body>"}),
    "call": ("activity.call", {"direction": "outbound", "duration": 60, "note": "c"}, {"note": "edited"}),
    "email": (
        "activity.email",
        {"status": "sent", "subject": "Hello", "sender": "a@example.com", "to": ["b@example.com"]},
        {"subject": "Hello again"},
    ),
    "sms": ("activity.sms", {"status": "sent", "text": "hi", "remote_phone": "+14155550100"}, {"text": "yo"}),
    "whatsapp_message": (
        "activity.whatsapp_message",
        {"message_markdown": "hey"},
        {"message_markdown": "ho"},
    ),
}


@pytest.mark.parametrize("kind", sorted(ACTIVITY_BODIES))
def test_activity_create_update_delete(api: httpx.Client, clock: FakeClock, kind: str) -> None:
    object_type, create, update = ACTIVITY_BODIES[kind]
    lead = new_lead(api, f"Activity {kind}")
    clock.advance(60)
    act = ok(api.post(f"activity/{kind}/", json={"lead_id": lead["id"], **create}))
    assert close_id("acti").match(act["id"]) and act["lead_id"] == lead["id"]
    assert act["date_created"] == act["activity_at"] and CLASSIC_TS.match(act["date_created"])
    assert ok(api.get(f"activity/{kind}/{act['id']}/")) == act
    assert act["id"] in [a["id"] for a in ok(api.get("activity/", params={"lead_id": lead["id"]}))["data"]]
    since = act["date_created"]
    newest = ok(api.get(f"activity/{kind}/", params={"date_created__gte": since}))["data"]
    assert [a["id"] for a in newest] == [act["id"]]
    clock.advance(60)
    changed = ok(api.put(f"activity/{kind}/{act['id']}/", json=update))
    for key, value in update.items():
        assert changed[key] == value
    assert changed["date_updated"] > act["date_updated"] and changed["date_created"] == act["date_created"]
    assert ok(api.get("activity/", params={"lead_id": lead["id"], "_type": act["_type"]}))["data"] == [
        changed
    ]
    ok(api.delete(f"activity/{kind}/{act['id']}/"))
    assert api.get(f"activity/{kind}/{act['id']}/").status_code == 404
    assert [e["action"] for e in events_of(api, act["id"])] == ["deleted", "updated", "created"]
    assert {e["object_type"] for e in events_of(api, act["id"])} == {object_type}


def test_email_threads_follow_their_emails(api: httpx.Client) -> None:
    lead = new_lead(api, "Thread Lead")
    first = ok(api.post("activity/email/", json={"lead_id": lead["id"], "status": "inbox", "subject": "Q"}))
    assert first["direction"] == "incoming"
    thread = ok(api.get(f"activity/emailthread/{first['thread_id']}/"))
    assert thread["n_emails"] == 1 and thread["emails"][0]["id"] == first["id"]
    reply = ok(
        api.post(
            "activity/email/",
            json={"lead_id": lead["id"], "status": "sent", "subject": "Re: Q", "thread_id": thread["id"]},
        )
    )
    thread = ok(api.get(f"activity/emailthread/{thread['id']}/"))
    assert thread["n_emails"] == 2 and thread["latest_normalized_subject"] == "Q"
    ok(api.delete(f"activity/email/{first['id']}/"))
    ok(api.delete(f"activity/email/{reply['id']}/"))
    assert api.get(f"activity/emailthread/{thread['id']}/").status_code == 404


def test_meeting_update_and_delete(api: httpx.Client, org: CloseOrg) -> None:
    meeting = next(a for a in org.activities if a["_type"] == "Meeting")
    assert api.post("activity/meeting/", json={"lead_id": meeting["lead_id"]}).status_code == 405
    changed = ok(api.put(f"activity/meeting/{meeting['id']}/", json={"note": "Agenda agreed"}))
    assert changed["note"] == "Agenda agreed" and changed["title"] == meeting["title"]
    ok(api.delete(f"activity/meeting/{meeting['id']}/"))
    assert meeting["id"] not in [
        a["id"] for a in ok(api.get("activity/", params={"lead_id": meeting["lead_id"]}))["data"]
    ]
    assert events_of(api, meeting["id"])[0]["object_type"] == "activity.meeting"


def test_custom_activity_validates_its_type(api: httpx.Client, org: CloseOrg) -> None:
    kind = org.custom_activity_types[0]
    required = [f for f in kind["fields"] if f["required"]]
    lead = new_lead(api, "Custom Activity Lead")
    body = {"lead_id": lead["id"], "custom_activity_type_id": kind["id"]}
    missing = api.post("activity/custom/", json=body)
    assert missing.status_code == 400
    assert missing.json() == {
        "errors": [],
        "field-errors": {f"custom.{required[0]['id']}": "This field is required."},
    }
    draft = ok(api.post("activity/custom/", json={**body, "status": "draft"}))
    assert draft["status"] == "draft"
    publish = api.put(f"activity/custom/{draft['id']}/", json={"status": "published"})
    assert publish.status_code == 400 and f"custom.{required[0]['id']}" in publish.json()["field-errors"]
    # A refused PUT changes nothing (read with `_fields`, which serialises the stored object, not a cache).
    unchanged = {"id": draft["id"], "status": "draft"}
    assert ok(api.get(f"activity/custom/{draft['id']}/", params={"_fields": "id,status"})) == unchanged
    values = {f"custom.{f['id']}": 3 if f["type"] == "number" else "x" for f in required}
    published = ok(api.post("activity/custom/", json={**body, **values}))
    assert published["status"] == "published" and published["_type"] == "CustomActivity"
    listed = ok(
        api.get("activity/custom/", params={"lead_id": lead["id"], "custom_activity_type_id": kind["id"]})
    )
    assert {a["id"] for a in listed["data"]} == {draft["id"], published["id"]}
    changed = ok(api.put(f"activity/custom/{published['id']}/", json={"pinned": True}))
    assert changed["pinned"] is True and changed["pinned_at"] == changed["date_updated"]
    assert events_of(api, published["id"])[0]["object_type"] == "activity.custom_activity"
    bad = api.post(
        "activity/custom/", json={"lead_id": lead["id"], "custom_activity_type_id": "actitype_nope"}
    )
    assert bad.status_code == 400 and "custom_activity_type_id" in bad.json()["field-errors"]


# ----- validation errors -------------------------------------------------------------------------------------
def test_validation_errors_use_close_bodies(api: httpx.Client) -> None:
    no_lead = {"errors": [], "field-errors": {"lead": "Object does not exist."}}
    required = {"errors": [], "field-errors": {"lead": "This field is required."}}
    assert api.post("activity/note/", json={"note": "x"}).json() == required
    assert api.post("activity/note/", json={"lead_id": "lead_nope", "note": "x"}).json() == no_lead
    assert api.post("task/", json={"text": "x"}).json() == required
    assert api.post("opportunity/", json={"lead_id": "lead_nope"}).json() == no_lead
    assert api.post("contact/", json={"lead_id": "lead_nope"}).json() == no_lead
    bad_status = api.post("lead/", json={"name": "x", "status_id": "stat_nope"})
    assert bad_status.status_code == 400 and bad_status.json()["field-errors"] == {
        "status": "Not a valid choice."
    }
    bad_json = api.post("lead/", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.json() == {"error": "The request contains invalid JSON."}
    assert api.put("contact/cont_nope/", json={}).json() == {
        "error": "Empty query: Contact matching query does not exist."
    }
    assert api.delete("activity/note/acti_nope/").status_code == 404


# ----- merge -------------------------------------------------------------------------------------------------
def test_merge_moves_children_and_deletes_the_source(api: httpx.Client, clock: FakeClock) -> None:
    source = new_lead(api, "Merge Source", contacts=[{"name": "Sam Source"}])
    destination = new_lead(api, "Merge Destination", contacts=[{"name": "Dee Destination"}])
    opp = ok(api.post("opportunity/", json={"lead_id": source["id"], "value": 1000}))
    note = ok(api.post("activity/note/", json={"lead_id": source["id"], "note": "moving"}))
    task = ok(api.post("task/", json={"lead_id": source["id"], "text": "follow up"}))
    clock.advance(60)
    assert ok(api.post("lead/merge/", json={"source": source["id"], "destination": destination["id"]})) == {
        "status": "ok"
    }
    assert api.get(f"lead/{source['id']}/").status_code == 404
    merged = ok(api.get(f"lead/{destination['id']}/"))
    assert set(merged["contact_ids"]) == {source["contact_ids"][0], destination["contact_ids"][0]}
    assert [o["id"] for o in merged["opportunities"]] == [opp["id"]]
    assert [t["id"] for t in merged["tasks"]] == [task["id"]]
    moved_note = ok(api.get(f"activity/note/{note['id']}/"))
    assert moved_note["lead_id"] == destination["id"] and moved_note["date_updated"] > note["date_updated"]
    assert ok(api.get(f"opportunity/{opp['id']}/"))["lead_name"] == "Merge Destination"
    timeline = ok(api.get("activity/", params={"lead_id": destination["id"]}))["data"]
    assert {"LeadMerge", "Note"} <= {a["_type"] for a in timeline}
    assert ok(api.get("activity/", params={"lead_id": source["id"]}))["data"] == []

    meta = {"merge_source_lead_id": source["id"], "merge_destination_lead_id": destination["id"]}
    deleted = ok(api.get("event/", params={"object_type": "lead", "action": "deleted"}))["data"][0]
    assert deleted["object_id"] == source["id"] and deleted["meta"] == {
        "request_method": "POST",
        "request_path": "/api/v1/lead/merge/",
        **meta,
    }
    assert deleted["previous_data"]["name"] == "Merge Source"
    merged_event = ok(api.get("event/", params={"object_type": "lead", "action": "merged"}))["data"][0]
    assert merged_event["lead_id"] == destination["id"] and merged_event["data"]["id"] == destination["id"]
    request = ok(api.get("event/", params={"request_id": merged_event["request_id"]}))["data"]
    assert all(e["meta"]["merge_source_lead_id"] == source["id"] for e in request)
    moved = {e["object_id"] for e in request if e["action"] == "updated" and e["object_type"] != "lead"}
    assert moved == {source["contact_ids"][0], opp["id"], note["id"], task["id"]}
    assert [e["action"] for e in request][:2] == ["merged", "deleted"]

    missing = api.post("lead/merge/", json={"source": source["id"], "destination": destination["id"]})
    assert missing.status_code == 400 and missing.json() == {"errors": ["Source lead does not exist."]}
    no_destination = api.post("lead/merge/", json={"source": destination["id"], "destination": "lead_nope"})
    assert no_destination.json() == {"errors": ["Destination lead does not exist."]}
    required = api.post("lead/merge/", json={"source": destination["id"]})
    assert required.json() == {"errors": [], "field-errors": {"destination": "This field is required."}}


# ----- attachments -------------------------------------------------------------------------------------------
def upload(api: httpx.Client, content: bytes, filename: str, content_type: str) -> str:
    slot = ok(api.post("files/upload/", json={"filename": filename, "content_type": content_type}))
    assert set(slot["upload"]["fields"]) >= {"key", "policy", "signature", "Content-Type"}
    stored = httpx.post(
        slot["upload"]["url"], data=slot["upload"]["fields"], files={"file": (filename, content)}
    )
    assert stored.status_code == 201 and "<PostResponse>" in stored.text
    return slot["download"]["url"]


def test_attachment_round_trip(api: httpx.Client, server: CloseEmulatorServer, org: CloseOrg) -> None:
    content = bytes(range(256)) * 411 + b"\r\n--tail\r\n"  # binary, with CRLFs and dashes
    lead = new_lead(api, "Attachment Lead")
    url = upload(api, content, "report.pdf", "application/pdf")
    note = ok(
        api.post(
            "activity/note/",
            json={
                "lead_id": lead["id"],
                "note": "see attached",
                "attachments": [{"url": url, "filename": "report.pdf", "content_type": "application/pdf"}],
            },
        )
    )
    (attachment,) = note["attachments"]
    assert attachment["size"] == len(content) and attachment["filename"] == "report.pdf"
    assert f"/go/file/persisted/{org.organization['id']}/activity.note/{note['id']}/" in attachment["url"]
    with CloseClient(org.api_key, server.base_url) as client:
        assert b"".join(client.download(attachment["url"])) == content
    email_url = upload(api, b"email bytes", "a.txt", "text/plain")
    email = ok(
        api.post(
            "activity/email/",
            json={
                "lead_id": lead["id"],
                "status": "draft",
                "attachments": [{"url": email_url, "filename": "a.txt"}],
            },
        )
    )
    assert "/activity.email/" in email["attachments"][0]["url"]
    assert httpx.get(
        email["attachments"][0]["url"], auth=(org.api_key, ""), follow_redirects=True
    ).content == (b"email bytes")
    kept = ok(api.put(f"activity/note/{note['id']}/", json={"attachments": note["attachments"]}))
    assert kept["attachments"] == note["attachments"]


def test_attachment_errors(api: httpx.Client, clock: FakeClock) -> None:
    lead = new_lead(api, "Attachment Errors")
    slot = ok(
        api.post("files/upload/", json={"filename": "late.bin", "content_type": "application/octet-stream"})
    )
    body = {"lead_id": lead["id"], "attachments": [{"url": slot["download"]["url"], "filename": "late.bin"}]}
    not_uploaded = api.post("activity/note/", json=body)
    assert not_uploaded.status_code == 400 and "attachments" in not_uploaded.json()["field-errors"]
    clock.advance(61)  # "must be made within 60 seconds of your request to /files/upload"
    late = httpx.post(
        slot["upload"]["url"], data=slot["upload"]["fields"], files={"file": ("late.bin", b"x")}
    )
    assert late.status_code == 403 and "Policy expired" in late.text
    foreign = {"lead_id": lead["id"], "attachments": [{"url": "https://example.com/x.bin"}]}
    assert "attachments" in api.post("activity/note/", json=foreign).json()["field-errors"]
    assert api.post("files/upload/", json={"filename": "x"}).json()["field-errors"] == {
        "content_type": "This field is required."
    }


# ----- event log ---------------------------------------------------------------------------------------------
def test_event_log_order_filters_and_cursor(api: httpx.Client, clock: FakeClock) -> None:
    clock.advance(600)
    mark = datetime.fromtimestamp(clock.now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    lead = new_lead(api, "Event Log Lead")
    contacts = [ok(api.post("contact/", json={"lead_id": lead["id"], "name": f"C{i}"})) for i in range(5)]
    created = ok(
        api.get("event/", params={"object_type": "contact", "action": "created", "date_updated__gte": mark})
    )
    assert [e["object_id"] for e in created["data"]] == [c["id"] for c in reversed(contacts)]  # newest first
    pages: list[str] = []
    cursor = None
    while True:
        params = {"object_type": "contact", "action": "created", "date_updated__gte": mark, "_limit": 2}
        body = ok(api.get("event/", params={**params, **({"_cursor": cursor} if cursor else {})}))
        pages += [e["object_id"] for e in body["data"]]
        cursor = body["cursor_next"]
        if not cursor:
            break
    assert pages == [c["id"] for c in reversed(contacts)]
    by_lead = ok(api.get("event/", params={"lead_id": lead["id"], "object_type": "lead"}))["data"]
    assert [e["action"] for e in by_lead] == ["updated"] * 5 + ["created"]
    everything = ok(api.get("event/", params={"date_updated__gte": mark}))["data"]
    keys = [(e["date_updated"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys) == 11


def test_writes_at_a_frozen_clock_are_still_ordered(api: httpx.Client) -> None:
    first = new_lead(api, "Frozen A")
    second = new_lead(api, "Frozen B")  # same clock reading: the emulator still orders them
    assert second["date_created"] > first["date_created"]
    newest = ok(api.get("event/", params={"object_type": "lead", "action": "created"}))["data"][:2]
    assert [e["object_id"] for e in newest] == [second["id"], first["id"]]


# ----- exports -----------------------------------------------------------------------------------------------
def run_export(api: httpx.Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    created = ok(api.post("export/lead/", json=request))
    for _ in range(10):
        export = ok(api.get(f"export/{created['id']}/"))
        if export["status"] == "done":
            return [json.loads(line) for line in httpx.get(export["download_url"]).text.splitlines()]
    raise AssertionError("export never finished")


def test_exports_reflect_writes(api: httpx.Client, org: CloseOrg) -> None:
    kept = new_lead(api, "Exported Lead", contacts=[{"name": "Ex Port"}])
    note = ok(api.post("activity/note/", json={"lead_id": kept["id"], "note": "exported note"}))
    gone = new_lead(api, "Unexported Lead")
    ok(api.delete(f"lead/{gone['id']}/"))
    edited_contact = org.contacts[3]
    ok(api.put(f"contact/{edited_contact['id']}/", json={"title": "Exported Title"}))
    leads = {
        x["id"]: x for x in run_export(api, {"format": "json", "type": "leads", "include_activities": True})
    }
    assert gone["id"] not in leads
    assert [a["id"] for a in leads[kept["id"]]["activities"]] == [note["id"]]
    assert leads[kept["id"]] == {
        **ok(api.get(f"lead/{kept['id']}/")),
        "activities": leads[kept["id"]]["activities"],
    }
    owner = leads[edited_contact["lead_id"]]
    assert next(c for c in owner["contacts"] if c["id"] == edited_contact["id"])["title"] == "Exported Title"
    contacts = {c["id"]: c for c in run_export(api, {"format": "json", "type": "contacts"})}
    assert contacts[edited_contact["id"]]["title"] == "Exported Title"
    assert len(leads) == ok(api.get("lead/", params={"_limit": 1}))["total_results"]


# ----- the project's client ----------------------------------------------------------------------------------
def test_project_client_sees_the_changes(
    api: httpx.Client, server: CloseEmulatorServer, org: CloseOrg, clock: FakeClock
) -> None:
    clock.advance(3600)
    since = datetime.fromtimestamp(clock.now, tz=UTC)
    clock.advance(120)
    lead = new_lead(api, "Client Visible Lead")
    doomed = new_lead(api, "Client Deleted Lead")
    ok(api.delete(f"lead/{doomed['id']}/"))
    old_opp = org.opportunities[5]
    ok(api.put(f"opportunity/{old_opp['id']}/", json={"confidence": 42}))
    note = ok(api.post("activity/note/", json={"lead_id": lead["id"], "note": "client sees me"}))
    with CloseClient(org.api_key, server.base_url) as client:
        events = [e for page in client.iter_events(since=since) for e in page]
        assert {(e["object_type"], e["action"]) for e in events} >= {
            ("lead", "created"),
            ("lead", "deleted"),
            ("opportunity", "updated"),
            ("activity.note", "created"),
        }
        assert list(client.deleted_ids("lead", since=since)) == [doomed["id"]]
        leads = [x["id"] for page in client.iter_leads(updated_since=since) for x in page]
        assert sorted(leads) == sorted([lead["id"], old_opp["lead_id"]])  # an opportunity edit moves its lead
        opps = [o["id"] for page in client.iter_updated("opportunity/", updated_since=since) for o in page]
        assert opps == [old_opp["id"]]
        notes = [
            a["id"]
            for page in client.iter_activities("activity/note/", created_since=since, lookback=timedelta(0))
            for a in page
        ]
        assert notes == [note["id"]]


# ----- the store's incremental indexes -------------------------------------------------------------------------
def test_sorted_view_insert_and_remove_keep_the_full_build_order() -> None:
    rows = [{"id": f"x{i % 7}{i}", "t": f"2026-01-0{1 + i % 3}T00:00:00+00:00"} for i in range(30)]
    view = SortedView(rows[:10], "t")
    for row in rows[10:]:
        view.insert(row)
    for row in rows[::4]:
        view.remove(row)
    kept = [r for i, r in enumerate(rows) if i % 4]
    expected = SortedView(kept, "t")
    assert view.items == expected.items and view.keys == expected.keys
    moved = kept[0]
    old = moved["t"]
    moved["t"] = "2027-01-01T00:00:00+00:00"
    view.remove(moved, old, use_old=True)
    view.insert(moved)
    assert view.items[-1] is moved and view.items == SortedView(kept, "t").items
