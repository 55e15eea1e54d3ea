"""Deletion planning: records earlier runs loaded whose Close source is gone are planned (children before
parents); rows that only vanished from staging, records already deactivated or rolled back, and tables that
cannot be checked are left alone (reported)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pytest

from migration_assets.load.deletions import (
    LIVE_ACTIONS,
    LoadedTable,
    live_record_map,
    loaded_tables,
    plan_deletions,
)
from migration_assets.load.ledger import Entry, Intent, Ledger, entries
from migration_assets.mapping.config import ObjectMap
from migration_assets.mapping.tables import build_registry

TABLES = [
    LoadedTable("account", "account", "accountid", (("leads", "name"),), by_lead_name=True),
    LoadedTable("contact", "contact", "contactid", (("contacts", "id"),)),
    LoadedTable("lead", "lead", "leadid", (("leads", "id"),)),
    LoadedTable("phonecall", "phonecall", "activityid", (("calls", "id"),)),
    LoadedTable(
        "annotation", "annotation", "annotationid", (("notes", "id"), ("attachments", "activity_id"))
    ),
]


def live_records(entries: Sequence[Entry]) -> dict[tuple[str, str], str | None]:
    """The plan's reading of the ledger, written plainly in Python over the ledger's entries: the oracle
    `live_record_map` (in DuckDB) must equal."""
    last: dict[tuple[str, str], tuple[str, str | None]] = {}
    for e in entries:
        key = (e.table, e.record_id.lower())
        close_id = e.close_id or (last[key][1] if key in last else None)
        last[key] = (e.action, close_id)
    return {k: close_id for k, (action, close_id) in last.items() if action in LIVE_ACTIONS}


def _obj(
    name: str, source: str, table: str, pk: str, depends_on: tuple[str, ...] = (), key: str = "id"
) -> ObjectMap:
    return ObjectMap(name, name, source, table, table + "s", pk, f"{table}:<id>", key, 0, depends_on)


OBJECTS = [
    _obj("account", "leads", "account", "accountid"),
    _obj("contact", "contacts", "contact", "contactid", ("account",)),
    _obj("lead", "leads", "lead", "leadid", ("account", "contact")),
    _obj("call", "calls", "phonecall", "activityid", ("lead", "contact")),
    _obj("note", "notes", "annotation", "annotationid", ("call",)),
    _obj("attachment", "attachments", "annotation", "annotationid", ("call",), key="activity_id"),
]
REGISTRY = build_registry(OBJECTS)


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA staged")
    c.execute("CREATE SCHEMA close")
    for t in TABLES:
        c.execute(f"CREATE TABLE staged.{t.staged} ({t.primary_key} VARCHAR, _close_id VARCHAR)")
    c.execute("CREATE TABLE close.leads (id VARCHAR, name VARCHAR)")
    for source in ("contacts", "calls", "notes"):
        c.execute(f"CREATE TABLE close.{source} (id VARCHAR)")
    c.execute("CREATE TABLE close.attachments (activity_id VARCHAR)")
    return c


def _stage(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[str, str]]) -> None:
    t = next(x for x in TABLES if x.table == table)
    for rid, close_id in rows:
        con.execute(f"INSERT INTO staged.{t.staged} VALUES (?, ?)", [rid, close_id])


LEAD_NAMES = {"lead_1": "  ACME  Corp", "lead_2": "Beta"}  # accounts: "acme corp", "beta"


def _close(con: duckdb.DuckDBPyConnection, source: str, ids: list[str]) -> None:
    column = "activity_id" if source == "attachments" else "id"
    for i in ids:
        if source == "leads":
            con.execute("INSERT INTO close.leads VALUES (?, ?)", [i, LEAD_NAMES.get(i)])
        else:
            con.execute(f"INSERT INTO close.{source} ({column}) VALUES (?)", [i])


def _migrated(con: duckdb.DuckDBPyConnection) -> None:
    Ledger(con, "run-1").record_done(
        [
            Intent("account", "acc-1", "acme corp", "created"),
            Intent("account", "acc-2", "beta", "created"),
            Intent("lead", "LEAD-1", "lead_1", "created"),
            Intent("lead", "lead-2", "lead_2", "created"),
            Intent("contact", "con-1", "cont_1", "created"),
            Intent("contact", "con-2", "cont_2", "created"),
            Intent("phonecall", "call-1", "acti_1", "created"),
            Intent("annotation", "ann-1", "acti_n1", "created"),
            Intent("annotation", "ann-2", "acti_1", "created"),  # a recording of call-1: keyed on the call
            Intent("opportunityclose", "oc-1", "oppo_1", "created"),  # a side effect: never planned
        ]
    )


def test_records_whose_source_is_gone_are_planned_children_first(con: duckdb.DuckDBPyConnection) -> None:
    _migrated(con)
    # lead_2 was merged into lead_1 (Close deleted it); its contact cont_2 moved; the call and its recording
    # and the note were deleted in Close.
    _close(con, "leads", ["lead_1"])
    _close(con, "contacts", ["cont_1", "cont_2"])
    _stage(con, "account", [("acc-1", "acme corp")])
    _stage(con, "lead", [("lead-1", "lead_1")])
    _stage(con, "contact", [("con-1", "cont_1"), ("con-2", "cont_2")])
    plan = plan_deletions(con, TABLES, REGISTRY)
    assert [(c.table, c.record_id) for c in plan.gone] == [
        ("annotation", "ann-1"),
        ("annotation", "ann-2"),
        ("phonecall", "call-1"),
        ("lead", "lead-2"),
        ("account", "acc-2"),
    ]
    assert plan.kept == [] and plan.skipped == []
    assert plan.counts()["annotation"] == {"gone": 2, "kept": 0}


def test_rows_that_only_vanished_from_staging_are_kept_and_reported(con: duckdb.DuckDBPyConnection) -> None:
    _migrated(con)
    _close(con, "leads", ["lead_1", "lead_2"])
    _close(con, "contacts", ["cont_1", "cont_2"])
    _close(con, "calls", ["acti_1"])
    _close(con, "notes", ["acti_n1"])
    _close(con, "attachments", ["acti_1"])
    _stage(con, "account", [("acc-1", "acme corp")])  # "Beta" still names a lead: rejected by staging
    _stage(con, "lead", [("lead-1", "lead_1"), ("lead-2", "lead_2")])
    _stage(con, "contact", [("con-1", "cont_1")])  # cont_2 now rejected by staging
    _stage(con, "phonecall", [("call-1", "acti_1")])
    _stage(con, "annotation", [("ann-1", "acti_n1"), ("ann-2", "acti_1")])
    plan = plan_deletions(con, TABLES, REGISTRY)
    assert plan.gone == []
    assert [(c.record_id, "still exists in Close" in why) for c, why in plan.kept] == [
        ("acc-2", True),
        ("con-2", True),
    ]


def test_deactivated_and_rolled_back_records_are_not_planned_again(con: duckdb.DuckDBPyConnection) -> None:
    _migrated(con)
    Ledger(con, "delta-1", kind="delta").record_done(
        [Intent("lead", "lead-2", "lead_2", "deactivated", {"statecode": 0, "statuscode": 1})]
    )
    undone = Ledger(con, "delta-2", kind="delta")
    seqs = undone.record_done([Intent("account", "acc-2", None, "deleted", {"name": "B"})])
    Ledger(con, "rb", kind="rollback").mark_rolled_back([("delta-2", seqs[0])])
    _close(con, "leads", ["lead_1"])
    _close(con, "contacts", ["cont_1", "cont_2"])
    _close(con, "calls", ["acti_1"])
    _close(con, "notes", ["acti_n1"])
    _close(con, "attachments", ["acti_1"])
    for t in ("phonecall", "annotation", "contact"):
        con.execute(f"DROP TABLE staged.{t}")
    _stage(con, "account", [("acc-1", "acme corp")])
    _stage(con, "lead", [("lead-1", "lead_1")])
    plan = plan_deletions(con, TABLES, REGISTRY)
    # acc-2's deletion was rolled back: planned again, with the Close id of its earlier ledger row.
    assert [(c.table, c.record_id, c.close_id) for c in plan.gone] == [("account", "acc-2", "beta")]
    assert sorted(plan.skipped) == [
        "annotation: staged.annotation does not exist",
        "contact: staged.contact does not exist",
        "phonecall: staged.phonecall does not exist",
    ]
    live = live_records(entries(con))
    assert ("lead", "lead-2") not in live and live[("lead", "lead-1")] == "lead_1"
    # The plan's own reading of the ledger (in DuckDB) is the same, in the same order.
    assert list(live_record_map(con).items()) == list(live.items())


def test_a_table_whose_sources_were_never_extracted_is_not_checked(con: duckdb.DuckDBPyConnection) -> None:
    _migrated(con)
    con.execute("DROP TABLE close.calls")
    _close(con, "leads", ["lead_1", "lead_2"])
    plan = plan_deletions(con, [t for t in TABLES if t.table == "phonecall"], REGISTRY)
    assert plan.gone == [] and plan.skipped == ["phonecall: close.calls not extracted"]


def test_loaded_tables_from_the_registry_and_custom_activity_tables() -> None:
    tables = loaded_tables(REGISTRY, OBJECTS, ["c2d_demo"])
    by = {t.table: t for t in tables}
    assert by["annotation"].sources == (("notes", "id"), ("attachments", "activity_id"))
    # An account's Close id is its normalised lead name: its source is a lead bearing that name.
    assert by["account"].sources == (("leads", "name"),) and by["account"].by_lead_name
    assert not by["contact"].by_lead_name
    assert by["c2d_demo"].staged == "custom_activity_c2d_demo" and by["c2d_demo"].primary_key == "activityid"


def test_delete_mode_takes_the_children_that_still_bind_to_a_deleted_record_first(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A call deleted in Close whose note still exists: Dataverse would delete the note with the call
    (outside the ledger, so a rollback could not restore it), and a fresh migration would not load it. The
    plan deletes the note first; a note bound to a record that stays is left alone."""
    from migration_assets.load.deletions import add_cascaded_children

    con.execute('ALTER TABLE staged.annotation ADD COLUMN "objectid_phonecall@odata.bind" VARCHAR')
    Ledger(con, "run-1").record_done(
        [
            Intent("phonecall", "call-1", "acti_call1", "created"),
            Intent("phonecall", "call-2", "acti_call2", "created"),
            Intent("annotation", "note-1", "acti_note1", "created"),
            Intent("annotation", "note-2", "acti_note2", "created"),
        ]
    )
    _stage(con, "phonecall", [("call-2", "acti_call2")])  # call-1 was deleted in Close
    _close(con, "calls", ["acti_call2"])
    _close(con, "notes", ["acti_note1", "acti_note2"])
    con.execute(
        "INSERT INTO staged.annotation VALUES ('note-1', 'acti_note1', '/phonecalls(CALL-1)'), "
        "('note-2', 'acti_note2', '/phonecalls(call-2)')"
    )
    # note-3 is no longer staged (staging now rejects it: its call is gone) but was loaded bound to call-1.
    Ledger(con, "run-1").record_done([Intent("annotation", "note-3", "acti_note3", "created")])
    _close(con, "notes", ["acti_note3"])
    con.execute("CREATE SCHEMA loaded")
    con.execute(
        "CREATE TABLE loaded._snapshot_annotation AS SELECT * FROM staged.annotation UNION ALL "
        "SELECT 'note-3', 'acti_note3', '/phonecalls(call-1)'"
    )
    # note-4: rejected by staging because its call is gone (the rejection keeps the bind).
    Ledger(con, "run-1").record_done([Intent("annotation", "note-4", "acti_note4", "created")])
    _close(con, "notes", ["acti_note4"])
    con.execute(
        "CREATE TABLE staged.annotation_rejected AS SELECT 'acti_note4' AS _close_id, 'note-4' AS annotationid, "
        "'objectid_phonecall@odata.bind' AS \"column\", '/phonecalls(call-1)' AS value"
    )
    plan = plan_deletions(con, TABLES, REGISTRY)
    assert [(c.table, c.record_id) for c in plan.gone] == [("phonecall", "call-1")]
    assert [c.record_id for c, _ in plan.kept] == ["note-3", "note-4"]  # their Close notes still exist
    assert add_cascaded_children(con, plan, TABLES, REGISTRY) == 3
    assert plan.kept == []  # deleted with their call now, no longer only reported
    assert [(c.table, c.record_id) for c in plan.gone] == [
        ("annotation", "note-1"),
        ("annotation", "note-3"),
        ("annotation", "note-4"),
        ("phonecall", "call-1"),
    ]
