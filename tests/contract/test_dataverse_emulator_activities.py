"""DV-CORE contract: activities, activity parties, state changes, Win/Lose opportunity (§7.4–§7.10)."""

from __future__ import annotations

import pytest
from test_dataverse_emulator_support import APP_USER, Dv, error_of, new_id, user_id


@pytest.fixture
def dv() -> Dv:
    return Dv()


def test_email_with_activity_parties(dv: Dv) -> None:
    contact = dv.create("contacts", {"firstname": "Ann", "lastname": "Lee"})
    ada = user_id("ada@example.com")
    eid = dv.create(
        "emails",
        {
            "subject": "Re: pricing",
            "description": "<p>hi</p>",
            "directioncode": False,
            "regardingobjectid_contact_email@odata.bind": f"/contacts({contact})",
            "email_activity_parties": [
                {"partyid_contact@odata.bind": f"/contacts({contact})", "participationtypemask": 1},
                {"partyid_systemuser@odata.bind": f"/systemusers({ada})", "participationtypemask": 2},
                {"addressused": "someone@example.com", "participationtypemask": 3},
            ],
        },
    )
    row = dv.row("email", eid)
    assert row["regardingobjectid"] == ["contact", contact] and row["activitytypecode"] == "email"
    parties = dv.get(f"emails({eid})/email_activity_parties").json()["value"]
    assert sorted((p["participationtypemask"], p["_partyid_value"], p["addressused"]) for p in parties) == [
        (1, contact, None),
        (2, ada, None),
        (3, None, "someone@example.com"),
    ]
    expanded = dv.get(
        f"emails({eid})?$select=subject&$expand=email_activity_parties($select=participationtypemask)"
    ).json()
    assert sorted(p["participationtypemask"] for p in expanded["email_activity_parties"]) == [1, 2, 3]
    # PUT replaces the whole party list.
    assert (
        dv.put(
            f"emails({eid})/email_activity_parties",
            {"value": [{"addressused": "x@y.z", "participationtypemask": 2}]},
        ).status_code
        == 204
    )
    assert len(dv.get(f"emails({eid})/email_activity_parties").json()["value"]) == 1
    # Completing a received email afterwards (reference §7.8).
    assert dv.patch(f"emails({eid})", {"statecode": 1, "statuscode": 4}).status_code == 204
    assert (dv.row("email", eid)["statecode"], dv.row("email", eid)["statuscode"]) == (1, 4)
    # Deleting the activity deletes its parties.
    assert dv.delete(f"emails({eid})").status_code == 204
    assert not dv.env.store.parties_by_activity.get(eid)


def test_party_validation(dv: Dv) -> None:
    status, code, message = error_of(
        dv.post("phonecalls", {"subject": "c", "phonecall_activity_parties": [{"addressused": "a@b.c"}]})
    )
    assert (status, code) == (400, "0x80040200") and "participationtypemask" in message
    assert (
        error_of(
            dv.post(
                "phonecalls", {"subject": "c", "phonecall_activity_parties": [{"participationtypemask": 99}]}
            )
        )[1]
        == "0x8004431A"
    )
    assert (
        error_of(
            dv.post(
                "phonecalls",
                {
                    "subject": "c",
                    "phonecall_activity_parties": [
                        {"partyid@odata.bind": "/contacts(x)", "participationtypemask": 1}
                    ],
                },
            )
        )[1]
        == "0x80048d19"
    )
    missing = new_id()
    assert error_of(
        dv.post(
            "phonecalls",
            {
                "subject": "c",
                "phonecall_activity_parties": [
                    {"partyid_contact@odata.bind": f"/contacts({missing})", "participationtypemask": 1}
                ],
            },
        )
    )[:2] == (404, "0x80040217")
    # Nothing was written by the failed creates.
    assert dv.env.store.table("phonecall") == {} and dv.env.store.table("activityparty") == {}


def test_regarding_navigation_names(dv: Dv) -> None:
    lead = dv.create("leads", {"lastname": "L"})
    pid = dv.create(
        "phonecalls", {"subject": "call", "regardingobjectid_lead_phonecall@odata.bind": f"/leads({lead})"}
    )
    assert dv.row("phonecall", pid)["regardingobjectid"] == ["lead", lead]
    # The activity name is part of the navigation property: the task form is wrong on a phonecall.
    assert (
        error_of(
            dv.post(
                "phonecalls", {"subject": "c", "regardingobjectid_lead_task@odata.bind": f"/leads({lead})"}
            )
        )[1]
        == "0x80048d19"
    )
    tid = dv.create("tasks", {"subject": "t", "regardingobjectid_lead_task@odata.bind": f"/leads({lead})"})
    pointers = dv.get("activitypointers?$select=activitytypecode,subject&$orderby=subject").json()["value"]
    assert [(p["activitytypecode"], p["activityid"]) for p in pointers] == [("phonecall", pid), ("task", tid)]
    assert error_of(dv.post("activitypointers", {"subject": "x"}))[0] == 405


