from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from migration_assets.runtime import REPO_ROOT


def test_dagster_yaml_is_a_valid_instance(tmp_path: Path) -> None:
    shutil.copyfile(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        settings = instance.get_concurrency_config()
        assert settings.run_queue_config is not None and settings.run_queue_config.max_concurrent_runs == 1
        assert settings.pool_config.default_pool_limit == 1
        assert instance.telemetry_enabled is False
    finally:
        instance.dispose()
