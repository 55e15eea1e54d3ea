"""Deactivation through the ledger: each table's inactive state from its metadata, intents durable before
the `$batch`, a refused record rejected with the server's message (the others land), and records already
gone or already inactive left alone."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from migration_assets.clients.dataverse.batch import BatchPartResponse, BatchRequest
from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta, OptionMeta
from migration_assets.load import ledger as lg
from migration_assets.load.deletion_apply import DeletionApplier, inactive_state
from migration_assets.load.deletions import Candidate, DeletionPlan
from migration_assets.load.ledger import Ledger


def _meta(table: str, pk: str, states: dict[int, int] | None) -> EntityMeta:
    attrs = {pk: AttributeMeta(pk, pk, "Uniqueidentifier", "UniqueidentifierType")}
    if states is not None:
        options = [OptionMeta(v, None, default_status=d) for v, d in states.items()]
        attrs["statecode"] = AttributeMeta("statecode", "StateCode", "State", "StateType", options=options)
    return EntityMeta(table, table, table + "s", pk, None, None, pk == "activityid", attrs)


def test_the_inactive_state_of_each_kind_of_table() -> None:
    assert inactive_state(_meta("account", "accountid", {0: 1, 1: 2})) == (1, 2)
    assert inactive_state(_meta("lead", "leadid", {0: 1, 1: 3, 2: 6})) == (2, 6)  # Disqualified
    assert inactive_state(_meta("opportunity", "opportunityid", {0: 1, 1: 3, 2: 4})) == (2, 4)  # Lost
    assert inactive_state(_meta("phonecall", "activityid", {0: 1, 1: 2, 2: 3})) == (2, 3)  # Canceled
    assert inactive_state(_meta("annotation", "annotationid", None)) is None  # no state: deleted instead


class FakeClient:
    """Contacts with a state; a `$batch` part for an id in `refuse` answers 400."""

    batch_request_size = 2
    write_headers: dict[str, str] = {}

    def __init__(self, states: dict[str, int], refuse: set[str]) -> None:
        self.states, self.refuse = states, refuse
        self.batches: list[list[BatchRequest]] = []

    def metadata(self, table: str) -> EntityMeta:
        return _meta("contact", "contactid", {0: 1, 1: 2})

    def query(self, table: str, select: list[str], filter: str) -> list[dict[str, Any]]:
        return [
            {"contactid": rid, "statecode": s, "statuscode": 1 + s}
            for rid, s in self.states.items()
            if rid in filter
        ]

    def query_request(self, table: str, select: list[str], filter: str) -> tuple[str, dict[str, str]]:
        return f"{table}?{filter}", {}

    def read_together(self, reads: list[tuple[str, dict[str, str]]]) -> int:
        self.read_ahead = [url for url, _ in reads]
        return 0

    def drop_read_ahead(self) -> None:
        pass

    def execute_batch(self, items: list[BatchRequest]) -> list[BatchPartResponse | None]:
        self.batches.append(items)
        out: list[BatchPartResponse | None] = []
        for item in items:
            if any(r in item.url for r in self.refuse):
                body = '{"error":{"code":"0x80040203","message":"Record is locked."}}'
                out.append(BatchPartResponse(400, "Bad Request", {}, body))
            else:
                out.append(BatchPartResponse(204, "No Content", {}, ""))
        return out


def test_deactivations_are_ledgered_first_and_a_refusal_is_rejected_with_its_message() -> None:
    con = duckdb.connect(":memory:")
    client = FakeClient({"c1": 0, "c2": 0, "c3": 1, "c4": 0}, refuse={"c2"})
    plan = DeletionPlan(
        gone=[Candidate("contact", rid, f"cont_{rid}") for rid in ("c1", "c2", "c3", "c4", "c5")]
    )
    report = DeletionApplier(client, Ledger(con, "d", kind="delta"), "deactivate", {}).apply(plan)  # type: ignore[arg-type]
    assert (report.deactivated, report.already_inactive, report.already_gone) == (2, 1, 1)
    assert report.failed == ["deactivate contact(c2): Record is locked."]
    assert [[r.url for r in b] for b in client.batches] == [
        ["contacts(c1)", "contacts(c2)"],
        ["contacts(c4)"],
    ]
    assert client.batches[0][0].body == {"statecode": 1, "statuscode": 2}
    assert client.batches[0][0].headers["If-Match"] == "*"
    rows = {
        (rid, action, status): json.loads(image)
        for rid, action, status, image in con.execute(
            "SELECT record_id, action, status, before_image FROM ledger.writes ORDER BY seq"
        ).fetchall()
    }
    assert rows == {
        ("c3", "deactivated", "done"): {},  # already inactive: nothing to undo
        ("c1", "deactivated", "done"): {"statecode": 0, "statuscode": 1},
        ("c2", "deactivated", "rejected"): {"statecode": 0, "statuscode": 1},
        ("c4", "deactivated", "done"): {"statecode": 0, "statuscode": 1},
    }
    assert {e.record_id for e in lg.entries(con, ["d"])} == {"c1", "c3", "c4"}  # what a rollback undoes
    rejected = con.execute("SELECT record_id, operation, code, message FROM ledger.rejected").fetchall()
    assert rejected == [("c2", "deactivate", "0x80040203", "Record is locked.")]


def test_the_states_of_every_table_are_read_together_and_the_writes_sent_together_in_plan_order() -> None:
    class TwoTables(FakeClient):
        batch_request_size = 100

        def metadata(self, table: str) -> EntityMeta:
            return _meta(table, f"{table}id", {0: 1, 1: 2})

        def query(self, table: str, select: list[str], filter: str) -> list[dict[str, Any]]:
            pk = f"{table}id"
            return [{pk: r, "statecode": 0, "statuscode": 1} for r in self.states if r in filter]

    client = TwoTables({"k1": 0, "k2": 0, "p1": 0}, refuse=set())
    plan = DeletionPlan(
        gone=[Candidate("contact", "k1", "cont_1"), Candidate("contact", "k2", "cont_2")]
        + [Candidate("account", "p1", "lead_1")]
    )
    con = duckdb.connect(":memory:")
    report = DeletionApplier(client, Ledger(con, "d", kind="delta"), "deactivate", {}).apply(plan)  # type: ignore[arg-type]
    assert report.deactivated == 3 and report.per_table["account"]["deactivated"] == 1
    assert [u.split("?")[0] for u in client.read_ahead] == ["contact", "account"]
    assert len(client.batches) == 1, "one $batch for both tables"
    assert [r.url.split("(")[0] for r in client.batches[0]] == ["contacts", "contacts", "accounts"]
