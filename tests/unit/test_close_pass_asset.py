"""`close_pass_asset`: one subsettable multi_asset per pass over Close. The step reads exactly the
selected tables (what it opens its `ClosePass` with, so an export is split only for them), yields one
materialization per selected table, and leaves delta tables out of the pass (they read the API only)."""

# No `from __future__ import annotations`: Dagster reads the asset functions' annotations at definition time.

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from migration_assets.defs.close import _common
from migration_assets.defs.close._common import close_pass_asset
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource

PASS = close_pass_asset(
    "source_tables", {"tasks": "Tasks.", "leads": "Leads.", "notes": "Notes.", "users": "Users."}
)
OPENED: list[list[str]] = []


class FakePass:
    """What the step uses of `ClosePass`: records the tables it was opened with, reads nothing."""

    def __init__(self, close: CloseResource, tables: list[str], name: str) -> None:
        OPENED.append(list(tables))

    def __enter__(self) -> "FakePass":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def pages(self, table: str) -> Iterator[list[dict[str, Any]]]:
        yield []

    def quarantined_lines(self) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(_common, "ClosePass", FakePass)
    OPENED.clear()
    return {
        "close": CloseResource(api_key="api_test", export_cache_dir=str(tmp_path / "cache")),
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")),
    }


def materialized(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.asset_key.path[-1] for e in result.get_asset_materialization_events()]  # type: ignore[union-attr]


def test_whole_pass_reads_every_table_in_table_order(resources: dict[str, Any]) -> None:
    result = dg.materialize([PASS], resources=resources)
    assert result.success
    # Configuration objects first (read while an export builds), tasks after the other lead tables.
    assert OPENED == [["users", "leads", "notes", "tasks"]]
    assert materialized(result) == ["users", "leads", "notes", "tasks"]
    # Each table carries its data version: Dagster's staleness compares them (issue 13).
    for event in result.get_asset_materialization_events():
        assert event.materialization.tags and event.materialization.tags.get("dagster/data_version")


def test_selection_limits_the_tables(resources: dict[str, Any]) -> None:
    result = dg.materialize([PASS], resources=resources, selection=["close/leads", "close/tasks"])
    assert result.success
    assert OPENED == [["leads", "tasks"]]
    assert materialized(result) == ["leads", "tasks"]


def test_delta_tables_are_left_out_of_the_pass(
    resources: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dg.materialize([PASS], resources=resources).success  # the tables exist: a delta applies
    OPENED.clear()
    config = {"mode": "delta", "since": "2024-01-01T00:00:00+00:00"}
    run_config = {"ops": {"close__source_tables": {"config": config}}}
    calls: list[str] = []
    read_ahead: list[list[str]] = []

    class FakeReadAhead:
        """Records the tables whose Close reads run ahead of their writes; reads nothing."""

        def __init__(self, client: Any, reads: Any, changes: Any) -> None:
            read_ahead.append([r.table for r in reads])

        def __enter__(self) -> "FakeReadAhead":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def pages(self, table: str) -> Iterator[list[dict[str, Any]]]:
            return iter(())

    def fake_delta(client: Any, warehouse: Any, spec: Any, *args: Any) -> dict[str, int]:
        calls.append(spec.name)
        return {"rows_read": 0, "duplicates_dropped": 0, "delta_rows": 0, "rows_removed": 0}

    monkeypatch.setattr(_common, "apply_delta", fake_delta)
    monkeypatch.setattr(_common, "DeltaReadAhead", FakeReadAhead)
    result = dg.materialize([PASS], resources=resources, run_config=run_config)
    assert result.success
    assert OPENED == [["users"]]  # no delta filter: re-read in full (the lead tables need no export)
    assert calls == ["leads", "notes", "tasks"]
    assert read_ahead == [["leads", "notes", "tasks"]]  # the deltas' reads, in the order they are written
    assert materialized(result) == ["leads", "notes", "tasks", "users"]  # deltas first
    modes = {
        e.asset_key.path[-1]: e.materialization.metadata["mode"].value  # type: ignore[union-attr]
        for e in result.get_asset_materialization_events()
    }
    assert modes == {"leads": "delta", "notes": "delta", "tasks": "delta", "users": "full"}


def test_an_unknown_mode_fails_the_step(resources: dict[str, Any]) -> None:
    run_config = {"ops": {"close__source_tables": {"config": {"mode": "everything"}}}}
    result = dg.materialize([PASS], resources=resources, run_config=run_config, raise_on_error=False)
    assert not result.success
    assert OPENED == []


def test_a_table_that_fails_leaves_the_others_extracted_and_fails_the_step_with_its_error(
    resources: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _common.extract_table

    def extract(context: Any, close: Any, warehouse: Any, table: str, *rest: Any) -> Any:
        if table == "leads":
            raise RuntimeError("Close answered 500 five times for /lead/")
        return real(context, close, warehouse, table, *rest)

    monkeypatch.setattr(_common, "extract_table", extract)
    result = dg.materialize([PASS], resources=resources, raise_on_error=False)
    assert not result.success
    assert materialized(result) == ["users", "notes", "tasks"]
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "Close answered 500 five times for /lead/" in str(failure.event_specific_data.error)  # type: ignore[union-attr]


@dg.asset(key=["staged", "from_users"], deps=[["close", "users"]])
def from_users() -> None:
    return None


@dg.asset(key=["staged", "from_notes"], deps=[["close", "notes"]])
def from_notes() -> None:
    return None


def test_a_change_in_close_makes_exactly_its_downstream_assets_unsynced(
    resources: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data versions drive Dagster's staleness (what the UI shows as "unsynced"): after a second pass
    in which only the notes changed in Close, what reads the notes is stale and what reads the users is
    not (without data versions, every new materialization would make everything downstream stale)."""
    # Dagster's own reading of staleness, as the UI computes it (a private module: no public API yet).
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    records = {
        "users": [{"id": "user_1", "email": "ann@example.com", "date_updated": "2026-01-01T00:00:00Z"}],
        "notes": [{"id": "acti_1", "note": "first", "date_updated": "2026-01-01T00:00:00Z"}],
    }
    monkeypatch.setattr(FakePass, "pages", lambda self, table: iter([records.get(table, [])]))
    instance = dg.DagsterInstance.ephemeral()
    assets = [PASS, from_users, from_notes]
    assert dg.materialize(assets, resources=resources, instance=instance).success

    def status(key: str) -> StaleStatus:
        return get_stale_status_resolver(instance, assets).get_status(dg.AssetKey(key.split("/")))

    assert status("staged/from_users") == status("staged/from_notes") == StaleStatus.FRESH
    records["notes"] = [{"id": "acti_1", "note": "edited", "date_updated": "2026-02-01T00:00:00Z"}]
    close_only = ["close/users", "close/leads", "close/notes", "close/tasks"]
    assert dg.materialize(assets, resources=resources, instance=instance, selection=close_only).success
    assert status("staged/from_notes") == StaleStatus.STALE
    assert status("staged/from_users") == StaleStatus.FRESH
