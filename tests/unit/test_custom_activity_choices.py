"""Custom activity staging takes its columns and option values from the schema plan (one source of truth),
and the per-type decision about values of fields deleted in Close (orphaned_values: halt | drop | column)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import polars as pl
import pytest

from migration_assets.defs.staged.custom_activity import stage_type
from migration_assets.mapping.custom_activities import activity_types, orphan_columns
from migration_assets.mapping.custom_activity_frames import dropped_values, undefined_field_rejections
from migration_assets.mapping.custom_activity_staging import field_map_for
from migration_assets.mapping.engine import apply_field_map
from migration_assets.mapping.expr_base import TransformContext
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.custom_activity_plan import (
    MappingError,
    PlanMismatchError,
    RoutedActivityType,
    load_types,
    plan_columns,
)
from migration_assets.target.deploy import save_plan
from migration_assets.target.schema_build import build_plan, planned_choices
from migration_assets.target.schema_plan import SchemaPlan

CHOICES = ["Packaging", "Shipping", "Billing, general", "Île-de-France"]  # Close's order
# The type listing embeds its fields WITHOUT choices; the full definitions (close.custom_fields) have them.
TYPE = {
    "id": "actitype_1",
    "name": "Return Request",
    "fields": [
        {"id": "cf_reason", "name": "Reason", "type": "choices", "accepts_multiple_values": False},
        {"id": "cf_tags", "name": "Tags", "type": "choices", "accepts_multiple_values": True},
        {"id": "cf_note", "name": "Note", "type": "text"},
    ],
}
DEFS = {
    "cf_reason": {**TYPE["fields"][0], "choices": CHOICES},
    "cf_tags": {**TYPE["fields"][1], "choices": CHOICES},
}
# Values appear in the data in another order than Close's list (the defect: options numbered by that order).
INSTANCES = [
    {
        "id": "acti_1",
        "custom_activity_type_id": "actitype_1",
        "custom.cf_reason": "Île-de-France",
        "custom.cf_tags": ["Billing, general"],
        "custom.cf_note": "n1",
    },
    {
        "id": "acti_2",
        "custom_activity_type_id": "actitype_1",
        "custom.cf_reason": "Billing, general",
        "custom.cf_tags": ["Shipping", "Packaging"],
        "custom.cf_gone": "left over",
    },
    {
        "id": "acti_3",
        "custom_activity_type_id": "actitype_1",
        "custom.cf_reason": "Packaging",
        "custom.cf_gone": ["x", "y"],
    },
]


def fake_config() -> Any:
    """The parts of MappingConfig the plan and the field map read (no org mapping files needed)."""
    settings = SimpleNamespace(publisher_prefix="c2d", option_value_prefix=72700)
    accounts = SimpleNamespace(flag_column="c2d_isplaceholder", merged_ids_column="c2d_closeleadids")
    return SimpleNamespace(settings=settings, accounts=accounts, choice_sets={}, custom_columns=lambda: {})


def plan_for(orphan_tables: tuple[str, ...] = ()) -> tuple[Any, SchemaPlan]:
    (t,) = activity_types([TYPE], "c2d")
    return t, build_plan(fake_config(), (), [t], DEFS, INSTANCES, orphan_tables)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The shape `instance_frame` reads: each custom key as text plus its list-typed twin `<key>[]`."""
    keys = sorted({k for r in rows for k in r if k.startswith("custom.")})
    data: dict[str, Any] = {
        c: [r.get(c) for r in rows] for c in ("id", "user_id", "activity_at", "date_created", "status")
    }
    data["lead_id"] = ["lead_1"] * len(rows)
    schema: dict[str, Any] = {c: pl.String for c in data}
    for k in keys:
        data[k] = [None if isinstance(r.get(k), list) else r.get(k) for r in rows]
        data[f"{k}[]"] = [r.get(k) if isinstance(r.get(k), list) else None for r in rows]
        schema[k], schema[f"{k}[]"] = pl.String, pl.List(pl.String)
    return pl.DataFrame(data, schema=schema)


def mapped(rows: list[dict[str, Any]], plan: SchemaPlan, t: Any) -> Any:
    routed = RoutedActivityType("Return Request", t.table)
    fmap, src = field_map_for(fake_config(), routed, plan_columns(t, plan), frame(rows))
    return apply_field_map(src, fmap, TransformContext(), missing_columns="null")


