"""`run_close_tables`: which close tables a run will materialize in this process (what the first
asset may start ahead for the later ones)."""

# No `from __future__ import annotations`: Dagster reads the asset functions' annotations at definition time.

from types import SimpleNamespace
from typing import Any

import dagster as dg

from migration_assets.defs.close._common import CloseExtractConfig, run_close_tables

SEEN: dict[str, list[str]] = {}


def _asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(key=["close", table])
    def _a(context: dg.AssetExecutionContext, config: CloseExtractConfig) -> None:
        SEEN[table] = run_close_tables(context)

    return _a


ASSETS = [_asset(t) for t in ("users", "leads", "tasks")]


@dg.asset(key=["staged", "x"])
def other() -> None:
    return None


def run(**kw: Any) -> dict[str, list[str]]:
    SEEN.clear()
    assert dg.materialize([*ASSETS, other], **kw).success
    return dict(SEEN)


def test_whole_run_lists_every_close_table() -> None:
    seen = run()
    assert set(seen) == {"users", "leads", "tasks"}
    assert all(sorted(v) == ["leads", "tasks", "users"] for v in seen.values())


def test_selection_limits_the_tables() -> None:
    seen = run(selection=["close/users", "close/leads"])
    assert set(seen) == {"users", "leads"}
    assert all(sorted(v) == ["leads", "users"] for v in seen.values())


def test_delta_tables_are_left_out() -> None:
    config = {"ops": {"close__leads": {"config": {"mode": "delta", "since": "2024-01-01T00:00:00+00:00"}}}}
    seen = run(run_config=config)
    assert all(sorted(v) == ["tasks", "users"] for v in seen.values())


def test_nothing_is_shared_when_steps_run_in_separate_processes() -> None:
    context = SimpleNamespace(
        job_def=SimpleNamespace(
            executor_def=dg.multiprocess_executor,
            asset_layer=SimpleNamespace(selected_asset_keys={dg.AssetKey(["close", "leads"])}),
        ),
        run=SimpleNamespace(step_keys_to_execute=None, run_config={}),
    )
    assert run_close_tables(context) == []  # type: ignore[arg-type]
    context.job_def.executor_def = dg.in_process_executor
    assert run_close_tables(context) == ["leads"]  # type: ignore[arg-type]
