"""The spot check's comparison rules: independent of staging, they catch a value stored under the wrong
label, unit, date or parent."""

from __future__ import annotations

from typing import Any

import pytest

from migration_assets.audit import spot_compare as sc
from migration_assets.mapping.fields import parse_field
from migration_assets.mapping.ids import account_id, record_id
from migration_assets.mapping.transforms import ChoiceSet

F = sc.FORMATTED
CTX = sc.Context(
    owner_for=lambda uid: {"user_a": "11111111-1111-1111-1111-111111111111"}.get(uid or ""),
    lookup_key=lambda table, rid, col: {"cur-eur": "EUR"}.get(rid),
    exists=lambda table, rid: rid != record_id("contact", "cont_rejected"),
    choice_sets={"lead_statecode": ChoiceSet("lead status", {"Potential": 0, "Lost": 2})},
    placeholder_account_name="(no name)",
)


def spec(entry: dict[str, Any], sets: dict[str, ChoiceSet] | None = None) -> Any:
    return parse_field(entry, "t.yaml", "fields[0]", 1, "c2d", "opportunity", sets or CTX.choice_sets)


def check(
    entry: dict[str, Any],
    close: dict[str, Any],
    dv: dict[str, Any],
    column: str | None = None,
    joined: dict[str, Any] | None = None,
) -> sc.Outcome:
    rule = sc.rule_for(spec(entry), "opportunityid")
    return sc.evaluate(rule, close, joined or {}, dv, column or entry["target"], CTX)


def test_choice_compares_the_formatted_label_with_the_close_label() -> None:
    entry = {
        "target": "c2d_type",
        "source": "custom.cf_1",
        "transform": "choice",
        "args": {"map": {"Packaging": 727000000, "Shipping": 727000001}},
        "custom": {"type": "Picklist"},
    }
    good = {"c2d_type": 727000000, f"c2d_type{F}": "Packaging"}
    assert check(entry, {"custom.cf_1": "Packaging"}, good).status == sc.MATCH
    # The defect of issue 9: "Packaging" stored under the option Dataverse labels "Shipping".
    swapped = {"c2d_type": 727000001, f"c2d_type{F}": "Shipping"}
    out = check(entry, {"custom.cf_1": "Packaging"}, swapped)
    assert out.status == sc.MISMATCH and out.close == "Packaging" and "Shipping" in out.dataverse


def test_template_choice_and_mapped_choice_set() -> None:
    entry = {
        "target": "c2d_closestatus",
        "source": ["pipeline_name", "status_label"],
        "transform": [
            {"name": "template", "args": {"format": "{} / {}"}},
            {"name": "choice", "args": {"map": {"Sales / Won": 1}}},
        ],
        "custom": {"type": "Picklist"},
    }
    close = {"pipeline_name": "Sales", "status_label": "Won"}
    assert (
        check(entry, close, {"c2d_closestatus": 1, f"c2d_closestatus{F}": "Sales / Won"}).status == sc.MATCH
    )
    state = {
        "target": "statecode",
        "source": "status_label",
        "transform": "choice",
        "args": {"set": "lead_statecode"},
    }
    assert (
        check(state, {"status_label": "lost"}, {"statecode": 2, f"statecode{F}": "Disqualified"}).status
        == sc.MATCH
    )
    assert (
        check(state, {"status_label": "Lost"}, {"statecode": 0, f"statecode{F}": "Open"}).status
        == sc.MISMATCH
    )


def test_multi_choice_labels_are_joined_by_semicolons() -> None:
    entry = {
        "target": "c2d_tags",
        "source": "custom.cf_2",
        "transform": "multi_choice",
        "args": {"map": {"A, B": 1, "Ç": 2}},
        "custom": {"type": "MultiSelectPicklist"},
    }
    dv = {"c2d_tags": "1,2", f"c2d_tags{F}": "A, B; Ç"}
    assert check(entry, {"custom.cf_2": ["Ç", "A, B"]}, dv).status == sc.MATCH
    assert check(entry, {"custom.cf_2": ["A, B"]}, dv).status == sc.MISMATCH