def test_state_transitions(dv: Dv) -> None:
    tid = dv.create("tasks", {"subject": "t"})
    assert dv.row("task", tid)["statuscode"] == 2  # default status of Open
    assert dv.patch(f"tasks({tid})", {"statecode": 1}).status_code == 204  # default status of Completed
    assert dv.row("task", tid)["statuscode"] == 5
    status, code, message = error_of(dv.patch(f"tasks({tid})", {"statecode": 2, "statuscode": 5}))
    assert (status, code) == (400, "0x80040203")
    assert message == f"5 is not a valid status code for state code TaskState.Canceled on task with Id {tid}."
    lead = dv.create("leads", {"lastname": "L", "statuscode": 2})
    assert dv.row("lead", lead)["statuscode"] == 2
    assert dv.patch(f"leads({lead})", {"statecode": 2, "statuscode": 6}).status_code == 204
    assert (
        error_of(dv.post("leads", {"lastname": "L", "statuscode": 6}))[1] == "0x80040203"
    )  # not a status of Open
    pid = dv.create("phonecalls", {"subject": "c"})
    assert dv.patch(f"phonecalls({pid})", {"statecode": 1, "statuscode": 4}).status_code == 204
    assert error_of(dv.patch(f"phonecalls({pid})", {"statecode": 9}))[1] == "0x8004431A"


def test_opportunity_won_lost_only_through_actions(dv: Dv) -> None:
    opp = dv.create("opportunities", {"name": "Deal", "estimatedvalue": 1000})
    status, code, message = error_of(dv.patch(f"opportunities({opp})", {"statecode": 2, "statuscode": 4}))
    assert (status, code) == (400, "0x80040203")
    assert "use the LoseOpportunityRequest message instead" in message
    assert "WinOpportunityRequest" in error_of(dv.patch(f"opportunities({opp})", {"statecode": 1}))[2]
    # On hold is an Open status and is fine.
    assert dv.patch(f"opportunities({opp})", {"statuscode": 2}).status_code == 204
    body = {
        "Status": 3,
        "OpportunityClose": {
            "subject": "Won Opportunity",
            "actualend": "2024-02-03T00:00:00Z",
            "opportunityid@odata.bind": f"https://dv.test/api/data/v9.2/opportunities({opp})",
        },
    }
    assert dv.post("WinOpportunity", body).status_code == 204
    row = dv.row("opportunity", opp)
    assert (row["statecode"], row["statuscode"], row["actualclosedate"], row["actualvalue"]) == (
        1,
        3,
        "2024-02-03",
        1000.0,
    )
    closes = list(dv.env.store.table("opportunityclose").values())
    assert (
        len(closes) == 1
        and closes[0]["opportunityid"] == ["opportunity", opp]
        and closes[0]["statecode"] == 1
    )
    assert error_of(dv.post("WinOpportunity", body))[1] == "0x80040203"  # already closed
    # Reopen, then lose as Out-Sold.
    assert dv.patch(f"opportunities({opp})", {"statecode": 0, "statuscode": 1}).status_code == 204
    lose = {
        "Status": 5,
        "OpportunityClose": {"subject": "Lost", "opportunityid@odata.bind": f"/opportunities({opp})"},
    }
    assert dv.post("LoseOpportunity", lose).status_code == 204
    assert (dv.row("opportunity", opp)["statecode"], dv.row("opportunity", opp)["statuscode"]) == (2, 5)
    other = dv.create("opportunities", {"name": "D2"})
    bad = {
        "Status": 3,
        "OpportunityClose": {"subject": "x", "opportunityid@odata.bind": f"/opportunities({other})"},
    }
    assert (
        error_of(dv.post("LoseOpportunity", bad))[2]
        == f"3 is not a valid status code for state code OpportunityState.Lost on opportunity with Id {other}."
    )
    assert error_of(dv.post("WinOpportunity", {"Status": 3}))[0] == 400
    missing = {
        "Status": 3,
        "OpportunityClose": {"subject": "x", "opportunityid@odata.bind": f"/opportunities({new_id()})"},
    }
    assert error_of(dv.post("WinOpportunity", missing))[:2] == (404, "0x80040217")


def test_appointment_parties_and_owner(dv: Dv) -> None:
    contact = dv.create("contacts", {"lastname": "C"})
    aid = dv.create(
        "appointments",
        {
            "subject": "Meet",
            "scheduledstart": "2024-01-01T10:00:00Z",
            "scheduledend": "2024-01-01T11:00:00Z",
            "appointment_activity_parties": [
                {
                    "partyid_systemuser@odata.bind": f"/systemusers({APP_USER.systemuserid})",
                    "participationtypemask": 7,
                },
                {"partyid_contact@odata.bind": f"/contacts({contact})", "participationtypemask": 5},
            ],
        },
    )
    assert dv.row("appointment", aid)["ownerid"] == ["systemuser", APP_USER.systemuserid]
    assert dv.patch(f"appointments({aid})", {"statecode": 3, "statuscode": 5}).status_code == 204
    assert len(dv.env.store.parties_by_activity[aid]) == 2
