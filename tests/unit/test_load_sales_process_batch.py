"""All the writes of a sales-process load in one `$batch` (pure planning): which parts, in which order, how
they are grouped under the 1000-part cap, and how a refused write settles its instance (the writes after it
not placed, the reason naming the first refusal); and a refusal no instance can cure stops the load once
the ledger holds what happened."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest
from _sales_process_stages import LINKS, STAGES

from migration_assets.clients.dataverse.batch import BatchPartResponse, BatchRequest
from migration_assets.clients.dataverse.client import DataverseApiError
from migration_assets.load.ledger import Ledger
from migration_assets.load.sales_process import SalesProcess, SalesProcessLoader, Wanted
from migration_assets.load.sales_process_plan import (
    ACTIVE,
    FINISHED,
    Instance,
    InstancePlan,
    Placement,
    Refusal,
    Write,
    batch_order,
    describe,
    pack,
    plan_instance,
    settle,
)

ONE_STAGE = "A business process flow instance moves only to the next or the previous stage"


def _plan(opp: str, stage: str, path: str, want: Placement, state: tuple[int, int] = ACTIVE) -> InstancePlan:
    plan = plan_instance(
        opp, want, STAGES, Instance(f"i-{opp}", opp, stage, tuple(path.split(",")), *state), "n", LINKS
    )
    assert isinstance(plan, InstancePlan)
    return plan


def _refused(message: str = ONE_STAGE, operation: str = "update") -> Refusal:
    return Refusal(operation, 400, "0x80040203", message)


def test_the_parts_go_round_after_round_each_instance_in_its_own_order() -> None:
    won = _plan("o1", "q", "q", Placement(3, True))  # Develop, Propose, Close, finish
    develop = _plan("o2", "q", "q", Placement(1, False))  # Develop
    propose = _plan("o3", "q", "q", Placement(2, False))  # Develop, Propose
    order = batch_order([won, develop, propose])
    assert [(p.opportunity_id, k) for p, k in order] == [
        ("o1", 0),
        ("o2", 0),
        ("o3", 0),
        ("o1", 1),
        ("o3", 1),
        ("o1", 2),
        ("o1", 3),
    ]
    for plan in (won, develop, propose):
        assert [k for p, k in order if p is plan] == list(range(len(plan.writes)))
    assert batch_order([]) == []


def test_groups_stay_under_the_part_cap_and_never_split_an_instance() -> None:
    plans = [_plan(f"o{n}", "q", "q", Placement(3, True)) for n in range(5)]  # 4 writes each
    groups = pack(plans, 10)
    assert [[p.opportunity_id for p in g] for g in groups] == [["o0", "o1"], ["o2", "o3"], ["o4"]]
    assert all(sum(len(p.writes) for p in g) <= 10 for g in groups)
    assert [p for g in groups for p in g] == plans  # every plan once, in order
    assert pack(plans, 1000) == [plans]  # a delta's few moves: one $batch
    assert pack([], 1000) == []
    with pytest.raises(ValueError, match="needs 4 writes"):
        pack(plans, 3)


def test_each_write_is_named_by_what_it_does() -> None:
    create = plan_instance("o1", Placement(3, True), STAGES, None, "new", LINKS)
    assert isinstance(create, InstancePlan)
    assert [describe(w, STAGES) for w in create.writes] == ["create at stage 'Close'", "finish"]
    back = _plan("o1", "c", "q,d,p,c", Placement(2, False), FINISHED)
    assert [describe(w, STAGES) for w in back.writes] == ["reactivate", "move to stage 'Propose'"]
    assert describe(Write("update", {"traversedpath": "q,d"}), STAGES) == "set traversedpath"


def test_an_instance_whose_writes_all_landed_is_placed() -> None:
    plan = _plan("o1", "q", "q", Placement(3, True))
    assert settle(plan, STAGES, [None] * 4).refusal is None
    assert settle(plan, STAGES, [None] * 4).landed == 4


def test_a_refused_first_move_leaves_the_later_ones_unapplied_with_its_reason() -> None:
    plan = _plan("o1", "q", "q", Placement(3, True))
    # The first move is refused; the later ones, sent in the same $batch, are refused in turn.
    answers = [_refused("the stage is locked"), _refused(), _refused(), _refused("not at the last stage")]
    settled = settle(plan, STAGES, answers)
    assert settled.landed == 0
    assert settled.refusal is not None
    assert settled.refusal.message == (
        "move to stage 'Develop' refused: the stage is locked (so not applied after it: "
        "move to stage 'Propose', move to stage 'Close', finish)"
    )
    assert (settled.refusal.operation, settled.refusal.status) == ("update", 400)


def test_a_refusal_after_moves_that_landed_counts_them_and_names_the_refused_one() -> None:
    plan = _plan("o1", "q", "q", Placement(3, True))
    settled = settle(plan, STAGES, [None, None, _refused("locked at Propose"), _refused()])
    assert settled.landed == 2  # the instance changed: a rollback must move it back
    assert settled.refusal is not None
    assert settled.refusal.message == (
        "move to stage 'Close' refused: locked at Propose (so not applied after it: finish)"
    )


def test_a_later_write_the_server_took_anyway_is_counted_and_said() -> None:
    plan = _plan("o1", "q", "q", Placement(2, False))
    settled = settle(plan, STAGES, [_refused("two stages away"), None])
    assert settled.landed == 1
    assert settled.refusal is not None and settled.refusal.message == (
        "move to stage 'Develop' refused: two stages away (applied after it nonetheless: move to stage 'Propose')"
    )


def test_a_refused_create_names_the_create_and_the_finish_it_prevented() -> None:
    plan = plan_instance("o1", Placement(3, True), STAGES, None, "new", LINKS)
    assert isinstance(plan, InstancePlan)
    not_found = Refusal("update", 404, "0x80040217", "opportunitysalesprocess With Id = new Does Not Exist")
    settled = settle(plan, STAGES, [_refused("already has an active instance", "create"), not_found])
    assert settled.refusal is not None and settled.refusal.operation == "create"
    assert settled.refusal.message.startswith("create at stage 'Close' refused: already has an active")
    assert settled.refusal.message.endswith("(so not applied after it: finish)")


def test_answers_must_match_the_writes() -> None:
    with pytest.raises(ValueError, match="1 answers for the 4 writes"):
        settle(_plan("o1", "q", "q", Placement(3, True)), STAGES, [None])


class _Forbidding:
    """A target that answers every `$batch` part with a missing privilege (403), as Dataverse does."""

    write_headers: dict[str, str] = {}

    def __init__(self) -> None:
        self.sent: list[list[BatchRequest]] = []

    def entity_set(self, table: str) -> str:
        return {"opportunity": "opportunities"}.get(table, "opportunitysalesprocesses")

    def execute_batch(self, items: list[BatchRequest], continue_on_error: bool = True) -> list[Any]:
        self.sent.append(items)
        body = json.dumps(
            {
                "error": {
                    "code": "0x80040220",
                    "message": "Principal user is missing prvWriteOpportunitySalesProcess",
                }
            }
        )
        return [BatchPartResponse(403, "Forbidden", {}, body) for _ in items]


def test_a_refusal_no_instance_can_cure_stops_the_load_after_ledgering_it() -> None:
    process = SalesProcess(
        "wf",
        "opportunitysalesprocess",
        "opportunitysalesprocess",
        "bpfid",
        "opportunityid",
        "opportunityid",
        tuple(STAGES),
    )
    client = _Forbidding()
    con = duckdb.connect()
    statuses = {3: ("Close", "won", "S / W")}
    loader = SalesProcessLoader(client, Ledger(con, "run-1"), process, statuses, lambda _: None)  # type: ignore[arg-type]
    instances = {"o1": Instance("i1", "o1", "q", ("q",), 0, 1)}
    with pytest.raises(DataverseApiError, match="HTTP 403 0x80040220"):
        loader.load([Wanted("o1", "c1", 3)], instances)
    assert [(r.method, r.url) for r in client.sent[0]] == [("PATCH", "opportunitysalesprocesses(i1)")] * 4
    assert con.execute("SELECT record_id, status FROM ledger.writes").fetchall() == [("i1", "rejected")]
    message = con.execute("SELECT message FROM ledger.rejected").fetchall()[0][0]
    assert message.startswith("move to stage 'Develop' refused: Principal user is missing")