def test_money_numbers_minutes_and_constants() -> None:
    money = {"target": "estimatedvalue", "source": ["value", "value_currency"], "transform": "cents_to_money"}
    assert (
        check(money, {"value": 123456, "value_currency": "USD"}, {"estimatedvalue": 1234.56}).status
        == sc.MATCH
    )
    assert check(money, {"value": 5000, "value_currency": "JPY"}, {"estimatedvalue": 5000}).status == sc.MATCH
    assert (
        check(money, {"value": 123456, "value_currency": "USD"}, {"estimatedvalue": 123456}).status
        == sc.MISMATCH
    )
    minutes = {"target": "actualdurationminutes", "source": "duration", "transform": "seconds_to_minutes"}
    assert check(minutes, {"duration": 61}, {"actualdurationminutes": 2}).status == sc.MATCH
    const = {"target": "isrevenuesystemcalculated", "transform": "const", "args": {"value": False}}
    assert check(const, {}, {"isrevenuesystemcalculated": True}).status == sc.MISMATCH


def test_dates_follow_the_column_behaviour() -> None:
    when = {"target": "overriddencreatedon", "source": "date_created", "transform": "datetime_utc"}
    close = {"date_created": "2024-03-01T23:30:00.123000+02:00"}
    assert check(when, close, {"overriddencreatedon": "2024-03-01T21:30:00Z"}).status == sc.MATCH
    assert check(when, close, {"overriddencreatedon": "2024-03-01T23:30:00Z"}).status == sc.MISMATCH
    day = {"target": "estimatedclosedate", "source": "date_won", "transform": "date_only"}
    assert check(day, {"date_won": "2024-03-02"}, {"estimatedclosedate": "2024-03-02"}).status == sc.MATCH
    assert check(day, {"date_won": "2024-03-02"}, {"estimatedclosedate": "2024-03-01"}).status == sc.MISMATCH


def test_lookups_resolve_to_the_close_parent_and_owner() -> None:
    parent = {
        "target": "parentcontactid",
        "source": "contact_id",
        "transform": "record_id",
        "args": {"kind": "contact", "required": False},
        "lookup": "contact",
    }
    dv = {"_parentcontactid_value": record_id("contact", "cont_1")}
    assert check(parent, {"contact_id": "cont_1"}, dv, "_parentcontactid_value").status == sc.MATCH
    assert check(parent, {"contact_id": "cont_2"}, dv, "_parentcontactid_value").status == sc.MISMATCH
    # An optional lookup to a rejected parent is left empty (and reported at staging): listed, not failed.
    empty = {"_parentcontactid_value": None}
    assert (
        check(parent, {"contact_id": "cont_rejected"}, empty, "_parentcontactid_value").status
        == sc.NOT_COMPARED
    )
    assert check(parent, {"contact_id": "cont_1"}, empty, "_parentcontactid_value").status == sc.MISMATCH
    account = {
        "target": "customerid_account",
        "source": "lead.name",
        "transform": "account_id",
        "lookup": "account",
    }
    dv = {"_customerid_value": account_id("Acme  Inc")}
    joined = {"lead.": {"name": "acme inc"}}
    assert check(account, {}, dv, "_customerid_value", joined).status == sc.MATCH
    owner = {"target": "ownerid", "source": "user_id", "transform": "owner", "lookup": "systemuser"}
    dv = {"_ownerid_value": "11111111-1111-1111-1111-111111111111"}
    assert check(owner, {"user_id": "user_a"}, dv, "_ownerid_value").status == sc.MATCH
    assert check(owner, {"user_id": "user_b"}, dv, "_ownerid_value").status == sc.NOT_COMPARED
    currency = {
        "target": "transactioncurrencyid",
        "source": "value_currency",
        "transform": "text",
        "lookup": "transactioncurrency",
        "lookup_by": "isocurrencycode",
    }
    out = check(
        currency,
        {"value_currency": "EUR"},
        {"_transactioncurrencyid_value": "cur-eur"},
        "_transactioncurrencyid_value",
    )
    assert out.status == sc.MATCH


