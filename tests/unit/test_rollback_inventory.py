"""Workflow inventory (part of the rollback/report family of this helper): every sequence, Smart View and
custom activity type of a generated org is listed with a recommendation."""

from __future__ import annotations

from emulators.orgdata import generate
from migration_assets.audit.workflow_inventory import build_inventory, describe_query, render_markdown


def test_inventory_lists_every_item_of_the_tiny_org() -> None:
    org = generate("tiny")
    items = build_inventory(org.sequences, org.smart_views, org.custom_activity_types, {"x": "c2d_x"})
    kinds = [i.kind for i in items]
    assert kinds.count("workflow") == len(org.sequences)
    assert kinds.count("smart_view") == len(org.smart_views)
    assert kinds.count("custom_activity_type") == len(org.custom_activity_types)
    assert {i.close_id for i in items} == {
        x["id"] for x in [*org.sequences, *org.smart_views, *org.custom_activity_types]
    }
    assert all(i.recommendation for i in items)
    workflow = next(i for i in items if i.kind == "workflow")
    assert "Sales accelerator" in workflow.recommendation and "1." in workflow.steps
    md = render_markdown(items)
    assert md.count("\n| ") >= len(items) + 3
    for view in org.smart_views:
        assert view["name"].replace("|", "\\|") in md


def test_structured_queries_are_rendered_readably() -> None:
    q = {
        "type": "and",
        "negate": False,
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "field_condition",
                "negate": True,
                "field": {"field_name": "status_id", "object_type": "lead"},
                "condition": {"type": "reference", "object_ids": ["stat_1"]},
            },
            {
                "type": "field_condition",
                "field": {"field_name": "date_created", "object_type": "lead"},
                "condition": {
                    "type": "moment_range",
                    "on_or_after": {"type": "fixed_local_date", "value": "2024-01-01"},
                },
            },
        ],
    }
    assert (
        describe_query(q) == "(NOT lead.status_id in [stat_1] AND lead.date_created on_or_after 2024-01-01)"
    )
