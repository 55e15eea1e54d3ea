"""Reconciliation statuses (contract F): never `ok` with rows missing."""

from __future__ import annotations

from migration_assets.audit.reconcile_status import Counts, status, unaccounted


def test_ok_only_when_every_close_object_is_loaded() -> None:
    assert status(Counts(10, 10, 0, 0, 10, 0), None, "rejected_lead.csv") == "ok"
    assert status(Counts(10, 8, 1, 1, 8, 0), None, "f.csv") == "partial (1 rejected, see f.csv)"


def test_rows_missing_are_never_ok() -> None:
    # Staged and loaded agree, but two Close objects vanished before staging.
    counts = Counts(12, 10, 0, 0, 10, 0)
    assert unaccounted(counts) == 2
    assert status(counts, None, "f.csv") == "partial (0 rejected, 2 not accounted for, see f.csv)"
    # Loaded fewer than staged, with nothing rejected by Dataverse.
    assert status(Counts(None, 5, 0, 0, 3, 0), None, "f.csv").startswith(
        "partial (0 rejected, 2 not accounted"
    )
    assert status(Counts(5, 5, 0, 0, 4, 1), None, "f.csv") == "partial (1 rejected, see f.csv)"


def test_halted_names_the_reason_and_wins() -> None:
    why = "staged/custom_activity_x: check target_valid failed: columns not in the target"
    assert status(Counts(6, 0, 6, 0, 0, 0), why, "f.csv") == f"halted ({why})"
    assert status(Counts(6, None, 0, 0, 0, 0), None, "f.csv").startswith("halted (not staged")


def test_records_kept_with_their_previous_values_are_accounted_for_but_never_ok() -> None:
    # 10 Close objects: 8 staged and loaded, 2 already in the target whose new values were refused (kept).
    kept = Counts(10, 8, 0, 2, 8, 0, kept=2)
    assert unaccounted(kept) == 0
    assert status(kept, None, "f.csv") == "partial (2 kept with their previous values, see f.csv)"
    both = Counts(10, 7, 1, 2, 7, 0, kept=2)
    assert status(both, None, "f.csv") == "partial (1 rejected, 2 kept with their previous values, see f.csv)"