def test_text_rules_truncation_picks_and_normalised_values() -> None:
    text = {"target": "description", "source": "note", "transform": "text", "max_length": 5}
    assert check(text, {"note": "abcdefgh"}, {"description": "abcde"}).status == sc.MATCH
    assert check(text, {"note": "abcdefgh"}, {"description": "abxde"}).status == sc.MISMATCH
    pick = {
        "target": "telephone1",
        "source": "phones",
        "transform": [{"name": "pick", "args": {"field": "phone", "exclude_types": ["mobile"]}}, "phone"],
    }
    phones = {
        "phones": [{"phone": "+1 555 0100", "type": "mobile"}, {"phone": "(555) 0199", "type": "office"}]
    }
    assert check(pick, phones, {"telephone1": "+15550199"}).status == sc.MATCH
    assert check(pick, phones, {"telephone1": "+15550100"}).status == sc.MISMATCH
    html = {"target": "notetext", "source": "note_html", "transform": "html_to_text"}
    assert (
        check(html, {"note_html": "<p>Hi &amp; <b>bye</b></p>"}, {"notetext": "Hi & bye"}).status == sc.MATCH
    )
    tmpl = {
        "target": "name",
        "source": ["lead.name", "status_label"],
        "transform": "template",
        "args": {"format": "{} – {}"},
    }
    assert (
        check(
            tmpl, {"status_label": "Won"}, {"name": "Acme – Won"}, joined={"lead.": {"name": "Acme"}}
        ).status
        == sc.MATCH
    )


def test_unknown_transforms_are_listed_not_passed() -> None:
    entry = {
        "target": "subject",
        "source": ["a", "b"],
        "transform": [{"name": "template", "args": {"format": "{}{}"}}, "email", "phone"],
    }
    out = check(entry, {"a": "x"}, {"subject": "whatever"})
    assert out.status == sc.NOT_COMPARED and "no independent rule" in out.why


@pytest.mark.parametrize(
    ("kind", "fmt", "close", "dv", "formatted", "status"),
    [
        ("Picklist", None, "Neutral", 727000001, "Neutral", sc.MATCH),
        ("Picklist", None, "Neutral", 727000002, "Negative", sc.MISMATCH),
        ("DateTime", "DateOnly", "2024-05-06", "2024-05-06", None, sc.MATCH),
        ("Decimal", None, 4.5, 4.5, None, sc.MATCH),
        ("Memo", None, "long text", "long text", None, sc.MATCH),
    ],
)
def test_planned_custom_activity_columns(
    kind: str, fmt: str | None, close: Any, dv: Any, formatted: Any, status: str
) -> None:
    rule = sc.rule_for_column("c2d_x", kind, "custom.cf_x", fmt)
    record = {"c2d_x": dv, **({f"c2d_x{F}": formatted} if formatted else {})}
    assert sc.evaluate(rule, {"custom.cf_x": close}, {}, record, "c2d_x", CTX).status == status


def test_source_paths() -> None:
    obj = {"custom.cf_1": "x", "contacts": [{"name": "A", "emails": [{"email": "a@x"}]}]}
    assert sc.source_value(obj, "custom.cf_1") == "x"
    assert sc.source_value(obj, "contacts[0].emails") == [{"email": "a@x"}]
    assert sc.source_value(obj, "lead.name", {"lead.": {"name": "L"}}) == "L"
    assert sc.source_value(obj, "missing.path") is None


def test_a_one_word_name_has_no_first_name() -> None:
    """The name split keeps a one-word Close name (e.g. "李娜") whole in lastname, which Dataverse requires."""
    first = {"target": "firstname", "source": "name", "transform": "first_name"}
    last = {"target": "lastname", "source": "name", "transform": "last_name"}
    assert check(first, {"name": "李娜"}, {"firstname": None}).status == sc.MATCH
    assert check(last, {"name": "李娜"}, {"lastname": "李娜"}).status == sc.MATCH
    assert check(first, {"name": "Ada Lovelace"}, {"firstname": None}).status == sc.MISMATCH
    assert check(first, {"name": "Ada Lovelace"}, {"firstname": "Ada"}).status == sc.MATCH


def test_a_close_custom_choice_field_is_compared_by_label_even_on_an_existing_column() -> None:
    """custom_fields.yaml maps each Close choice to an option value; whether that value is right is only seen
    in the label Dataverse shows for it (a swapped `column.values` must fail, not pass mapping-vs-mapping)."""
    entry = {
        "target": "c2d_industry",
        "source": "custom.cf_x",
        "transform": "choice",
        "args": {"map": {"Software": 1, "Retail": 2}},
    }
    close = {"custom.cf_x": "Software"}
    assert check(entry, close, {"c2d_industry": 1, f"c2d_industry{F}": "Software"}).status == sc.MATCH
    assert check(entry, close, {"c2d_industry": 1, f"c2d_industry{F}": "Retail"}).status == sc.MISMATCH
