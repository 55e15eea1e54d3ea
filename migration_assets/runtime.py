"""Running jobs from the command line on the same Dagster instance the UI shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from migration_assets.resources.warehouse import default_home

REPO_ROOT = Path(__file__).resolve().parents[1]


def dagster_home() -> Path:
    """The instance folder ($DAGSTER_HOME, else $CLOSE2D365_HOME/dagster_home), with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_home() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if not config.exists() and source.exists():
        shutil.copyfile(source, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def instance() -> dg.DagsterInstance:
    dagster_home()
    return dg.DagsterInstance.get()


def run_job(
    job_name: str, *, tags: dict[str, str] | None = None, log_level: str = "WARNING"
) -> dg.ExecuteInProcessResult:
    """Execute a job of the one Definitions in this process, recorded on the shared instance.

    Resources resolve their EnvVars when the run starts, so callers set the environment first.
    """
    from migration_assets.definitions import build_definitions

    job = build_definitions().resolve_job_def(job_name)
    # The console logger would print every Dagster event; the CLI prints its own summary and the full event
    # log stays on the instance for the UI.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return job.execute_in_process(instance=instance(), tags=tags, run_config=run_config, raise_on_error=False)
