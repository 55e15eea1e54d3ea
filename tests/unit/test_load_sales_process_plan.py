"""Where an opportunity stands on its business process flow and the writes that put it there (pure), and the
`stage`/`sales_process` of the pipelines mapping (proposed, parsed, defaulted for older files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _sales_process_stages import LINKS, STAGES

from migration_assets.load.sales_process_plan import (
    ACTIVE,
    FINISHED,
    STAGE_BIND,
    Instance,
    InstancePlan,
    Placement,
    Stage,
    order_stages,
    path_to,
    placement,
    plan_instance,
    restore_writes,
    rounds,
    status_stages,
)
from migration_assets.mapping.files import SHIPPED_SALES_PROCESS, parse_pipelines
from migration_assets.mapping.yaml_loc import MappingError, load_located
from migration_assets.target.proposal_statuses import merge_pipelines


def _at(stage: str, path: str, state: tuple[int, int] = ACTIVE) -> Instance:
    return Instance("i1", "o1", stage, tuple(path.split(",")), *state)


def _bodies(plan: InstancePlan | str | None) -> list[dict]:
    assert isinstance(plan, InstancePlan), plan
    return [w.body for w in plan.writes]


def test_stage_by_name_and_closed_ones_at_the_last_stage_finished() -> None:
    assert placement("develop ", "active", STAGES) == Placement(1, False)
    assert placement("Qualify", "won", STAGES) == Placement(3, True)
    assert placement("Close", "lost", STAGES) == Placement(3, True)
    why = placement("Negotiate", "active", STAGES)
    assert isinstance(why, str) and "'Negotiate' is not a stage" in why and "Qualify, Develop" in why
    assert isinstance(placement("Qualify", "active", []), str)


def test_path_goes_through_every_earlier_stage_in_order() -> None:
    assert path_to(STAGES, 0) == "q"
    assert path_to(STAGES, 2) == "q,d,p"


def test_stage_order_from_the_active_path_else_by_category() -> None:
    shuffled = [STAGES[2], STAGES[0], STAGES[3], STAGES[1]]
    assert order_stages(shuffled) == STAGES
    assert order_stages(shuffled, ["Q", "D", "P", "C"]) == STAGES
    assert order_stages(shuffled, ["q", "d"]) == STAGES  # a partial path does not order every stage
    no_categories = [Stage("b", "B"), Stage("a", "A")]
    assert order_stages(no_categories) == no_categories  # the server's order


def test_an_existing_instance_moves_one_stage_per_write() -> None:
    plan = plan_instance("o1", Placement(2, False), STAGES, _at("q", "q"), "new", LINKS)
    assert _bodies(plan) == [
        {STAGE_BIND: "/processstages(d)", "traversedpath": "q,d"},
        {STAGE_BIND: "/processstages(p)", "traversedpath": "q,d,p"},
    ]
    assert isinstance(plan, InstancePlan) and not plan.create and plan.instance_id == "i1"
    assert plan.before == {
        STAGE_BIND: "/processstages(q)",
        "traversedpath": "q",
        "statecode": 0,
        "statuscode": 1,
    }


def test_already_placed_needs_no_write() -> None:
    assert plan_instance("o1", Placement(1, False), STAGES, _at("d", "q,d"), "new", LINKS) is None
    done = _at("c", "q,d,p,c", FINISHED)
    assert plan_instance("o1", Placement(3, True), STAGES, done, "new", LINKS) is None


def test_closed_opportunity_moves_to_the_last_stage_then_finishes() -> None:
    plan = plan_instance("o1", Placement(3, True), STAGES, _at("d", "q,d"), "new", LINKS)
    bodies = _bodies(plan)
    assert [b.get(STAGE_BIND) for b in bodies[:2]] == ["/processstages(p)", "/processstages(c)"]
    assert bodies[1]["traversedpath"] == "q,d,p,c"
    assert bodies[-1] == {"statecode": 1, "statuscode": 2}
    at_last = plan_instance("o1", Placement(3, True), STAGES, _at("c", "q,d,p,c"), "new", LINKS)
    assert _bodies(at_last) == [{"statecode": 1, "statuscode": 2}]


def test_a_finished_instance_is_reactivated_before_it_moves_back() -> None:
    plan = plan_instance("o1", Placement(2, False), STAGES, _at("c", "q,d,p,c", FINISHED), "new", LINKS)
    assert _bodies(plan) == [
        {"statecode": 0, "statuscode": 1},
        {STAGE_BIND: "/processstages(p)", "traversedpath": "q,d,p"},
    ]


def test_a_missing_instance_is_created_at_its_stage_with_its_path() -> None:
    plan = plan_instance("o1", Placement(2, False), STAGES, None, "new-id", LINKS)
    assert isinstance(plan, InstancePlan) and plan.create and plan.before is None
    assert _bodies(plan) == [
        {
            "businessprocessflowinstanceid": "new-id",
            **LINKS,
            STAGE_BIND: "/processstages(p)",
            "traversedpath": "q,d,p",
        }
    ]
    won = plan_instance("o1", Placement(3, True), STAGES, None, "new-id", LINKS)
    assert [w.kind for w in won.writes] == ["create", "update"]  # type: ignore[union-attr]


def test_an_instance_at_a_foreign_stage_is_refused_with_why() -> None:
    why = plan_instance("o1", Placement(1, False), STAGES, _at("x", "x"), "new", LINKS)
    assert isinstance(why, str) and "not a stage" in why


def test_rounds_keep_each_instance_in_order() -> None:
    long = plan_instance("o1", Placement(3, True), STAGES, _at("q", "q"), "n", LINKS)
    short = plan_instance("o2", Placement(1, False), STAGES, _at("q", "q"), "n", LINKS)
    assert isinstance(long, InstancePlan) and isinstance(short, InstancePlan)
    out = rounds([long, short])
    assert [len(r) for r in out] == [2, 1, 1, 1]
    assert [w for p, w in out[0] if p is short] == short.writes
    assert [w for _, w in out[3]] == [long.writes[3]]


def test_restore_moves_back_a_stage_at_a_time_to_the_before_image() -> None:
    before = {STAGE_BIND: "/processstages(D)", "traversedpath": "q,d", "statecode": 0, "statuscode": 1}
    writes = restore_writes(STAGES, _at("c", "q,d,p,c", FINISHED), before)
    assert writes == [
        {"statecode": 0, "statuscode": 1},
        {STAGE_BIND: "/processstages(p)", "traversedpath": "q,d,p"},
        {STAGE_BIND: "/processstages(d)", "traversedpath": "q,d"},
    ]
    assert restore_writes(STAGES, _at("d", "q,d"), before) == []
    finished = {
        **before,
        STAGE_BIND: "/processstages(c)",
        "traversedpath": "q,d,p,c",
        "statecode": 1,
        "statuscode": 2,
    }
    assert restore_writes(STAGES, _at("p", "q,d,p"), finished) == [
        {STAGE_BIND: "/processstages(c)", "traversedpath": "q,d,p,c"},
        {"statecode": 1, "statuscode": 2},
    ]
    assert isinstance(restore_writes(STAGES, _at("x", "x"), before), str)


def _pipelines(tmp_path: Path, body: dict) -> object:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(body, allow_unicode=True))
    return parse_pipelines(load_located(tmp_path / "p.yaml", "p"), "p", "c2d", 72700)


def _close_pipeline() -> list[dict]:
    statuses = [("s1", "Intro", "active"), ("s2", "Demo", "active"), ("s3", "Quote", "active")]
    statuses += [("s4", "Won", "won"), ("s5", "Lost", "lost")]
    return [
        {
            "id": "p1",
            "name": "Sales",
            "statuses": [{"id": i, "label": lb, "type": t} for i, lb, t in statuses],
        }
    ]


def test_propose_mapping_proposes_the_shipped_process_and_a_stage_per_status(tmp_path: Path) -> None:
    body, _ = merge_pipelines(None, _close_pipeline(), 72700)
    assert body["sales_process"] == SHIPPED_SALES_PROCESS
    assert [s["stage"] for s in body["pipelines"][0]["statuses"]] == [
        "Qualify",
        "Develop",
        "Propose",
        "Close",
        "Close",
    ]
    body["pipelines"][0]["statuses"][0]["stage"] = "Develop"  # a reviewed decision survives a re-run
    again, _ = merge_pipelines(body, _close_pipeline(), 72700)
    assert again["pipelines"][0]["statuses"][0]["stage"] == "Develop"
    parsed = _pipelines(tmp_path, again)
    assert parsed.notes == ()  # type: ignore[attr-defined]
    stages = status_stages(parsed)  # type: ignore[arg-type]
    assert stages[727000000] == ("Develop", "active", "Sales / Intro")
    assert stages[727000003] == ("Close", "won", "Sales / Won")


def test_a_file_from_before_stages_loads_with_stages_from_salesstage_and_a_note(tmp_path: Path) -> None:
    body, _ = merge_pipelines(None, _close_pipeline(), 72700)
    del body["sales_process"]
    for status in body["pipelines"][0]["statuses"]:
        del status["stage"]
    body["pipelines"][0]["statuses"][0]["salesstage"] = 2  # reviewed before stages existed
    parsed = _pipelines(tmp_path, body)
    assert parsed.sales_process == SHIPPED_SALES_PROCESS  # type: ignore[attr-defined]
    assert [s.stage for s in parsed.pipelines[0].statuses] == [  # type: ignore[attr-defined]
        "Propose",
        "Develop",
        "Propose",
        "Close",
        "Close",
    ]
    notes = parsed.notes  # type: ignore[attr-defined]
    assert len(notes) == 2 and "5 status(es) have no `stage`" in notes[0] and "sales_process" in notes[1]
    again, _ = merge_pipelines(body, _close_pipeline(), 72700)  # propose-mapping writes them for review
    assert again["pipelines"][0]["statuses"][0]["stage"] == "Propose"


def test_an_empty_stage_or_process_is_a_mapping_error_naming_file_and_key(tmp_path: Path) -> None:
    body, _ = merge_pipelines(None, _close_pipeline(), 72700)
    body["pipelines"][0]["statuses"][1]["stage"] = " "
    with pytest.raises(MappingError) as err:
        _pipelines(tmp_path, body)
    assert "stage" in str(err.value) and "p" in str(err.value)
    body["pipelines"][0]["statuses"][1]["stage"] = "Develop"
    body["sales_process"] = ""
    with pytest.raises(MappingError, match="sales_process"):
        _pipelines(tmp_path, body)
