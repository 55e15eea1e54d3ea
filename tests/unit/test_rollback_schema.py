"""Rollback of the schema a run created: the ledger of schema components, the removal order, and what stays
(with its reason) when records or components of other runs still use it."""

from __future__ import annotations

from typing import Any

import duckdb

from migration_assets.load import ledger as lg
from migration_assets.load.ledger import SchemaComponent, SchemaLedger
from migration_assets.load.rollback_plan import plan_schema_rollback


def comp(run: str, seq: int, kind: str, table: str | None, name: str, **detail: Any) -> SchemaComponent:
    return SchemaComponent(run, seq, kind, table, name, f"id-{seq}", detail, "done")


RUN = [
    comp("r1", 1, "publisher", None, "close2d365"),
    comp("r1", 2, "solution", None, "close2d365"),
    comp("r1", 3, "column", "lead", "c2d_closeid"),
    comp("r1", 4, "key", "lead", "c2d_lead_closeid_key", columns=["c2d_closeid"]),
    comp("r1", 5, "option", "opportunity", "c2d_pipeline", value=727000003),
    comp("r1", 6, "table", "c2d_demo", "c2d_demo"),
    comp("r1", 7, "column", "c2d_demo", "c2d_score"),
    comp("r1", 8, "relationship", "c2d_demo", "c2d_contact_c2d_demo_x", lookup="c2d_x", referenced="contact"),
    comp("r1", 9, "relationship", "task", "c2d_c2d_demo_task_y", lookup="c2d_y", referenced="c2d_demo"),
]


def test_components_go_first_then_tables_then_solution_then_publisher() -> None:
    plan = plan_schema_rollback(RUN, live={})
    assert plan.kept == []
    assert [(s.kind, s.table, s.name) for s in plan.steps] == [
        ("option", "opportunity", "c2d_pipeline"),
        ("key", "lead", "c2d_lead_closeid_key"),
        ("relationship", "task", "c2d_c2d_demo_task_y"),  # points at the table: before it
        ("column", "lead", "c2d_closeid"),
        ("table", "c2d_demo", "c2d_demo"),
        ("solution", None, "close2d365"),
        ("publisher", None, "close2d365"),
    ]
    table = next(s for s in plan.steps if s.kind == "table")
    # The table's own column and lookup go with it: their ledger rows are stamped with the table's.
    assert set(table.sources) == {("r1", 6), ("r1", 7), ("r1", 8)}


def test_schema_that_live_records_use_is_kept_with_its_reason_and_so_are_its_containers() -> None:
    plan = plan_schema_rollback(RUN, live={"lead": {"r2"}})
    kept = {s.label: why for s, why in plan.kept}
    assert (
        kept["column lead.c2d_closeid"]
        == "run r2 still has records in lead that this rollback does not remove"
    )
    assert "alternate key lead.c2d_lead_closeid_key" in kept
    assert kept["solution close2d365"].startswith("it still holds 2 component(s) that stay")
    assert kept["publisher close2d365"] == "its solution close2d365 stays"
    assert {s.kind for s in plan.steps} == {"option", "relationship", "table"}


def test_a_table_another_run_points_a_lookup_at_is_kept() -> None:
    others = [
        comp("r2", 1, "relationship", "lead", "c2d_c2d_demo_lead_z", lookup="c2d_z", referenced="c2d_demo")
    ]
    plan = plan_schema_rollback(RUN, live={}, others=others)
    kept = {s.label: why for s, why in plan.kept}
    assert kept["table c2d_demo"] == "the lookup lead.c2d_z of run r2 refers to it"
    assert "column c2d_demo.c2d_score" not in kept
    # Its components are removed one by one now that the table stays.
    assert ("column", "c2d_demo", "c2d_score") in [(s.kind, s.table, s.name) for s in plan.steps]
    assert kept["publisher close2d365"] == "its solution close2d365 stays"


def test_a_column_another_runs_key_uses_is_kept() -> None:
    others = [comp("r2", 1, "key", "lead", "c2d_other_key", columns=["c2d_closeid"])]
    plan = plan_schema_rollback(RUN[:3], live={}, others=others)
    kept = {s.label: why for s, why in plan.kept}
    assert kept["column lead.c2d_closeid"] == (
        "the alternate key c2d_other_key created by run r2 (not rolled back) uses it"
    )


def test_a_component_ledgered_twice_is_removed_once() -> None:
    again = comp("r1", 10, "column", "lead", "c2d_closeid")
    plan = plan_schema_rollback([RUN[2], again], live={})
    (step,) = plan.steps
    assert step.sources == (("r1", 3), ("r1", 10))


