"""Ledger: intents are committed before the batch is sent; a killed run's pending rows survive a reopen."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from migration_assets.load import ledger as lg
from migration_assets.load.ledger import Intent, Ledger, LedgerError, Rejection


def test_pending_intents_survive_a_crash_before_the_outcome(tmp_path: Path) -> None:
    path = str(tmp_path / "w.duckdb")
    con = duckdb.connect(path)
    led = Ledger(con, "run-1")
    seqs = led.begin(
        [
            Intent("account", "AAA", "acme", "created"),
            Intent("account", "bbb", "beta", "updated", {"name": "Old", "statecode": 0}),
        ]
    )
    assert seqs == [1, 2]
    con.close()  # the process dies here: the outcome is never written

    con = duckdb.connect(path)
    rows = lg.entries(con, ["run-1"])
    assert [(e.record_id, e.action, e.status) for e in rows] == [
        ("aaa", "created", "pending"),
        ("bbb", "updated", "pending"),
    ]
    assert rows[1].before_image == {"name": "Old", "statecode": 0}
    # Re-opening the same run continues its sequence instead of reusing numbers.
    led = Ledger(con, "run-1")
    assert led.begin([Intent("contact", "ccc", "cont_1", "created")]) == [3]


def test_finish_marks_done_and_rejected_with_the_server_message(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    led = Ledger(con, "run-2")
    s = led.begin([Intent("task", "t1", "task_1", "created"), Intent("task", "t2", "task_2", "created")])
    led.finish([s[0]], [(s[1], Rejection("task", "t2", "task_2", "create", 400, "0x80044331", "too long"))])
    statuses = con.execute("SELECT record_id, status FROM ledger.writes ORDER BY seq").fetchall()
    assert statuses == [("t1", "done"), ("t2", "rejected")]
    assert con.execute("SELECT message, code FROM ledger.rejected").fetchall() == [("too long", "0x80044331")]
    assert led.rejected_count("task") == 1
    # Rejected rows are not part of what a rollback undoes.
    assert [e.record_id for e in lg.entries(con, ["run-2"])] == ["t1"]


def test_entries_filter_runs_kinds_and_rolled_back(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    a = Ledger(con, "a")
    a.finish(a.begin([Intent("account", "x", None, "created")]))
    b = Ledger(con, "b")
    b.finish(b.begin([Intent("account", "y", None, "created")]))
    rb = Ledger(con, "rb", kind="rollback")
    rb.record_done([Intent("account", "y", None, "deleted")])
    rb.mark_rolled_back([("b", 1)])
    assert [e.record_id for e in lg.entries(con)] == ["x"]
    assert [e.record_id for e in lg.entries(con, include_rolled_back=True)] == ["x", "y"]
    assert lg.run_ids(con) == ["a", "b"]
    assert lg.run_exists(con, "rb") and not lg.run_exists(con, "zz")


def test_bad_action_and_missing_run_id_are_refused(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(LedgerError, match="run id"):
        Ledger(con, "")
    with pytest.raises(LedgerError, match="unknown ledger action"):
        Ledger(con, "r").begin([Intent("account", "x", None, "merged")])


def test_two_steps_of_one_run_writing_at_once_never_share_a_sequence_number(tmp_path: Path) -> None:
    """Each step of a run opens its own ledger on its own connection, possibly before the other wrote: their
    numbers interleave but never repeat, and each step's outcome touches only its own rows."""
    path = str(tmp_path / "w.duckdb")
    first_con = duckdb.connect(path)
    second_con = first_con.cursor()  # another connection to the same database, as a second step opens
    first, second = Ledger(first_con, "run-9"), Ledger(second_con, "run-9")
    a = first.begin([Intent("lead", "l1", "lead_1", "created"), Intent("lead", "l2", "lead_2", "created")])
    b = second.begin([Intent("annotation", "n1", "note_1", "created")])
    c = first.begin([Intent("lead", "l3", "lead_3", "created")])
    assert a == [1, 2] and b == [3] and c == [4]
    second.finish(b, [])
    first.finish(a + c, [])
    rows = first_con.execute("SELECT seq, record_id, status FROM ledger.writes ORDER BY seq").fetchall()
    assert rows == [(1, "l1", "done"), (2, "l2", "done"), (3, "n1", "done"), (4, "l3", "done")]
    assert first_con.execute("SELECT count(*) FROM ledger.runs").fetchall() == [(1,)]


def test_two_schema_steps_of_one_run_never_share_a_component_number(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    tables, columns = lg.SchemaLedger(con, "run-5"), lg.SchemaLedger(con.cursor(), "run-5")
    t = tables.begin("table", "c2d_visit", "c2d_visit")
    c = columns.begin("column", "lead", "c2d_closeid")
    assert t != c
    tables.done(t, "AAA")
    columns.rejected(c)
    rows = con.execute("SELECT seq, name, status FROM ledger.schema_components ORDER BY seq").fetchall()
    assert rows == [(t, "c2d_visit", "done"), (c, "c2d_closeid", "rejected")]


def test_steps_of_one_run_that_end_at_once_both_close_the_run_row(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    Ledger(con, "run-7")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def step(table: str) -> None:
        led = Ledger(con.cursor(), "run-7")  # each step has its own connection
        start.wait(timeout=10)
        try:
            for _ in range(40):
                led.close_run("loaded", f"last table: {table}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=step, args=(t,)) for t in ("task", "appointment")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert con.execute("SELECT status FROM ledger.runs WHERE run_id = 'run-7'").fetchall() == [("loaded",)]
