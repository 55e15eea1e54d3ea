from __future__ import annotations

import pytest

from migration_assets.target.schema_types import (
    ColumnType,
    SchemaTypeError,
    column_type_for,
    logical_name,
    schema_name,
    string_max_length,
)


def test_string_max_length_rounds_up_with_bounds() -> None:
    assert string_max_length([]) == 100
    assert string_max_length(["x" * 101]) == 200
    assert string_max_length(["x" * 250, None, ["y" * 40]]) == 300
    assert string_max_length(["x" * 9000]) == 4000


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ({"type": "text"}, ["abc"], ColumnType("String", max_length=100)),
        ({"type": "hidden"}, ["x" * 120], ColumnType("String", max_length=200)),
        ({"type": "textarea"}, ["x"], ColumnType("Memo", max_length=4000)),
        ({"type": "number"}, [1, 2.0, "3"], ColumnType("Integer")),
        ({"type": "number"}, [1.25, 2], ColumnType("Decimal", precision=2)),
        ({"type": "number"}, [], ColumnType("Decimal", precision=2)),
        ({"type": "date"}, [], ColumnType("DateTime", format="DateOnly")),
        ({"type": "datetime"}, [], ColumnType("DateTime", format="DateAndTime")),
        ({"type": "choices", "choices": ["A", "B"]}, ["A"], ColumnType("Picklist", options=("A", "B"))),
        (
            {"type": "choices", "choices": ["A"], "accepts_multiple_values": True},
            [["A"]],
            ColumnType("MultiSelectPicklist", options=("A",)),
        ),
        ({"type": "user"}, [], ColumnType("Lookup", lookup_target="systemuser")),
        ({"type": "contact"}, [], ColumnType("Lookup", lookup_target="contact")),
    ],
)
def test_column_type_for(field: dict, values: list, expected: ColumnType) -> None:
    assert column_type_for(field, values) == expected


def test_special_cases_are_explained() -> None:
    long_text = column_type_for({"type": "text"}, ["x" * 5000])
    assert long_text.attribute_type == "Memo" and long_text.notes
    extra = column_type_for({"type": "choices", "choices": ["A"]}, ["A", "Z"])
    assert extra.options == ("A", "Z") and "Z" in extra.notes[0]
    multi_user = column_type_for({"type": "user", "accepts_multiple_values": True}, [["user_a", "user_b"]])
    assert multi_user.attribute_type == "String" and "lookup holds one systemuser" in multi_user.notes[0]
    assert column_type_for({"type": "number"}, [3_000_000_000]).attribute_type == "Decimal"
    with pytest.raises(SchemaTypeError, match="unsupported Close custom field type 'custom_object'"):
        column_type_for({"type": "custom_object"}, [])
    with pytest.raises(SchemaTypeError, match="non-numeric"):
        column_type_for({"type": "number"}, ["many"])


def test_logical_names() -> None:
    assert logical_name("Lead Score", "c2d") == "c2d_leadscore"
    assert logical_name("Größe (m²)", "c2d") == "c2d_grossem2" or logical_name(
        "Größe (m²)", "c2d"
    ).startswith("c2d_gr")
    assert logical_name("# of users", "c2d") == "c2d_ofusers"
    assert logical_name("2024 Budget", "c2d") == "c2d_f2024budget"
    assert logical_name("産業", "c2d") == "c2d_field"
    assert logical_name("Industry", "c2d", taken={"c2d_industry", "c2d_industry2"}) == "c2d_industry3"
    long = logical_name("x" * 80, "c2d", taken={"c2d_" + "x" * 46})
    assert len(long) == 50 and long.endswith("2")
    assert schema_name("c2d_leadscore", "Lead Score") == "c2d_LeadScore"
