"""mappings/ loads; broken copies of it fail with the file, the line and the key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from migration_assets.mapping.config import DEFAULT_ROOT, ORG_FILES, load_mapping_config
from migration_assets.mapping.yaml_loc import MappingError


@pytest.fixture()
def mappings(tmp_path: Path) -> Path:
    """A copy of the reviewed mappings of the tiny demo org (tests/conftest.py `reviewed_mappings`)."""
    root = tmp_path / "mappings"
    shutil.copytree(os.environ["CLOSE2D365_MAPPINGS"], root)
    return root


def edit(path: Path, old: str, new: str) -> int:
    """Replace `old` once; return the 1-based line of the change."""
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def test_reviewed_mappings_load() -> None:
    cfg = load_mapping_config()
    assert cfg.settings.publisher_prefix == "c2d"
    assert [o.name for o in cfg.objects][:4] == ["account", "contact", "lead", "opportunity"]
    assert cfg.field_map("contact").table == "contact"
    assert cfg.lead_status.statuses["Not Interested"] == (2, 6)
    assert cfg.choice_sets["opportunity_statecode"].options["Sales / Won"] == 1
    assert "c2d_closeoriginalstatus" in cfg.custom_columns()["lead"]
    assert all(o.order == n for n, o in enumerate(cfg.objects))


def test_unknown_transform_names_file_line_key(mappings: Path) -> None:
    line = edit(mappings / "fields/contact.yaml", "transform: first_name", "transform: frist_name")
    with pytest.raises(MappingError) as err:
        load_mapping_config(mappings)
    msg = str(err.value)
    assert msg.startswith(f"mappings/fields/contact.yaml line {line}: key 'maps.contact.fields[1].transform'")
    assert "unknown transform 'frist_name' (known: " in msg and "first_name" in msg


def test_missing_required_key(mappings: Path) -> None:
    text = (mappings / "objects.yaml").read_text()
    start = text[: text.index("  - name: lead\n")].count("\n") + 1
    edit(mappings / "objects.yaml", "    entity_set: leads\n", "")
    with pytest.raises(
        MappingError, match=r"objects.yaml line \d+: key 'objects\[2\].entity_set': missing required key"
    ) as err:
        load_mapping_config(mappings)
    assert err.value.line == start  # the line where the object's mapping starts ("- name: lead")


def test_wrong_type(mappings: Path) -> None:
    line = edit(mappings / "settings.yaml", "option_value_prefix: 72700", "option_value_prefix: lots")
    with pytest.raises(MappingError) as err:
        load_mapping_config(mappings)
    assert (err.value.file, err.value.line, err.value.key) == (
        "mappings/settings.yaml",
        line,
        "option_value_prefix",
    )
    assert "expected integer, got text 'lots'" in str(err.value)


def test_yaml_syntax_error_names_the_line(mappings: Path) -> None:
    line = edit(
        mappings / "lead_status.yaml",
        "  Potential: {statecode: 0, statuscode: 1}",
        "  Potential: {statecode: 0, statuscode: 1",
    )
    with pytest.raises(MappingError, match="invalid YAML") as err:
        load_mapping_config(mappings)
    assert err.value.file == "mappings/lead_status.yaml" and err.value.line >= line


def test_invalid_lead_state_pair(mappings: Path) -> None:
    line = edit(
        mappings / "lead_status.yaml",
        "Customer: {statecode: 1, statuscode: 3}",
        "Customer: {statecode: 1, statuscode: 6}",
    )
    with pytest.raises(MappingError, match="6 is not valid with statecode 1") as err:
        load_mapping_config(mappings)
    assert err.value.line == line and err.value.key == "statuses.Customer.statuscode"


def test_duplicate_key_is_refused(mappings: Path) -> None:
    edit(
        mappings / "lead_status.yaml",
        "  Contacted:",
        "  Potential:      {statecode: 0, statuscode: 2}\n  Contacted:",
    )
    with pytest.raises(MappingError, match="duplicate key 'Potential'"):
        load_mapping_config(mappings)


def test_unknown_key_and_bad_argument(mappings: Path) -> None:
    edit(
        mappings / "fields/phonecall.yaml", "transform: seconds_to_minutes}", "tranform: seconds_to_minutes}"
    )
    with pytest.raises(MappingError, match=r"key 'maps.call.fields\[4\].tranform': unknown key"):
        load_mapping_config(mappings)


def test_unknown_argument_and_choice_set(mappings: Path) -> None:
    root = mappings
    edit(root / "fields/lead.yaml", "args: {set: lead_statecode}", "args: {set: lead_states}")
    with pytest.raises(MappingError, match="unknown choice set 'lead_states'"):
        load_mapping_config(root)


def test_template_placeholder_count(mappings: Path) -> None:
    edit(mappings / "fields/opportunity.yaml", 'args: {format: "{} – {}"}', 'args: {format: "{}"}')
    with pytest.raises(MappingError, match="1 '{}' placeholders for 2 sources"):
        load_mapping_config(mappings)


def test_custom_column_needs_prefix(mappings: Path) -> None:
    edit(
        mappings / "fields/lead.yaml", 'target: "{prefix}_closeoriginalstatus"', "target: closeoriginalstatus"
    )
    with pytest.raises(MappingError, match="must start with the publisher prefix 'c2d_'"):
        load_mapping_config(mappings)


def test_missing_field_file(mappings: Path) -> None:
    (mappings / "fields/email.yaml").unlink()
    with pytest.raises(MappingError, match="fields/email.yaml: file is missing"):
        load_mapping_config(mappings)


def test_repository_mappings_hold_project_defaults_only() -> None:
    assert {p.name for p in DEFAULT_ROOT.glob("*.yaml")} & set(ORG_FILES) <= {"owners.yaml"}
    owners = yaml.safe_load((DEFAULT_ROOT / "owners.yaml").read_text(encoding="utf-8"))
    assert owners == {"overrides": {}, "fallback_owner": None, "disabled_users": "queue"}


@pytest.mark.parametrize("name", ["lead_status.yaml", "pipelines.yaml", "owners.yaml"])
def test_a_missing_org_file_says_how_to_get_it(mappings: Path, name: str) -> None:
    (mappings / name).unlink()
    with pytest.raises(MappingError) as err:
        load_mapping_config(mappings)
    assert str(err.value) == (
        f"mappings/{name} is missing: run `close2d365 propose-mapping` (after `close2d365 extract`) and review it"
    )


def test_a_pending_review_still_loads(mappings: Path) -> None:
    edit(
        mappings / "lead_status.yaml",
        "Customer: {statecode: 1, statuscode: 3}",
        "Customer: {statecode: 1, statuscode: 3, review: 'is it Qualified?'}",
    )
    assert load_mapping_config(mappings).lead_status.statuses["Customer"] == (1, 3)


def test_activity_routing(mappings: Path) -> None:
    edit(mappings / "activities.yaml", "  parent: lead\n", "  parent: contact\n")
    edit(mappings / "activities.yaml", "table: task\n", "table: custom\n")
    cfg = load_mapping_config(mappings)
    note = {f.target: f for f in cfg.field_map("note").fields}
    assert "objectid_account" not in note and note["objectid_lead"].unless == "objectid_contact"
    assert cfg.object("sms").table == "c2d_sms" and cfg.object("sms").entity_set == "c2d_smss"
    assert any(f.target == "regardingobjectid_lead_c2d_sms" for f in cfg.field_map("sms").fields)


def test_thresholds_and_truncation_policy() -> None:
    cfg = load_mapping_config()
    assert cfg.settings.truncation_policy("task", "subject") == "truncate"
    assert cfg.settings.truncation_policy("lead", "companyname") == "reject"
    assert not cfg.settings.threshold("contact").allows(1, 100)
    assert cfg.settings.threshold("contact").allows(0, 100)
    assert cfg.settings.deleted_records == "deactivate"


def test_on_error_null_trap_is_refused(mappings: Path) -> None:
    line = edit(mappings / "fields/lead.yaml", "        on_error: keep_row\n", "        on_error: null\n")
    cfg = load_mapping_config(mappings)  # YAML null = key absent = the safe default (reject)
    assert next(f for f in cfg.field_map("lead").fields if f.target == "firstname").on_error == "reject"
    edit(mappings / "fields/lead.yaml", "        on_error: null\n", "        on_error: drop\n")
    with pytest.raises(MappingError, match="must be 'reject'.*or 'keep_row'") as err:
        load_mapping_config(mappings)
    assert err.value.line == line


def test_threshold_semantics() -> None:
    from migration_assets.mapping.files import Threshold

    assert Threshold(None, 0.05).allows(5, 100) and not Threshold(None, 0.05).allows(6, 100)
    assert Threshold(2, None).allows(2, 3) and not Threshold(2, None).allows(3, 1000)
    assert Threshold(None, None).allows(10**6, 10**6)


def test_publisher_solution_and_edition_settings(mappings: Path) -> None:
    s = load_mapping_config(mappings).settings
    assert (s.publisher_unique_name, s.solution_unique_name, s.solution_version, s.edition) == (
        "close2d365",
        "close2d365",
        "1.0.0.0",
        "sales_professional",
    )
    line = edit(mappings / "settings.yaml", "edition: sales_professional", "edition: sales_basic")
    with pytest.raises(MappingError) as err:
        load_mapping_config(mappings)
    assert (err.value.line, err.value.key) == (line, "target.edition")
    assert "sales_professional, sales_enterprise, sales_premium" in str(err.value)
    edit(mappings / "settings.yaml", "edition: sales_basic", "edition: sales_enterprise")
    line = edit(mappings / "settings.yaml", "version: 1.0.0.0", "version: one")
    with pytest.raises(MappingError, match="solution version") as err:
        load_mapping_config(mappings)
    assert (err.value.line, err.value.key) == (line, "solution.version")
