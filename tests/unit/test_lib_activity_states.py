"""SMS (and any routed activity map) are completed with the state/status of the table they are routed to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from migration_assets.mapping.activity_states import ActivityStateError, completed_state, resolve_completed
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.fields import parse_field
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.target.rules import planned_activity_table


def state_of(root: Path | None = None) -> tuple[int, int]:
    fields = {f.target: f for f in load_mapping_config(root).field_map("sms").fields}
    return fields["statecode"].steps[0].args["value"], fields["statuscode"].steps[0].args["value"]


def test_sms_routed_to_task_are_completed_tasks() -> None:
    assert state_of() == (1, 5)


def test_sms_routed_to_a_custom_activity_table_get_its_completed_status(tmp_path: Path) -> None:
    root = tmp_path / "mappings"
    shutil.copytree(os.environ["CLOSE2D365_MAPPINGS"], root)  # the reviewed mappings (tests/conftest.py)
    path = root / "activities.yaml"
    path.write_text(path.read_text().replace("  table: task\n", "  table: custom\n", 1))
    assert load_mapping_config(root).object("sms").table == "c2d_sms"
    state, status = state_of(root)
    assert (state, status) == (1, 2)
    # ... which is a Completed pair of the custom activity table the schema step creates.
    rules = planned_activity_table("c2d_sms", "c2d_smss")
    assert state in (rules.columns["statecode"].options or []) and status in (
        rules.columns["statuscode"].options or []
    )


def test_placeholders_resolve_inside_maps_and_refuse_unknown_tables() -> None:
    assert completed_state("appointment", "c2d") == (1, 3) and completed_state("c2d_meeting", "c2d") == (1, 2)
    args = {"map": {"true": "{completed_statuscode}", "false": 2}}
    assert resolve_completed(args, "task", "c2d") == {"map": {"true": 5, "false": 2}}
    with pytest.raises(ActivityStateError, match="no Completed state known for table 'lead'"):
        completed_state("lead", "c2d")
    entry = {"target": "statuscode", "transform": "const", "args": {"value": "{completed_statuscode}"}}
    with pytest.raises(MappingError, match="no Completed state known for table 'lead'") as err:
        parse_field(entry, "fields/lead.yaml", "maps.lead.fields[0]", 12, "c2d", "lead", {})
    assert err.value.line == 12 and err.value.key.endswith("args")
