"""A table halted by its blocking check prints as short lines: the step and the check, then one line per
reason (it was one line of some 440 characters)."""

from __future__ import annotations

import dagster as dg
import pytest

from migration_assets.runtime import EXPECTED_HALT, check_reasons, failed_steps, print_job_outcome

# The reasons the staged check gives for the demo's broken custom activity type, joined as it joins them.
REASONS = [
    "columns not in the target nor the schema plan: custom.cf_9mXkq2 (this table is halted)",
    "these are values of fields deleted from the type in Close: set its orphaned_values in "
    "mappings/custom_activities.yaml to drop or column to load it",
    "3 of 4 rows rejected, above the threshold (max_rows=None, max_fraction=0.5)",
]
TABLE = "custom_activity_c2d_onboardingchecklist"


def _run(description: str) -> dg.ExecuteInProcessResult:
    key = dg.AssetKey(["staged", TABLE])

    @dg.asset(key=key)
    def staged() -> int:
        return 1

    @dg.asset(deps=[key], key=["loaded", TABLE])
    def loaded() -> int:
        return 1

    @dg.asset_check(asset=key, name=f"{TABLE}_target_valid", blocking=True)
    def target_valid() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, description=description)

    return dg.materialize([staged, loaded, target_valid], raise_on_error=False)


def test_a_halt_is_one_short_line_per_reason(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run("; ".join(REASONS))
    ((step, message),) = failed_steps(result)
    assert step == f"staged__{TABLE}"  # the asset's step, not `<step>_<check name>` again
    lines = message.strip("\n").splitlines()
    assert lines[0].strip() == f"check staged/{TABLE}: {TABLE}_target_valid failed:"  # as the UI names it
    assert [line.strip().removeprefix("- ") for line in lines[1:]] == REASONS

    # The run failed (as the UI shows it); the demo's expected halt is answered apart, for its fix to follow.
    assert print_job_outcome(result, expected_halts=[TABLE]) == EXPECTED_HALT != 0
    out = capsys.readouterr().out
    assert f"run {result.run_id}: failure: only the halts above" in out, out
    assert f"  halted (expected in the demo) staged__{TABLE}:\n    check staged/{TABLE}: " in out, out
    assert max(len(line) for line in out.splitlines()) < 160, out


def test_a_reason_listing_its_parts_stays_on_one_line() -> None:
    """A reason lists its parts with "; " inside parentheses: split where the check joins its reasons only."""
    listing = (
        "4 of 20 rows cannot be migrated as the source holds them (1 date_created not a date and time; "
        "2 value not a whole number in the Int64 range; 1 value negative amount)"
    )
    assert check_reasons(f"{listing}; correct them in Close and extract again") == [
        listing,
        "correct them in Close and extract again",
    ]
    assert check_reasons("") == check_reasons(None) == ["see the check in `close2d365 ui`"]
