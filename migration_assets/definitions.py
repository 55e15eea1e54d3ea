"""The one Definitions object: every asset and check under migration_assets.defs, the jobs, the resources."""

from __future__ import annotations

import dagster as dg

from migration_assets import defs as defs_package
from migration_assets.defs.close_changes_sensor import close_changes_sensor
from migration_assets.defs.jobs import all_jobs
from migration_assets.resources import build_resources
from migration_assets.step_threads import step_threads_executor


def build_definitions() -> dg.Definitions:
    """Build the Definitions; the CLI rebuilds them after pointing the environment at its endpoints."""
    return dg.Definitions(
        assets=dg.load_assets_from_package_module(defs_package),
        asset_checks=dg.load_asset_checks_from_package_module(defs_package),
        jobs=all_jobs(),
        sensors=[close_changes_sensor],
        resources=build_resources(),
        # One process (DuckDB allows a single writing process), ready steps in threads (step_threads.py).
        executor=step_threads_executor,
    )


defs = build_definitions()