def test_each_value_is_staged_as_the_option_whose_label_it_is() -> None:
    t, plan = plan_for()
    reason = planned_choices(plan, t.table, "c2d_reason")
    assert reason is not None and list(reason) == CHOICES  # Close's order, not the data's
    tags = planned_choices(plan, t.table, "c2d_tags")
    result = mapped(INSTANCES, plan, t)
    labels = {v: k for k, v in reason.items()}
    tag_labels = {v: k for k, v in (tags or {}).items()}
    for row, inst in zip(result.frame.iter_rows(named=True), INSTANCES, strict=True):
        assert labels[row["c2d_reason"]] == inst["custom.cf_reason"]
        wanted = inst.get("custom.cf_tags")
        got = [tag_labels[int(v)] for v in row["c2d_tags"].split(",")] if row["c2d_tags"] else None
        assert got == wanted
    assert result.problems.height == 0


def test_an_unknown_label_is_rejected_naming_label_column_and_fix() -> None:
    t, plan = plan_for()
    result = mapped([{"id": "acti_9", "custom.cf_reason": "Returns desk"}], plan, t)
    (problem,) = result.problems.to_dicts()
    assert problem["action"] == "rejected" and problem["column"] == "c2d_reason"
    assert "'Returns desk'" in problem["reason"] and f"{t.table}.c2d_reason" in problem["reason"]
    assert "materialize schema/plan again" in problem["reason"]
    assert result.frame["c2d_reason"].to_list() == [None]


def test_a_stale_plan_without_the_types_column_is_an_error() -> None:
    t, plan = plan_for()
    stale = SchemaPlan(plan.tables, [c for c in plan.columns if c.logical_name != "c2d_note"], plan.keys)
    with pytest.raises(PlanMismatchError, match="c2d_note .*materialize schema/plan again"):
        plan_columns(t, stale)


def test_orphaned_values_get_a_planned_column_named_from_the_field_id() -> None:
    t, plain = plan_for()
    assert not any("cfgone" in c.logical_name for c in plain.columns)
    _, plan = plan_for((t.table,))
    names = orphan_columns(t, ["cf_gone"], "c2d")
    (spec,) = [c for c in plan.columns if c.logical_name == names["cf_gone"]]
    assert spec.logical_name == "c2d_cfgone" and spec.type == "String" and spec.max_length == 100
    assert spec.display_name == "Close field cf_gone (deleted in Close)"


def test_dropped_orphaned_values_are_listed_and_halt_names_the_setting() -> None:
    f = frame(INSTANCES)
    dropped = dropped_values(f, ["cf_gone"])
    assert dropped.rows() == [("acti_2", "cf_gone", "left over"), ("acti_3", "cf_gone", "x, y")]
    used = [c for c in f.columns if c.startswith("custom.") and not c.endswith("[]")]
    rej = undefined_field_rejections(
        f, used, {"cf_reason", "cf_tags", "cf_note"}, RoutedActivityType("R", "c2d_r")
    )
    assert rej["_close_id"].to_list() == ["acti_2", "acti_3"]
    assert "orphaned_values" in rej["reason"][0] and "custom_activities.yaml" in rej["reason"][0]


def test_load_types_reads_the_orphaned_values_decision(tmp_path: Path) -> None:
    (tmp_path / "custom_activities.yaml").write_text(
        "types:\n"
        "- {name: A, table: c2d_a, close_id: actitype_a, archived: false, fields: [], orphaned_fields: []}\n"
        "- {name: B, table: c2d_b, orphaned_values: column, review: decide}\n"
        "- {name: C, table: c2d_c, orphaned_values: drop}\n"
    )
    assert [(t.name, t.orphaned_values) for t in load_types(tmp_path)] == [
        ("A", "halt"),
        ("B", "column"),
        ("C", "drop"),
    ]
    (tmp_path / "custom_activities.yaml").write_text(
        "types:\n- name: A\n  table: c2d_a\n  orphaned_values: keep\n"
    )
    with pytest.raises(MappingError, match="line 4.*halt, drop, column"):
        load_types(tmp_path)
    (tmp_path / "custom_activities.yaml").write_text("types:\n- {name: A, table: c2d_a, colour: red}\n")
    with pytest.raises(MappingError, match="colour"):
        load_types(tmp_path)


