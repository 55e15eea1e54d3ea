"""Ledger: intents are committed before the batch is sent; a killed run's pending rows survive a reopen."""

from __future__ import annotations

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
