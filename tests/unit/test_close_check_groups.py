"""The checks of each close/* table run as one step (issue 13: a delta pays one Dagster step per table, not
per check) and keep what each check was on its own: its key, blocking flag and dependencies, a failed
blocking check halts only what is downstream of its own table, and a selection of one check runs only it."""

from __future__ import annotations

import dagster as dg

from migration_assets.defs.close.checks import _Check, close_table_checks, table_checks

# Every close table check: (table, check, blocking), as they were declared one check per step.
BLOCKING_CHECKS = {"records_readable", "lead_id_references_lead", "activities_present"}


def test_one_step_per_table_holds_every_check_of_the_table() -> None:
    keys = [(d.node_def.name, k) for d in close_table_checks for k in d.check_keys]
    assert len(keys) == 42
    for step, key in keys:
        assert step == f"close__{key.asset_key.path[-1]}_checks"
    specs = {(s.asset_key.path[-1], s.name): s for d in close_table_checks for s in d.check_specs}
    assert {n for (_, n), s in specs.items() if s.blocking} == BLOCKING_CHECKS
    assert not specs[("calls", "contact_id_references_contact")].blocking
    present = {d.asset_key for d in specs[("calls", "activities_present")].additional_deps}
    assert {dg.AssetKey(["close", "leads"]), dg.AssetKey(["close", "emails"])} <= present


def _check(table: str, name: str, passed: bool, blocking: bool = True) -> _Check:
    def evaluate(context: dg.AssetCheckExecutionContext, warehouse: object) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR)

    return _Check(dg.AssetCheckSpec(name, asset=dg.AssetKey(["close", table]), blocking=blocking), evaluate)


def _graph() -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    @dg.asset(key=["close", "good"])
    def good() -> None: ...

    @dg.asset(key=["close", "bad"])
    def bad() -> None: ...

    @dg.asset(key=["staged", "from_good"], deps=[good])
    def from_good() -> None: ...

    @dg.asset(key=["staged", "from_bad"], deps=[bad])
    def from_bad() -> None: ...

    checks = [
        table_checks(
            "good", [_check("good", "records_readable", True), _check("good", "refs", False, False)]
        ),
        table_checks("bad", [_check("bad", "records_readable", False), _check("bad", "refs", True)]),
    ]
    return [good, bad, from_good, from_bad], checks


def test_a_failed_blocking_check_halts_only_its_tables_downstream() -> None:
    assets, checks = _graph()
    result = dg.materialize([*assets, *checks], resources={"warehouse": None}, raise_on_error=False)
    evaluated = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert evaluated == {
        ("good", "records_readable"): True,
        ("good", "refs"): False,  # not blocking: nothing halts
        ("bad", "records_readable"): False,
        ("bad", "refs"): True,  # evaluated in the same step all the same
    }
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "staged/from_good" in materialized
    assert "staged/from_bad" not in materialized


def test_a_selected_check_runs_alone() -> None:
    assets, checks = _graph()
    selection = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey(["close", "bad"]), "refs"))
    result = dg.materialize(
        [*assets, *checks], resources={"warehouse": None}, selection=selection, raise_on_error=False
    )
    evaluated = [(e.asset_key.path[-1], e.check_name) for e in result.get_asset_check_evaluations()]
    assert evaluated == [("bad", "refs")]
