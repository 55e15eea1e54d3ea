"""Schema plan and its diff against target metadata (pure): only what is missing is created, conflicts stop."""

from __future__ import annotations

from emulators.orgdata import generate
from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta, KeyMeta, OptionMeta
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.custom_activities import activity_types
from migration_assets.target.schema_build import build_plan
from migration_assets.target.schema_plan import ColumnSpec, KeySpec, SchemaPlan, TableSpec, diff


def entity(name: str, attrs: list[AttributeMeta], keys: list[KeyMeta] | None = None) -> EntityMeta:
    meta = EntityMeta(name, name, name + "s", name + "id", "name", 1, False)
    meta.attributes = {a.logical_name: a for a in attrs}
    meta.keys = keys or []
    return meta


def test_diff_creates_only_what_is_missing_and_is_empty_once_applied() -> None:
    closeid = ColumnSpec("account", "c2d_closeid", "c2d_CloseId", "String", "Close id", max_length=100)
    choice = ColumnSpec(
        "opportunity",
        "c2d_stage",
        "c2d_Stage",
        "Picklist",
        "Stage",
        options=((727000000, "A"), (727000001, "B")),
    )
    plan = SchemaPlan(
        tables=[TableSpec("c2d_visit", "c2d_Visit", "Visit")],
        columns=[
            closeid,
            choice,
            ColumnSpec("c2d_visit", "c2d_notes", "c2d_Notes", "Memo", "Notes", max_length=4000),
        ],
        keys=[KeySpec("account", "c2d_account_closeid_key", ("c2d_closeid",), "Close id key")],
    )
    empty = {"account": entity("account", []), "opportunity": entity("opportunity", []), "c2d_visit": None}
    d = diff(plan, empty)
    assert [t.logical_name for t in d.create_tables] == ["c2d_visit"]
    assert {(c.table, c.logical_name) for c in d.create_columns} == {
        ("account", "c2d_closeid"),
        ("opportunity", "c2d_stage"),
        ("c2d_visit", "c2d_notes"),
    }
    assert [k.schema_name for k in d.create_keys] == ["c2d_account_closeid_key"]
    assert not d.conflicts and "create column" in d.markdown()

    done = {
        "account": entity(
            "account",
            [AttributeMeta("c2d_closeid", "c2d_CloseId", "String", "StringType", max_length=100)],
            [KeyMeta("c2d_account_closeid_key", ("c2d_closeid",), "Active")],
        ),
        "opportunity": entity(
            "opportunity",
            [
                AttributeMeta(
                    "c2d_stage", "c2d_Stage", "Picklist", "PicklistType", options=[OptionMeta(727000000, "A")]
                )
            ],
        ),
        "c2d_visit": entity(
            "c2d_visit", [AttributeMeta("c2d_notes", "c2d_Notes", "Memo", "MemoType", max_length=4000)]
        ),
    }
    d2 = diff(plan, done)
    assert d2.create_tables == [] and d2.create_columns == [] and d2.create_keys == []
    assert [(c.logical_name, v, t) for c, v, t in d2.add_options] == [("c2d_stage", 727000001, "B")]


def test_incompatible_existing_columns_are_conflicts_not_changes() -> None:
    plan = SchemaPlan(
        columns=[
            ColumnSpec("lead", "c2d_score", "c2d_Score", "Integer", "Score"),
            ColumnSpec("lead", "c2d_code", "c2d_Code", "String", "Code", max_length=300),
            ColumnSpec("c2d_missing", "c2d_x", "c2d_X", "String", "X"),
        ]
    )
    meta = {
        "lead": entity(
            "lead",
            [
                AttributeMeta("c2d_score", "c2d_Score", "String", "StringType", max_length=10),
                AttributeMeta("c2d_code", "c2d_Code", "String", "StringType", max_length=100),
            ],
        ),
        "c2d_missing": None,
    }
    d = diff(plan, meta)
    assert d.create_columns == []
    assert len(d.conflicts) == 3
    assert any("exists as StringType, the plan needs Integer" in c for c in d.conflicts)
    assert any("MaxLength 100" in c for c in d.conflicts)
    assert any("does not exist in the target" in c for c in d.conflicts)


def test_bodies_follow_the_metadata_api_shapes() -> None:
    lookup = ColumnSpec(
        "c2d_visit", "c2d_presenter", "c2d_Presenter", "Lookup", "Presenter", lookup_target="systemuser"
    )
    rel = lookup.relationship_body()
    assert rel["ReferencingEntityNavigationPropertyName"] == "c2d_presenter"
    assert rel["ReferencedEntity"] == "systemuser" and rel["Lookup"]["SchemaName"] == "c2d_Presenter"
    multi = ColumnSpec("t", "c2d_tags", "c2d_Tags", "MultiSelectPicklist", "Tags", options=((1, "x"),)).body()
    assert multi["AttributeTypeName"] == {"Value": "MultiSelectPicklistType"}
    table = TableSpec("c2d_visit", "c2d_Visit", "Visit").body()
    assert table["IsActivity"] and table["Attributes"][0]["SchemaName"] == "Subject"
    date_only = ColumnSpec("t", "c2d_d", "c2d_D", "DateTime", "D", format="DateOnly").body()
    assert date_only["Format"] == "DateOnly" and date_only["DateTimeBehavior"] == {"Value": "DateOnly"}


def test_plan_from_the_repository_mappings_and_a_generated_org() -> None:
    org = generate("tiny")
    config = load_mapping_config()
    types = activity_types(org.custom_activity_types, "c2d")
    plan = build_plan(
        config,
        (),
        types,
        {f["id"]: f for f in org.custom_fields["activity"]},
        [a for a in org.activities if a["_type"] == "CustomActivity"],
    )
    assert {t.logical_name for t in plan.tables} == {t.table for t in types}
    assert ("opportunity", "c2d_closepipeline") in {(c.table, c.logical_name) for c in plan.columns}
    pipeline = next(c for c in plan.columns if c.logical_name == "c2d_closepipeline")
    assert [label for _, label in pipeline.options] == [p.name for p in config.pipelines.pipelines]
    keyed = {k.table for k in plan.keys}
    assert "annotation" not in keyed and {"account", "contact"} <= keyed and {t.table for t in types} <= keyed
    assert SchemaPlan.from_json(plan.to_json()) == plan


def test_deploy_into_our_managed_solution_stops_before_any_write_and_names_the_components() -> None:
    import pytest

    from migration_assets.target.deploy import SchemaDeployError, deploy

    class Target:  # the metadata and the solutions rows a deploy reads; any write would fail the test
        def __init__(self, managed: bool) -> None:
            self.managed, self.writes = managed, 0

        def metadata(self, table: str, refresh: bool = False) -> EntityMeta:
            return entity(table, [])

        def rows(self, entity_set: str, select: list[str], filter: str | None = None) -> list[dict]:
            assert entity_set == "solutions" and "close2d365" in str(filter)
            return [{"solutionid": "s1", "ismanaged": self.managed}]

        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"unexpected call {name}")

    plan = SchemaPlan([], [ColumnSpec("contact", "c2d_x", "c2d_X", "String", "X", max_length=10)], [])
    with pytest.raises(SchemaDeployError, match="installed managed.*column contact.c2d_x"):
        deploy(Target(True), plan, "close2d365", lambda _m: None)  # type: ignore[arg-type]
    done = SchemaPlan([], [], [])  # nothing to create: a managed solution is fine, not even read
    assert deploy(Target(True), done, "close2d365", lambda _m: None)[1] == []  # type: ignore[arg-type]
