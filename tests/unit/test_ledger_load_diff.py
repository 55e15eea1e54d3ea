"""Staged row vs the record in Dataverse (pure): what the loader sends and the before-image it ledgers."""

from __future__ import annotations

from migration_assets.load import diff as ld

LOOKUPS = {
    "parentcustomerid_account": ld.Lookup(
        "parentcustomerid_account", "parentcustomerid", "account", "accounts"
    )
}


def test_split_drops_nulls_and_keeps_meta_apart() -> None:
    s = ld.split_row(
        {"contactid": "c1", "firstname": None, "lastname": "Doe", "_statecode": 1, "_close_id": "cont_1"}
    )
    assert s.payload == {"contactid": "c1", "lastname": "Doe"}
    assert s.meta == {"_statecode": 1, "_close_id": "cont_1"}


def test_current_record_in_payload_form() -> None:
    rec = {
        "contactid": "c1",
        "lastname": "Doe",
        "_parentcustomerid_value": "AAA",
        "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
        "@odata.etag": "W/1",
    }
    cur = ld.current_payload(rec, LOOKUPS, {"account": "accounts"})
    assert cur == {
        "contactid": "c1",
        "lastname": "Doe",
        "parentcustomerid_account@odata.bind": "/accounts(aaa)",
    }
    other = dict(rec, **{"_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "contact"})
    assert (
        ld.current_payload(other, LOOKUPS, {"contact": "contacts"})["parentcustomerid_account@odata.bind"]
        == "/contacts(AAA)"
    )


def test_values_compare_in_wire_form() -> None:
    assert ld.same_value(5, 5.0) and ld.same_value(1.10, 1.1000000001)
    assert ld.same_value("2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00")
    assert ld.same_value("2024-05-01", "2024-05-01T00:00:00Z")
    assert ld.same_value("727000001,727000000", "727000000,727000001")
    assert ld.same_value("/accounts(ABC)", "/accounts(abc)")
    assert not ld.same_value(True, 1) and not ld.same_value("a", "b") and not ld.same_value(None, "")


def test_existing_record_plan_changes_only_what_differs() -> None:
    payload = {
        "contactid": "c1",
        "lastname": "Doe",
        "firstname": "Jo",
        "overriddencreatedon": "2020-01-01T00:00:00Z",
        "parentcustomerid_account@odata.bind": "/accounts(a1)",
    }
    current = {
        "contactid": "c1",
        "lastname": "Doe",
        "firstname": "Joe",
        "statecode": 0,
        "statuscode": 1,
        "parentcustomerid_account@odata.bind": None,
    }
    updatable = {"lastname", "firstname", "parentcustomerid_account@odata.bind"}
    plan = ld.plan_existing(payload, current, None, updatable)
    assert plan.changes == {"firstname": "Jo", "parentcustomerid_account@odata.bind": "/accounts(a1)"}
    assert plan.before == {"firstname": "Joe", "parentcustomerid_account@odata.bind": None}
    assert plan.state is None
    same = ld.plan_existing({"contactid": "c1", "lastname": "Doe"}, current, (0, 1), updatable)
    assert same.unchanged
    closing = ld.plan_existing({"contactid": "c1"}, current, (1, 2), updatable)
    assert closing.state == (1, 2) and closing.before == {"statecode": 0, "statuscode": 1}


def test_desired_state_for_opportunities_and_activities() -> None:
    assert ld.desired_state({"_close_action": "win", "_close_statuscode": 3}, "opportunity") == (1, 3)
    assert ld.desired_state({"_close_action": "lose", "_close_statuscode": None}, "opportunity") == (2, 4)
    assert ld.desired_state({"_statecode": 1, "_statuscode": 2}, "phonecall") == (1, 2)
    assert ld.desired_state({"_statecode": 1}, "task") == (1, -1)
    assert ld.desired_state({}, "task") is None


def test_parties_must_be_a_json_list() -> None:
    assert ld.parties({"_parties": '[{"participationtypemask": 1, "addressused": "a@b.c"}]'}) == [
        {"participationtypemask": 1, "addressused": "a@b.c"}
    ]
    assert ld.parties({"_parties": None}) is None
    try:
        ld.parties({"_parties": '{"x": 1}'})
    except ValueError as exc:
        assert "JSON list" in str(exc)
    else:
        raise AssertionError("a non-list _parties must be refused")


def test_a_value_emptied_in_close_is_cleared_with_its_before_image() -> None:
    staged = {
        "contactid": "c1",
        "firstname": None,
        "jobtitle": None,
        "lastname": "Doe",
        "parentcustomerid_account@odata.bind": None,
        "_close_id": None,
    }
    s = ld.split_row(staged)
    assert s.nulls == {"firstname", "jobtitle"}  # binds and meta columns are not "emptied values"
    current = {"contactid": "c1", "lastname": "Doe", "firstname": "Jo", "jobtitle": None}
    updatable = {"lastname", "firstname", "jobtitle"}
    plan = ld.plan_existing(s.payload, current, None, updatable, s.nulls)
    assert plan.changes == {"firstname": None} and plan.before == {"firstname": "Jo"}
    # Without the clearable set nothing is cleared (e.g. a choice with a form default), and an empty
    # value already empty is no change: a second run writes nothing.
    assert ld.plan_existing(s.payload, current, None, updatable).unchanged
    assert ld.plan_existing(s.payload, {**current, "firstname": None}, None, updatable, s.nulls).unchanged


def test_which_columns_are_cleared() -> None:
    assert ld.clearable("String", "StringType", False, "None")
    assert ld.clearable("Money", "MoneyType", False, "Recommended")
    assert ld.clearable("Picklist", "PicklistType", True, "None")  # our own choice columns
    assert ld.clearable("Virtual", "MultiSelectPicklistType", True, "None")
    assert not ld.clearable("Picklist", "PicklistType", False, "None")  # standard choice: form default
    assert not ld.clearable("Boolean", "BooleanType", True, "None")
    # Only SystemRequired is enforced by the API (reference: RequiredLevel): a create leaves a business-
    # required column empty when Close has no value, so a later run clears it the same way.
    assert ld.clearable("String", "StringType", False, "ApplicationRequired")
    assert not ld.clearable("String", "StringType", False, "SystemRequired")
    assert not ld.clearable("Lookup", "LookupType", False, "None")


def test_parties_compare_by_role_and_record_or_address() -> None:
    uid, cid = "AAAAAAAA-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"
    wanted = [
        {"participationtypemask": 1, "partyid_systemuser@odata.bind": f"/systemusers({uid})"},
        {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({cid})"},
        {"participationtypemask": 3, "addressused": "Cc@Example.com "},
    ]
    read_back = [  # as activityparties answer: the resolved party's address filled in by the server
        {"participationtypemask": 3, "addressused": "cc@example.com", "_partyid_value": None},
        {
            "participationtypemask": 2,
            "_partyid_value": cid,
            "_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "contact",
            "addressused": "jo@x.com",
        },
        {
            "participationtypemask": 1,
            "_partyid_value": uid.lower(),
            "_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
        },
    ]
    current = [ld.current_party(r, {"contact": "contacts", "systemuser": "systemusers"}) for r in read_back]
    assert ld.same_parties(wanted, current)
    moved = [{**wanted[1], "participationtypemask": 3}, wanted[0], wanted[2]]  # the contact went from to cc
    assert not ld.same_parties(moved, current)
    assert not ld.same_parties(wanted[:2], current)  # a cc removed in Close
    assert current[1] == {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({cid})"}