# -- the staging asset end to end on a small warehouse -------------------------------------------------
LEAD = "11111111-1111-1111-1111-111111111111"


def warehouse(tmp_path: Path, mode: str) -> tuple[WarehouseResource, RoutedActivityType, Any]:
    """close.* rows of the type, the saved plan (as schema/plan writes it) and the staged tables it needs."""
    from migration_assets.mapping.ids import record_id

    t, plan = plan_for((activity_types([TYPE], "c2d")[0].table,) if mode == "column" else ())
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    con = duckdb.connect(wh.path)
    con.execute("CREATE SCHEMA close; CREATE SCHEMA staged")
    con.execute("CREATE TABLE close.custom_activity_types (id VARCHAR, raw VARCHAR)")
    con.execute("INSERT INTO close.custom_activity_types VALUES (?, ?)", ["actitype_1", json.dumps(TYPE)])
    con.execute(
        "CREATE TABLE close.custom_activities (id VARCHAR, lead_id VARCHAR, contact_id VARCHAR, user_id "
        "VARCHAR, activity_at VARCHAR, date_created VARCHAR, custom_activity_type_id VARCHAR, raw VARCHAR)"
    )
    for i in INSTANCES:
        raw = {
            **i,
            "lead_id": "lead_1",
            "user_id": "user_1",
            "status": "published",
            "date_created": "2024-01-02T03:04:05+00:00",
        }
        con.execute(
            "INSERT INTO close.custom_activities VALUES (?, 'lead_1', NULL, 'user_1', NULL, ?, ?, ?)",
            [i["id"], raw["date_created"], "actitype_1", json.dumps(raw)],
        )
    con.execute(
        "CREATE TABLE staged.owner_map AS SELECT 'user_1' AS close_user_id, '22222222-2222-2222-2222-222222222222' AS systemuserid"
    )
    con.execute(
        "CREATE TABLE staged.target_systemusers AS SELECT '22222222-2222-2222-2222-222222222222' AS systemuserid, false AS isdisabled"
    )
    con.execute(
        "CREATE TABLE staged.target_entity_sets (table_name VARCHAR, entity_set VARCHAR, primary_id VARCHAR)"
    )
    con.execute(
        "INSERT INTO staged.target_entity_sets VALUES ('lead', 'leads', 'leadid'), "
        "('systemuser', 'systemusers', 'systemuserid')"
    )
    con.execute(f"CREATE TABLE staged.lead AS SELECT '{record_id('lead', 'lead_1')}' AS leadid")
    save_plan(con, plan)
    con.close()
    return wh, RoutedActivityType("Return Request", t.table, mode), t


@pytest.mark.parametrize("mode", ["halt", "drop", "column"])
def test_a_type_with_orphaned_values_loads_with_drop_or_column(tmp_path: Path, mode: str) -> None:
    wh, routed, t = warehouse(tmp_path, mode)
    result = stage_type(wh, routed, run_id="run1")
    staged = wh.read(f'SELECT * FROM staged."custom_activity_{t.table}" ORDER BY c2d_closeid')
    rejected = wh.read(f'SELECT * FROM staged."custom_activity_{t.table}_rejected"')
    report = tmp_path / "close2d365_home" / "reports" / "run1" / f"orphaned_values_{t.table}.csv"
    if mode == "halt":  # the type's check fails: the rows that carry orphaned values are rejected
        assert set(rejected["_close_id"]) == {"acti_2", "acti_3"} and staged.height == 1
        assert not report.exists()
        return
    assert staged["c2d_closeid"].to_list() == ["acti_1", "acti_2", "acti_3"] and rejected.height == 0
    if mode == "drop":
        assert pl.read_csv(report).rows() == [
            ("acti_2", "cf_gone", "left over"),
            ("acti_3", "cf_gone", "x, y"),
        ]
        assert result.metadata["dropped_orphaned_values"] == 2
        assert "c2d_cfgone" not in staged.columns
    else:
        assert staged["c2d_cfgone"].to_list() == [None, "left over", "x, y"]
        assert not report.exists()