def test_schema_ledger_writes_ahead_and_reads_back() -> None:
    con = duckdb.connect()
    led = SchemaLedger(con, "run-1")
    seq = led.begin("column", "lead", "c2d_closeid", {"type": "String"})
    assert [c.status for c in lg.schema_components(con)] == ["pending"]  # before the request goes out
    led.done(seq, "ABC-1")
    refused = led.begin("key", "lead", "c2d_k")
    led.rejected(refused)
    (row,) = lg.schema_components(con, ["run-1"])
    assert (row.kind, row.table, row.name, row.component_id, row.detail, row.status) == (
        "column",
        "lead",
        "c2d_closeid",
        "abc-1",
        {"type": "String"},
        "done",
    )
    assert lg.run_exists(con, "run-1"), "a run that only created schema can be rolled back by its id"
    lg.mark_schema_removed(con, [("run-1", seq)], "rb-1")
    assert lg.schema_components(con) == []
    assert lg.schema_components(con, include_removed=True)[0].removed_by == "rb-1"
    # A second ledger of the same run continues its sequence.
    assert SchemaLedger(con, "run-1").begin("table", "c2d_x", "c2d_x") == refused + 1


class FakeTarget:
    """The client calls `remove_schema` makes: deletes answer True once, then False (already gone)."""

    def __init__(self) -> None:
        self.deleted: list[tuple[str, ...]] = []

    def _gone(self, *what: str) -> bool:
        if what in self.deleted:
            return False
        self.deleted.append(what)
        return True

    def delete_option_value(self, table: str, column: str, value: int, solution: str | None) -> bool:
        return self._gone("option", table, column, str(value))

    def delete_key(self, table: str, name: str, metadata_id: str | None) -> bool:
        return self._gone("key", table, name)

    def delete_relationship(self, name: str, metadata_id: str | None) -> bool:
        return self._gone("relationship", name)

    def delete_column(self, table: str, column: str) -> bool:
        return self._gone("column", table, column)

    def delete_table(self, table: str) -> bool:
        return self._gone("table", table)

    def delete_solution(self, solution_id: str) -> bool:
        return self._gone("solution", solution_id)

    def delete_publisher(self, publisher_id: str) -> bool:
        return self._gone("publisher", publisher_id)

    def metadata(self, table: str, refresh: bool = False) -> Any:
        return type("Meta", (), {"primary_id": "activityid"})()

    def query(self, table: str, select: list[str], top: int) -> list[dict[str, Any]]:
        return []  # the custom table holds no record the ledger does not know

    def rows(self, entity_set: str, select: list[str], filter: str) -> list[dict[str, Any]]:
        return []  # the solution holds nothing else, the publisher owns no other solution


def _ledger_of_two_runs() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    first = SchemaLedger(con, "r1")
    for kind, table, name, detail in [
        ("publisher", None, "close2d365", {}),
        ("solution", None, "close2d365", {}),
        ("table", "c2d_demo", "c2d_demo", {}),
        ("column", "c2d_demo", "c2d_score", {}),
        ("column", "lead", "c2d_closeid", {}),
        ("key", "lead", "c2d_lead_closeid_key", {"columns": ["c2d_closeid"]}),
    ]:
        first.done(first.begin(kind, table, name, detail), f"id-{name}")
    lg.Ledger(con, "r2").record_done([lg.Intent("lead", "L1", "lead_1", "created")])
    return con


def test_rollback_keeps_schema_another_runs_records_use_and_says_why() -> None:
    from migration_assets.load.rollback import RollbackReport, remove_schema

    con, target = _ledger_of_two_runs(), FakeTarget()
    report = RollbackReport("rb1", ["r1"])
    remove_schema(con, target, ["r1"], "rb1", report, lambda _m: None)  # type: ignore[arg-type]
    assert report.ok and target.deleted == [("table", "c2d_demo")]
    assert report.schema_removed == ["table c2d_demo"]
    assert sorted(report.schema_kept) == [
        "alternate key lead.c2d_lead_closeid_key: kept because run r2 still has records in lead that this "
        "rollback does not remove",
        "column lead.c2d_closeid: kept because run r2 still has records in lead that this rollback does not "
        "remove",
        "publisher close2d365: kept because its solution close2d365 stays",
        "solution close2d365: kept because it still holds 2 component(s) that stay (e.g. alternate key "
        "lead.c2d_lead_closeid_key)",
    ]
    assert "KEPT column lead.c2d_closeid: kept because run r2" in report.render()
    # Once r2 is rolled back too, the rest goes, in order; what was removed before is not asked again.
    con.execute("UPDATE ledger.writes SET rolled_back_by = 'rb2' WHERE run_id = 'r2'")
    again = RollbackReport("rb2", ["r1"])
    remove_schema(con, target, ["r1"], "rb2", again, lambda _m: None)  # type: ignore[arg-type]
    assert again.schema_kept == [] and [d[0] for d in target.deleted] == [
        "table",
        "key",
        "column",
        "solution",
        "publisher",
    ]
    assert lg.schema_components(con) == []
