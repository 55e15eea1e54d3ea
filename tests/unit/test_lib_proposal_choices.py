"""Close choices -> an EXISTING Dataverse choice column: the column's own option values, or a new column."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta, OptionMeta
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.target.close_fields import target_attributes
from migration_assets.target.proposal import (
    confirm_all,
    field_entries,
    parse_proposal,
    propose,
    render_proposal,
)
from migration_assets.target.proposal_choices import match_choices
from migration_assets.target.rules import TableRules, rules_from_metadata
from migration_assets.target.schema_build import build_plan

INDUSTRY = {"id": "cf_ind", "name": "Industry", "type": "choices", "choices": ["Software", "Retail"]}
INTEREST = {
    "id": "cf_int",
    "name": "Product Interest",
    "type": "choices",
    "choices": ["API", "Dashboards"],
    "accepts_multiple_values": True,
}
OPTIONS = [
    {"Value": 1, "Label": "Accounting"},
    {"Value": 7, "Label": "  RETAIL "},
    {"Value": 33, "Label": "Software"},
]


def industrycode(options: list[dict[str, object]]) -> dict[str, object]:
    return {
        "LogicalName": "industrycode",
        "DisplayName": "Industry",
        "AttributeType": "Picklist",
        "Options": options,
    }


def test_existing_picklist_gets_its_own_option_values() -> None:
    (p,) = propose({"lead": [INDUSTRY]}, {}, {"lead": [industrycode(OPTIONS)]}, "c2d")
    assert (p.action, p.target, p.values) == ("existing", "industrycode", (("Software", 33), ("Retail", 7)))
    (entry,) = field_entries(confirm_all([p]), 72700)["lead"]
    assert entry["transform"] == "choice" and entry["args"]["map"] == {"Software": 33, "Retail": 7}


def test_unmatched_choices_propose_a_new_column_and_say_why(tmp_path: Path) -> None:
    # "Widgets" has no option on industrycode: writing it there would need a number the column lacks.
    field = {**INDUSTRY, "choices": ["Software", "Widgets"]}
    (p,) = propose({"lead": [field]}, {"cf_ind": ["Retail"]}, {"lead": [industrycode(OPTIONS)]}, "c2d")
    assert (p.action, p.target, p.values) == ("new", "c2d_industry", ())
    assert "industrycode has no single option labelled 'Widgets'" in p.reason and "Retail" not in p.reason
    (entry,) = field_entries(confirm_all([p]), 72700)["lead"]
    # A new column: the numbers the schema step creates its options with (same function, same values).
    plan = build_plan(load_mapping_config(), confirm_all([p]))
    created = next(c for c in plan.columns if c.logical_name == "c2d_industry")
    assert entry["args"]["map"] == {label: value for value, label in created.options}
    text = render_proposal([p])
    assert "a new column is proposed" in text and "column.values" in text  # the rule is in the file header


def test_no_option_labels_known_means_no_existing_choice_column() -> None:
    (p,) = propose({"lead": [INDUSTRY]}, {}, {"lead": [industrycode([])]}, "c2d")
    assert p.action == "new" and "industrycode has no single option labelled 'Software', 'Retail'" in p.reason


def test_ambiguous_labels_are_not_guessed() -> None:
    match = match_choices(
        ["Software"], industrycode([{"Value": 3, "Label": "Software"}, {"Value": 4, "Label": "software"}])
    )
    assert match.unmatched == ("Software",) and not match.complete


def test_multi_valued_choices_never_go_to_a_single_picklist() -> None:
    single = {
        **industrycode([{"Value": 1, "Label": "API"}, {"Value": 2, "Label": "Dashboards"}]),
        "LogicalName": "productinterest",
        "DisplayName": "Product Interest",
    }
    (p,) = propose({"lead": [INTEREST]}, {}, {"lead": [single]}, "c2d")
    assert p.action == "new"
    multi = {**single, "AttributeType": "Virtual", "AttributeTypeName": "MultiSelectPicklistType"}
    (p,) = propose({"lead": [INTEREST]}, {}, {"lead": [multi]}, "c2d")
    assert p.action == "existing" and p.values == (("API", 1), ("Dashboards", 2))
    (entry,) = field_entries(confirm_all([p]), 72700)["lead"]
    assert entry["transform"] == "multi_choice" and entry["args"]["map"] == {"API": 1, "Dashboards": 2}


def test_values_round_trip_and_hand_edits_are_validated(tmp_path: Path) -> None:
    props = propose({"lead": [INDUSTRY]}, {}, {"lead": [industrycode(OPTIONS)]}, "c2d")
    path = tmp_path / "custom_fields.yaml"
    text = render_proposal(props)
    assert "values:\n      Software: 33\n      Retail: 7\n" in text
    path.write_text(text)
    assert parse_proposal(path, "custom_fields.yaml", "c2d") == props
    path.write_text(text.replace("      Retail: 7\n", ""))
    with pytest.raises(
        MappingError, match=r"no option value of industrycode for the choices \['Retail'\]"
    ) as err:
        parse_proposal(path, "custom_fields.yaml", "c2d")
    assert err.value.key.endswith("column.values")
    path.write_text(text.replace("Retail: 7", "Retail: seven"))
    with pytest.raises(MappingError, match="must be whole numbers"):
        parse_proposal(path, "custom_fields.yaml", "c2d")
    path.write_text(
        text.replace("action: existing", "action: new").replace(
            "target: industrycode", "target: c2d_industry"
        )
    )
    with pytest.raises(MappingError, match="only for action: existing"):
        parse_proposal(path, "custom_fields.yaml", "c2d")
    # Switched to existing by hand without values: refused, never numbered with the prefix values.
    new_text = render_proposal(propose({"lead": [INDUSTRY]}, {}, {}, "c2d"))
    path.write_text(
        new_text.replace("action: new", "action: existing").replace(
            "target: c2d_industry", "target: industrycode"
        )
    )
    with pytest.raises(MappingError, match="no option value of industrycode"):
        parse_proposal(path, "custom_fields.yaml", "c2d")


def test_cached_target_metadata_keeps_option_labels() -> None:
    attr = AttributeMeta(
        "industrycode",
        "IndustryCode",
        "Picklist",
        "PicklistType",
        options=[OptionMeta(1, "Accounting"), OptionMeta(33, "Software"), OptionMeta(7, "Retail")],
    )
    meta = EntityMeta("lead", "Lead", "leads", "leadid", "fullname", 4, False, {"industrycode": attr})
    rules = json.dumps(rules_from_metadata(meta).to_json())
    assert TableRules.from_json(json.loads(rules)).columns["industrycode"].options == [1, 7, 33]
    con = duckdb.connect()
    con.execute("CREATE SCHEMA staged")
    con.execute("CREATE TABLE staged.target_metadata (table_name VARCHAR, rules VARCHAR)")
    con.execute("INSERT INTO staged.target_metadata VALUES ('lead', ?)", [rules])
    attrs = target_attributes(con, None)
    (p,) = propose({"lead": [INDUSTRY]}, {}, attrs, "c2d")
    assert (p.action, p.target, dict(p.values)) == ("existing", "industrycode", {"Software": 33, "Retail": 7})
