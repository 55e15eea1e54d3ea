"""The Pandera schema built from target metadata: every check fails on a bad row and passes on a good one."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from migration_assets.clients.dataverse.metadata import (
    AttributeMeta,
    EntityMeta,
    OptionMeta,
    RelationshipMeta,
)
from migration_assets.target.checks import TargetSchemaError, build_schema, validate
from migration_assets.target.rules import (
    ColumnRule,
    TableRules,
    add_planned_column,
    planned_activity_table,
    rules_from_metadata,
)

GOOD_ID = "11111111-2222-3333-4444-555555555555"
OTHER_ID = "99999999-2222-3333-4444-555555555555"


def rules() -> TableRules:
    """A hand-made `contact`-like table, as the metadata cache stores it."""
    return TableRules.from_json(
        {
            "table": "contact",
            "entity_set": "contacts",
            "primary_id": "contactid",
            "columns": {
                "contactid": {"name": "contactid", "attribute_type": "Uniqueidentifier"},
                "lastname": {"name": "lastname", "attribute_type": "String", "max_length": 5},
                "emailaddress1": {
                    "name": "emailaddress1",
                    "attribute_type": "String",
                    "max_length": 100,
                    "format": "Email",
                },
                "websiteurl": {
                    "name": "websiteurl",
                    "attribute_type": "String",
                    "max_length": 200,
                    "format": "Url",
                },
                "telephone1": {
                    "name": "telephone1",
                    "attribute_type": "String",
                    "max_length": 50,
                    "format": "Phone",
                },
                "gendercode": {"name": "gendercode", "attribute_type": "Picklist", "options": [1, 2]},
                "c2d_tags": {
                    "name": "c2d_tags",
                    "attribute_type": "Virtual",
                    "type_name": "MultiSelectPicklistType",
                    "options": [7, 8],
                },
                "numberofchildren": {
                    "name": "numberofchildren",
                    "attribute_type": "Integer",
                    "min_value": 0,
                    "max_value": 100,
                },
                "creditlimit": {
                    "name": "creditlimit",
                    "attribute_type": "Money",
                    "min_value": 0,
                    "max_value": 1000,
                },
                "birthdate": {"name": "birthdate", "attribute_type": "DateTime", "format": "DateOnly"},
                "overriddencreatedon": {"name": "overriddencreatedon", "attribute_type": "DateTime"},
                "donotemail": {"name": "donotemail", "attribute_type": "Boolean"},
                "c2d_closeid": {
                    "name": "c2d_closeid",
                    "attribute_type": "String",
                    "max_length": 100,
                    "required": True,
                },
            },
            "navigation": {"parentcustomerid_account": ["account"], "ownerid": ["systemuser", "team"]},
        }
    )


GOOD: dict[str, Any] = {
    "_close_id": "cont_good",
    "contactid": GOOD_ID,
    "lastname": "Doe",
    "emailaddress1": "jane@example.com",
    "websiteurl": "https://example.com",
    "telephone1": "+1 650-555-0100",
    "gendercode": 1,
    "c2d_tags": "7,8",
    "numberofchildren": 2,
    "creditlimit": 10.5,
    "birthdate": "1980-01-31",
    "overriddencreatedon": "2024-01-01T10:00:00Z",
    "donotemail": False,
    "c2d_closeid": "cont_good",
    "parentcustomerid_account@odata.bind": f"/accounts({GOOD_ID})",
    "ownerid@odata.bind": f"/systemusers({GOOD_ID})",
}
KNOWN = {"account": {f"/accounts({GOOD_ID})"}, "systemuser": {f"/systemusers({GOOD_ID})"}, "team": set()}
SETS = {"account": "accounts", "systemuser": "systemusers", "team": "teams"}


def run(**bad: Any) -> pl.DataFrame:
    """Validate a good row and a row with `bad` values; return the rejections."""
    bad_row = {**GOOD, "_close_id": "cont_bad", **bad}
    frame = pl.DataFrame([GOOD, bad_row], infer_schema_length=None)
    built = build_schema(rules(), frame.columns, KNOWN, SETS)
    accepted, rejections = validate(frame, built, "contact")
    assert accepted["_close_id"].to_list() == ["cont_good"]  # the good row always passes
    assert set(rejections["_close_id"]) == {"cont_bad"}
    return rejections


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("lastname", "Doe-Smith", "max_length"),
        ("emailaddress1", "not-an-email", "email_shape"),
        ("websiteurl", "ftp:/nope", "url_shape"),
        ("telephone1", "call me maybe", "phone_shape"),
        ("gendercode", 3, "choice_value"),
        ("c2d_tags", "7,9", "choice_values"),
        ("numberofchildren", 101, "number_range"),
        ("creditlimit", -1.0, "number_range"),
        ("birthdate", "31/01/1980", "date_format"),
        ("overriddencreatedon", "2024-01-01 10:00", "date_format"),
        ("contactid", "not-a-guid", "uuid"),
        ("c2d_closeid", None, "required"),
        ("parentcustomerid_account@odata.bind", f"/accounts({OTHER_ID})", "lookup_resolves"),
        ("parentcustomerid_account@odata.bind", f"/contacts({GOOD_ID})", "lookup_shape"),
        ("ownerid@odata.bind", f"/systemusers({OTHER_ID})", "lookup_resolves"),
    ],
)
def test_each_check_rejects_a_bad_value_and_passes_the_good_row(column: str, value: Any, check: str) -> None:
    rejections = run(**{column: value})
    row = rejections.filter(pl.col("column") == column)
    assert check in row["check_name"].to_list(), rejections
    assert row["reason"].str.len_chars().min() > 5  # a readable reason, not a code


def test_nulls_pass_unless_required() -> None:
    frame = pl.DataFrame([{**GOOD, "lastname": None, "emailaddress1": None, "gendercode": None}])
    accepted, rejections = validate(frame, build_schema(rules(), frame.columns, KNOWN, SETS), "contact")
    assert accepted.height == 1 and rejections.height == 0


def test_unknown_column_rejects_rows_that_use_it() -> None:
    frame = pl.DataFrame(
        [{**GOOD, "c2d_nosuchcolumn": None}, {**GOOD, "_close_id": "x", "c2d_nosuchcolumn": "v"}]
    )
    built = build_schema(rules(), frame.columns, KNOWN, SETS)
    assert built.unknown_columns == ["c2d_nosuchcolumn"]
    accepted, rejections = validate(frame, built, "contact")
    assert accepted["_close_id"].to_list() == ["cont_good"]
    assert rejections.row(0, named=True)["check_name"] == "column_exists"


def test_required_column_missing_from_the_map_is_a_clear_error() -> None:
    r = rules()
    r.columns["lastname"].required = True
    with pytest.raises(TargetSchemaError, match="lastname is required"):
        build_schema(r, ["_close_id", "contactid"], KNOWN, SETS)


def test_rules_from_client_metadata_and_planned_columns() -> None:
    meta = EntityMeta("contact", "Contact", "contacts", "contactid", "fullname", 2, False)
    meta.attributes["lastname"] = AttributeMeta("lastname", "LastName", "String", "StringType", max_length=50)
    meta.attributes["ownerid"] = AttributeMeta("ownerid", "OwnerId", "Owner", "OwnerType", "SystemRequired")
    meta.attributes["statuscode"] = AttributeMeta(
        "statuscode",
        "StatusCode",
        "Status",
        "StatusType",
        options=[OptionMeta(1, "Active", 0), OptionMeta(2, "Inactive", 1)],
    )
    meta.many_to_one += [
        RelationshipMeta("a", "ownerid", "systemuser", "ownerid"),
        RelationshipMeta("b", "ownerid", "team", "ownerid"),
    ]
    r = TableRules.from_json(rules_from_metadata(meta).to_json())  # survives the DuckDB JSON cache
    assert r.columns["lastname"].max_length == 50
    assert r.columns["ownerid"].required is False  # the platform defaults the owner
    assert r.columns["statuscode"].options == [1, 2]
    assert r.lookup_targets("ownerid") == ["systemuser", "team"]
    add_planned_column(r, "c2d_rating", "Integer")
    add_planned_column(r, "c2d_when", "DateOnly")
    assert r.columns["c2d_rating"].planned and r.columns["c2d_rating"].max_value == 2_147_483_647
    assert r.columns["c2d_when"].format == "DateOnly"
    activity = planned_activity_table("c2d_visit", "c2d_visits")
    assert activity.lookup_targets("regardingobjectid_lead_c2d_visit") == ["lead"]


def test_good_row_column_rule_types() -> None:
    rule = ColumnRule("x", "String", max_length=3)
    assert rule.planned is False and rule.options is None
