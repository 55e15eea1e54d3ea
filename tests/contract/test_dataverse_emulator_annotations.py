"""Formatted values and the odata.include-annotations preference, as powerapps-docs describe them
(webapi/query/select-columns.md "Formatted values", compose-http-requests-handle-errors.md "Request
annotations", multi-select-picklist.md): the filter forms, Preference-Applied, and each formatted value."""

from __future__ import annotations

import pytest
from test_dataverse_emulator_support import Dv, core_config, label

from emulators.dataverse.annotations import AnnotationFilter
from emulators.dataverse.config import deterministic_id

FV = "@OData.Community.Display.V1.FormattedValue"
LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"
NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
ONLY_FV = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'


@pytest.fixture
def dv() -> Dv:
    dv = Dv(core_config(user_time_zone="America/Los_Angeles"))
    dv.use_solution()  # the c2d_ names below belong to that publisher
    return dv


def _account(dv: Dv) -> tuple[str, str]:
    contact = dv.create("contacts", {"firstname": "Susanna", "lastname": "Stubberod"})
    acct = dv.create(
        "accounts",
        {
            "name": "Litware",
            "revenue": 20000,
            "numberofemployees": 9500,
            "customertypecode": 1,
            "primarycontactid@odata.bind": f"/contacts({contact})",
            "overriddencreatedon": "2023-04-07T21:59:01Z",
        },
    )
    return acct, contact


def test_formatted_values_only_when_asked_and_preference_applied_echoes_the_filter(dv: Dv) -> None:
    acct, _ = _account(dv)
    select = "$select=name,revenue,numberofemployees,customertypecode,createdon,_primarycontactid_value"
    plain = dv.get(f"accounts({acct})?{select}")
    assert (
        not any("@OData.Community" in k for k in plain.json()) and "Preference-Applied" not in plain.headers
    )
    resp = dv.get(f"accounts?{select}&$filter=accountid eq {acct}", Prefer=ONLY_FV)
    assert resp.headers["Preference-Applied"] == ONLY_FV
    rec = resp.json()["value"][0]
    assert rec[f"revenue{FV}"] == "$20,000.00"
    assert rec[f"numberofemployees{FV}"] == "9,500"
    assert rec[f"customertypecode{FV}"] == "Competitor"
    assert rec[f"createdon{FV}"] == "4/7/2023 2:59 PM"  # UTC 21:59 in the user's zone (PDT)
    assert rec[f"_primarycontactid_value{FV}"] == "Susanna Stubberod"
    assert f"name{FV}" not in rec  # text has no formatted value
    # Only the annotation asked for: no lookup annotations.
    assert f"_primarycontactid_value{LOGICAL}" not in rec and f"_primarycontactid_value{NAV}" not in rec


def test_filter_forms_and_other_preferences_in_the_same_header(dv: Dv) -> None:
    acct, _ = _account(dv)
    url = f"accounts?$select=revenue,_primarycontactid_value&$filter=accountid eq {acct}"
    both = 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname,Microsoft.Dynamics.CRM.associatednavigationproperty"'
    resp = dv.get(url, Prefer=f"odata.maxpagesize=10,{both}")
    assert resp.headers["Preference-Applied"] == f"odata.maxpagesize=10,{both}"
    rec = resp.json()["value"][0]
    assert rec[f"_primarycontactid_value{LOGICAL}"] == "contact"
    assert rec[f"_primarycontactid_value{NAV}"] == "primarycontactid"
    assert f"revenue{FV}" not in rec and f"_primarycontactid_value{FV}" not in rec
    star = dv.get(url, Prefer='odata.include-annotations="*"')
    assert star.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    assert {f"revenue{FV}", f"_primarycontactid_value{LOGICAL}"} <= set(star.json()["value"][0])
    prefix = dv.get(url, Prefer='odata.include-annotations="OData.Community.Display.*"').json()["value"][0]
    assert f"revenue{FV}" in prefix and f"_primarycontactid_value{LOGICAL}" not in prefix


def test_filter_matching_rules() -> None:
    f = AnnotationFilter.parse('"*,-Microsoft.Dynamics.CRM.lookuplogicalname"')
    assert f.wants("OData.Community.Display.V1.FormattedValue")
    assert not f.wants("Microsoft.Dynamics.CRM.lookuplogicalname")
    assert not AnnotationFilter.parse('"-*"') and not AnnotationFilter.parse('"-*"').wants("x.y")
    assert AnnotationFilter.parse('"Microsoft.PowerApps.CDS.ErrorDetails*"').wants(
        "Microsoft.PowerApps.CDS.ErrorDetails.OperationStatus"
    )


def test_money_uses_the_record_currency_symbol_and_dates_their_behaviour(dv: Dv) -> None:
    eur = deterministic_id("transactioncurrency", "EUR")
    opp = dv.create(
        "opportunities",
        {
            "name": "Deal",
            "estimatedvalue": 1234.5,
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({eur})",
            "estimatedclosedate": "2024-03-02",
        },
    )
    rec = dv.get(
        f"opportunities({opp})?$select=estimatedvalue,estimatedclosedate,_transactioncurrencyid_value",
        Prefer=ONLY_FV,
    ).json()
    assert rec[f"estimatedvalue{FV}"] == "€1,234.50"
    assert rec[f"estimatedclosedate{FV}"] == "3/2/2024"  # DateOnly: no time zone shift
    assert rec[f"_transactioncurrencyid_value{FV}"] == "Euro"


def test_choice_labels_multi_select_joined_and_booleans(dv: Dv) -> None:
    options = {
        "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
        "IsGlobal": False,
        "OptionSetType": "Picklist",
        "Options": [
            {"Value": 727000000, "Label": label("Hiking")},
            {"Value": 727000001, "Label": label("Mountain Climbing")},
            {"Value": 727000002, "Label": label("Skiing")},
        ],
    }
    col = {
        "@odata.type": "Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata",
        "SchemaName": "c2d_Activities",
        "DisplayName": label("Activities"),
        "OptionSet": options,
    }
    assert dv.add_column("contact", col).status_code == 204
    cid = dv.create(
        "contacts",
        {"lastname": "Mundy", "c2d_activities": "727000000,727000001,727000002", "donotphone": True},
    )
    rec = dv.get(f"contacts({cid})?$select=c2d_activities,donotphone", Prefer=ONLY_FV).json()
    assert rec["c2d_activities"] == "727000000,727000001,727000002"
    assert rec[f"c2d_activities{FV}"] == "Hiking; Mountain Climbing; Skiing"
    assert rec[f"donotphone{FV}"] in ("Yes", "Do Not Allow")
