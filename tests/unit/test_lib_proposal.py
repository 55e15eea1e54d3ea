from __future__ import annotations

from pathlib import Path

import pytest

from migration_assets.mapping.fields import parse_field
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.target.proposal import (
    confirm_all,
    field_entries,
    name_similarity,
    parse_proposal,
    propose,
    render_proposal,
    unconfirmed,
)

FIELDS = {
    "lead": [
        {
            "id": "cf_ind",
            "name": "Industry",
            "type": "choices",
            "choices": ["Software", "Retail"],
            "accepts_multiple_values": False,
        },
        {"id": "cf_emp", "name": "Employees", "type": "number", "accepts_multiple_values": False},
        {"id": "cf_ref", "name": "Referral Source", "type": "text", "accepts_multiple_values": False},
    ],
    "contact": [
        {"id": "cf_own", "name": "Relationship Owner", "type": "user", "accepts_multiple_values": False}
    ],
    "activity": [{"id": "cf_act", "name": "Rating", "type": "number"}],
}
TARGET = {
    "lead": [
        {
            "LogicalName": "industrycode",
            "DisplayName": "Industry",
            "AttributeType": "Picklist",
            "Options": [
                {"Value": 1, "Label": "Accounting"},
                {"Value": 7, "Label": " retail "},
                {"Value": 33, "Label": "Software"},
            ],
        },
        {"LogicalName": "numberofemployees", "DisplayName": "No. of Employees", "AttributeType": "Integer"},
        {"LogicalName": "leadsourcecode", "DisplayName": "Lead Source", "AttributeType": "Picklist"},
        {"LogicalName": "leadid", "DisplayName": "Lead", "AttributeType": "Uniqueidentifier"},
    ],
    "contact": [],
}


def test_propose_matches_existing_columns_or_creates_new_ones() -> None:
    props = {
        p.close_field_id: p
        for p in propose(FIELDS, {"cf_emp": [10, 250], "cf_ref": ["x" * 130]}, TARGET, "c2d")
    }
    assert set(props) == {
        "cf_ind",
        "cf_emp",
        "cf_ref",
        "cf_own",
    }  # activity fields go to custom activity tables
    assert props["cf_ind"].action == "existing" and props["cf_ind"].target == "industrycode"
    assert props["cf_ind"].confidence == 1.0
    assert props["cf_emp"].action == "existing" and props["cf_emp"].target == "numberofemployees"
    assert 0.8 <= props["cf_emp"].confidence < 1.0
    ref = props["cf_ref"]
    assert (ref.action, ref.target, ref.column.attribute_type, ref.column.max_length) == (
        "new",
        "c2d_referralsource",
        "String",
        200,
    )
    own = props["cf_own"]
    assert (
        own.table == "contact"
        and own.column.lookup_target == "systemuser"
        and own.target == "c2d_relationshipowner"
    )
    assert not any(p.confirmed for p in props.values())


def test_type_mismatch_is_never_proposed() -> None:
    attr = {"LogicalName": "industry", "DisplayName": "Industry", "AttributeType": "DateTime"}
    assert name_similarity("Industry", attr) == 1.0
    (p,) = propose({"lead": FIELDS["lead"][:1]}, {}, {"lead": [attr]}, "c2d")
    assert p.action == "new" and p.target == "c2d_industry"


def test_render_parse_round_trip_and_confirmation(tmp_path: Path) -> None:
    props = propose(FIELDS, {}, TARGET, "c2d")
    path = tmp_path / "custom_fields.yaml"
    path.write_text(render_proposal(props))
    text = path.read_text()
    assert text.startswith("# Proposed mapping") and "confirmed: false" in text
    parsed = parse_proposal(path, "mappings/custom_fields.yaml", prefix="c2d")
    assert parsed == props
    assert len(unconfirmed(parsed)) == 4
    path.write_text(text.replace("confirmed: false", "confirmed: true"))
    assert unconfirmed(parse_proposal(path)) == []


def test_parse_errors_name_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "custom_fields.yaml"
    text = render_proposal(propose(FIELDS, {}, TARGET, "c2d"))
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if line.strip() == "type: String")
    lines[n] = lines[n].replace("String", "Strang")
    path.write_text("\n".join(lines))
    with pytest.raises(MappingError) as err:
        parse_proposal(path, "mappings/custom_fields.yaml")
    assert (
        err.value.line == n + 1
        and err.value.key.endswith("column.type")
        and "unknown column type 'Strang'" in str(err.value)
    )
    path.write_text(text.replace("confirmed: false\n", "confirmed: maybe\n", 1))
    with pytest.raises(MappingError, match="expected true/false"):
        parse_proposal(path)


def test_field_entries_validate_as_field_map_entries() -> None:
    props = confirm_all(propose(FIELDS, {}, TARGET, "c2d"))
    entries = field_entries(props, 72700)
    lead = {e["target"]: e for e in entries["lead"]}
    assert lead["industrycode"]["transform"] == "choice"
    # The existing column's own option values, never the prefix numbers of columns this project creates.
    assert lead["industrycode"]["args"]["map"] == {"Software": 33, "Retail": 7}
    assert entries["contact"][0]["transform"] == "owner" and entries["contact"][0]["lookup"] == "systemuser"
    for table, items in entries.items():
        for item in items:
            spec = parse_field(item, "custom_fields.yaml", "x", 1, "c2d", table, {})
            assert spec.sources == (
                f"custom.{next(p.close_field_id for p in props if p.target == spec.target)}",
            )
    with pytest.raises(MappingError, match="not confirmed"):
        field_entries(propose(FIELDS, {}, TARGET, "c2d"), 72700)
