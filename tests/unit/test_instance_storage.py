"""The instance dagster.yaml selects: Dagster's SQLite storages in Dagster's folders, with one engine per
database file and process instead of one per connection."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

import migration_assets.instance_storage as storage
from migration_assets.runtime import REPO_ROOT


@dg.asset
def first() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 1})


@dg.asset(deps=[first], check_specs=[dg.AssetCheckSpec("positive", asset="second")])
def second() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


JOB = dg.Definitions(assets=[first, second]).resolve_implicit_global_asset_job_def()


def _instance(folder: Path, config: str) -> dg.DagsterInstance:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text(config)
    return dg.DagsterInstance.from_config(str(folder))


@pytest.fixture
def engines_built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Engines built by the kept-engine storages, per database file (the cache starts empty)."""
    built: Counter[str] = Counter()
    real = storage.create_engine

    def counting(conn_string: str, **kwargs: object) -> object:
        built[conn_string.rsplit("/", 1)[-1]] += 1
        return real(conn_string, **kwargs)

    monkeypatch.setattr(storage, "create_engine", counting)
    monkeypatch.setattr(storage, "_engines", type(storage._engines)())
    return built


def test_the_project_instance_keeps_dagsters_storages_and_folders(tmp_path: Path) -> None:
    inst = _instance(tmp_path, (REPO_ROOT / "dagster.yaml").read_text())
    try:
        assert isinstance(inst, storage.MigrationInstance)
        assert isinstance(inst.run_storage, storage.KeptEngineSqliteRunStorage)
        assert isinstance(inst.event_log_storage, storage.KeptEngineSqliteEventLogStorage)
        assert isinstance(inst.schedule_storage, storage.KeptEngineSqliteScheduleStorage)
        assert type(inst.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert JOB.execute_in_process(instance=inst).success
    finally:
        inst.dispose()
    # Dagster's default layout: an instance created before this class keeps its history.
    for path in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        assert (tmp_path / path).exists(), path


def test_runs_of_a_default_instance_are_read_by_the_project_instance_and_the_other_way(
    tmp_path: Path,
) -> None:
    stock = _instance(tmp_path, "telemetry:\n  enabled: false\n")
    try:
        assert type(stock) is dg.DagsterInstance
        earlier = JOB.execute_in_process(instance=stock).run_id
    finally:
        stock.dispose()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    ours = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert ours.get_run_by_id(earlier) is not None
        assert len(ours.all_logs(earlier)) > 5
        later = JOB.execute_in_process(instance=ours).run_id
        materialized = ours.get_latest_materialization_event(dg.AssetKey("first"))
        assert materialized is not None and materialized.run_id == later
    finally:
        ours.dispose()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    again = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert {r.run_id for r in again.get_runs()} == {earlier, later}
        assert len(again.all_logs(later)) > 5
    finally:
        again.dispose()


def test_a_run_builds_one_engine_per_database_not_one_per_event(
    tmp_path: Path, engines_built: Counter[str]
) -> None:
    inst = _instance(tmp_path, (REPO_ROOT / "dagster.yaml").read_text())
    try:
        result = JOB.execute_in_process(instance=inst)
        events = len(inst.all_logs(result.run_id))
        JOB.execute_in_process(instance=inst)
    finally:
        inst.dispose()
    assert events > 15
    # runs.db, schedules.db, index.db and one shard per run: each engine built once, whatever the events.
    assert engines_built["runs.db"] == 1
    assert engines_built["index.db"] == 1
    assert engines_built["schedules.db"] <= 1
    shards = {
        name: n for name, n in engines_built.items() if name not in {"runs.db", "index.db", "schedules.db"}
    }
    assert len(shards) == 2 and set(shards.values()) == {1}, shards


def test_engines_beyond_the_limit_are_let_go_least_recently_used_first(
    tmp_path: Path, engines_built: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MAX_ENGINES", 2)
    urls = [f"sqlite:///{tmp_path}/{name}.db" for name in ("a", "b", "c")]
    a = storage.kept_engine(urls[0])
    storage.kept_engine(urls[1])
    assert storage.kept_engine(urls[0]) is a  # used again: now the most recent
    storage.kept_engine(urls[2])  # lets b go
    assert storage.kept_engine(urls[0]) is a
    storage.kept_engine(urls[1])
    assert engines_built == Counter({"a.db": 1, "b.db": 2, "c.db": 1})


def test_a_table_that_is_missing_is_asked_for_again(tmp_path: Path) -> None:
    inst = _instance(tmp_path, (REPO_ROOT / "dagster.yaml").read_text())
    try:
        events = inst.event_log_storage
        assert isinstance(events, storage.KeptEngineSqliteEventLogStorage)
        assert events.has_table("asset_check_executions")
        assert not events.has_table("c2d_not_a_table")
        with events.index_connection() as conn:
            conn.exec_driver_sql("CREATE TABLE c2d_not_a_table (x INTEGER)")
        assert events.has_table("c2d_not_a_table")
    finally:
        inst.dispose()