def test_an_existing_column_whose_options_carry_other_labels_is_a_conflict() -> None:
    from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta, OptionMeta
    from migration_assets.target.schema_plan import diff

    t, plan = plan_for()
    spec = next(c for c in plan.columns if c.logical_name == "c2d_reason")
    # A column created by an older plan that numbered the options in the order the data showed them.
    old = [OptionMeta(72700_0000 + i, label) for i, label in enumerate(["Île-de-France", "Billing, general"])]
    attr = AttributeMeta("c2d_reason", "c2d_Reason", "Picklist", "PicklistType", options=old)
    meta = EntityMeta(
        t.table, t.schema, t.table + "s", "activityid", "subject", None, True, {"c2d_reason": attr}
    )
    d = diff(SchemaPlan(plan.tables, [spec], []), {t.table: meta})
    assert len(d.conflicts) == 2 and "option 727000000 is labelled 'Île-de-France'" in d.conflicts[0]
    same = [OptionMeta(v, label) for v, label in spec.options]
    ok = AttributeMeta("c2d_reason", "c2d_Reason", "Picklist", "PicklistType", options=same)
    meta.attributes["c2d_reason"] = ok
    assert diff(SchemaPlan(plan.tables, [spec], []), {t.table: meta}).conflicts == []


def test_a_column_already_in_the_target_keeps_its_option_values() -> None:
    from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta, OptionMeta
    from migration_assets.target.schema_build import align_options
    from migration_assets.target.schema_plan import diff

    t, plan = plan_for()
    old = [OptionMeta(727000000, "île-de-france "), OptionMeta(727000001, "Billing, general")]
    attr = AttributeMeta("c2d_reason", "c2d_Reason", "Picklist", "PicklistType", options=old)
    meta = EntityMeta(
        t.table, t.schema, t.table + "s", "activityid", "subject", None, True, {"c2d_reason": attr}
    )
    aligned = align_options(plan, {t.table: meta}, 72700, {t.table})
    assert planned_choices(aligned, t.table, "c2d_reason") == {
        "Packaging": 727000002,
        "Shipping": 727000003,
        "Billing, general": 727000001,
        "Île-de-France": 727000000,
    }
    d = diff(
        SchemaPlan(aligned.tables, [c for c in aligned.columns if c.table == t.table], []), {t.table: meta}
    )
    assert d.conflicts == [] and [(v, label) for _, v, label in d.add_options] == [
        (727000002, "Packaging"),
        (727000003, "Shipping"),
    ]
    # Staging writes what the aligned plan says: each value is the option that shows its label.
    result = mapped(INSTANCES, aligned, t)
    assert result.frame["c2d_reason"].to_list() == [727000000, 727000001, 727000002]
    assert planned_choices(align_options(plan, {t.table: None}, 72700, {t.table}), t.table, "c2d_reason") == {
        label: 727000000 + i for i, label in enumerate(CHOICES)
    }


def test_lead_custom_fields_stage_the_values_the_plan_creates(monkeypatch: pytest.MonkeyPatch) -> None:
    from migration_assets.mapping.custom_fields import plan_custom_fields
    from migration_assets.mapping.fields import FieldMap, parse_field
    from migration_assets.target.proposal import confirm_all, field_entries, propose
    from migration_assets.target.rules import TableRules

    field = {"id": "cf_seg", "name": "Segment", "type": "choices", "choices": CHOICES}
    (p,) = confirm_all(propose({"lead": [field]}, {"cf_seg": ["Billing, general", "Packaging"]}, {}, "c2d"))
    plan = build_plan(fake_config(), [p])
    (entry,) = field_entries([p], 72700)["lead"]
    assert entry["args"]["map"] == planned_choices(plan, "lead", p.target)
    cfg: Any = SimpleNamespace(settings=fake_config().settings, root=Path("/nowhere"))
    rules = TableRules("lead", "leads", "leadid")
    monkeypatch.setattr("migration_assets.mapping.custom_fields.confirmed_for", lambda _cfg, _table: [p])
    plan_custom_fields(rules, cfg)
    assert rules.columns[p.target].options == sorted(entry["args"]["map"].values())
    spec = parse_field(entry, "custom_fields.yaml", "fields[0]", None, "c2d", "lead", {})
    source = pl.DataFrame({"id": ["lead_1", "lead_2"], "custom.cf_seg": ["Shipping", "Retail"]})
    result = apply_field_map(source, FieldMap("lead", "lead", "x", (spec,)), TransformContext())
    assert result.frame[p.target].to_list() == [727000001, None]
    (reason,) = result.problems["reason"].to_list()
    assert "'Retail'" in reason and f"lead.{p.target}" in reason and "custom_fields.yaml (cf_seg)" in reason
