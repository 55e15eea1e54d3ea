"""Rollback planning from ledger rows: deletes children first, restores the earliest before-image."""

from __future__ import annotations

from datetime import UTC, datetime

from migration_assets.load.ledger import Entry
from migration_assets.load.rollback_plan import plan_rollback, summarize

T = datetime(2026, 1, 1, tzinfo=UTC)


def e(
    run: str, seq: int, table: str, rid: str, action: str, before: dict | None = None, status: str = "done"
) -> Entry:
    return Entry(run, seq, table, rid, None, action, status, before, T, None)


def test_created_records_are_deleted_children_first() -> None:
    steps = plan_rollback(
        [
            e("r", 1, "account", "a1", "created"),
            e("r", 2, "contact", "c1", "created"),
            e("r", 3, "opportunity", "o1", "created"),
            e("r", 4, "phonecall", "p1", "created", status="pending"),  # in flight when the run died
            e("r", 5, "annotation", "n1", "created"),
            e("r", 6, "c2d_demofeedback", "x1", "created"),
        ]
    )
    assert [(s.kind, s.table) for s in steps] == [
        ("delete", "annotation"),
        ("delete", "c2d_demofeedback"),
        ("delete", "phonecall"),
        ("delete", "opportunity"),
        ("delete", "contact"),
        ("delete", "account"),
    ]


def test_updates_restore_the_earliest_before_image_before_any_delete() -> None:
    steps = plan_rollback(
        [
            e("r1", 1, "account", "a0", "updated", {"name": "Original", "telephone1": None}),
            e("r1", 2, "contact", "c1", "created"),
            e("r2", 1, "account", "a0", "updated", {"name": "From r1", "statecode": 0, "statuscode": 1}),
            e("r2", 2, "contact", "c1", "updated", {"firstname": "x"}),
        ]
    )
    assert [(s.kind, s.table, s.record_id) for s in steps] == [
        ("restore", "account", "a0"),
        ("delete", "contact", "c1"),
    ]
    restore = steps[0]
    assert restore.columns == {"name": "Original", "telephone1": None}
    assert restore.state == {"statecode": 0, "statuscode": 1}
    assert restore.sources == (("r1", 1), ("r2", 1))
    assert steps[1].sources == (
        ("r1", 2),
        ("r2", 2),
    )  # the update of a created record is undone by the delete
    assert summarize(steps) == {
        "account": {"delete": 0, "restore": 1},
        "contact": {"delete": 1, "restore": 0},
    }


def test_rejected_and_already_rolled_back_rows_are_ignored() -> None:
    done = Entry("r", 2, "account", "a2", None, "created", "done", None, T, "rollback-1")
    steps = plan_rollback([e("r", 1, "account", "a1", "created", status="rejected"), done])
    assert steps == []


def test_ids_are_compared_case_insensitively() -> None:
    steps = plan_rollback(
        [e("r", 1, "account", "ABC", "created"), e("r", 2, "account", "abc", "updated", {"name": "n"})]
    )
    assert len(steps) == 1 and steps[0].kind == "delete" and steps[0].record_id == "abc"


def test_records_a_delta_deleted_are_recreated_parents_first_before_restores_and_deletes() -> None:
    steps = plan_rollback(
        [
            e("m", 1, "contact", "c1", "updated", {"firstname": "Before m"}),
            e("d", 1, "contact", "c9", "created"),
            e("d", 2, "contact", "c2", "updated", {"parentcustomerid_account@odata.bind": "/accounts(a1)"}),
            e("d", 3, "annotation", "n1", "deleted", {"annotationid": "n1", "documentbody": "QUJD"}),
            e("d", 4, "account", "a1", "deleted", {"accountid": "a1", "name": "Gone", "statecode": 0}),
            e(
                "d",
                5,
                "contact",
                "c1",
                "deleted",
                {"contactid": "c1", "firstname": "Before d", "lastname": "L"},
            ),
        ]
    )
    assert [(s.kind, s.table, s.record_id) for s in steps] == [
        ("recreate", "account", "a1"),
        ("recreate", "contact", "c1"),
        ("recreate", "annotation", "n1"),
        ("restore", "contact", "c2"),
        ("delete", "contact", "c9"),
    ]
    account, contact = steps[0], steps[1]
    assert account.columns == {"accountid": "a1", "name": "Gone"} and account.state == {"statecode": 0}
    # An earlier update's before-image wins over the deletion's image, column by column.
    assert contact.columns == {"contactid": "c1", "firstname": "Before m", "lastname": "L"}
    assert contact.sources == (("m", 1), ("d", 5))
    assert summarize(steps)["account"] == {"delete": 0, "restore": 0, "recreate": 1}


def test_a_deactivation_is_undone_by_restoring_the_state_and_a_deleted_created_record_stays_deleted() -> None:
    steps = plan_rollback(
        [
            e("m", 1, "lead", "l1", "created"),
            e("d", 1, "lead", "l1", "deleted", {"leadid": "l1", "subject": "x"}),
            e("d", 2, "lead", "l2", "deactivated", {"statecode": 0, "statuscode": 1}),
            e("d", 3, "opportunity", "o1", "deactivated", {}),  # was already lost: nothing to undo
        ]
    )
    assert [(s.kind, s.record_id, s.values) for s in steps] == [
        ("restore", "l2", {"statecode": 0, "statuscode": 1}),
        ("delete", "l1", {}),
        ("restore", "o1", {}),
    ]
