"""The code location the Dagster UI loads (workspace.yaml) validates and offers the jobs a user launches."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from migration_assets.runtime import REPO_ROOT


def test_workspace_loads_in_dagster_and_offers_the_jobs(tmp_path: Path) -> None:
    shutil.copyfile(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {"PATH": str(Path(sys.executable).parent), "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO_ROOT / "workspace.yaml")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful for code location close2d365" in done.stdout + done.stderr

    from migration_assets.definitions import defs

    names = {job.name for job in defs.get_repository_def().get_all_jobs()}
    assert {"extract", "dry_run", "migrate", "rollback"} <= names
