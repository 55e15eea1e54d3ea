"""The migration graph materialized in this process with explicit resources, and the user's flow up to a
run scripted: for tests and benchmarks (the product runs jobs through `migration_assets.runtime`).

Also a command for tests that need the graph in a process of its own (to kill it from outside):

    python tests/run_graph.py --warehouse PATH --groups schema,loaded

materializes those groups with the resources the Definitions build from the environment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the package and emulators/ live at the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from migration_assets.defs.jobs import MIGRATE_SELECTION  # noqa: E402
from migration_assets.demo import copy_defaults  # noqa: E402
from migration_assets.mapping.config import DEFAULT_ROOT  # noqa: E402
from migration_assets.resources.warehouse import WarehouseResource  # noqa: E402


def _all_defs() -> list[Any]:
    from migration_assets import defs as defs_package

    return [
        *dg.load_assets_from_package_module(defs_package),
        *dg.load_asset_checks_from_package_module(defs_package),
    ]


def materialize_migration(
    resources: Mapping[str, Any],
    selection: dg.AssetSelection | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: Mapping[str, str] | None = None,
    log_level: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the migration graph (default: what the `migrate` job selects) in this process with
    explicit resources. `log_level` (e.g. "WARNING") quiets the console logger; the events stay on the
    result."""
    from migration_assets.step_threads import execute_in_this_process, step_threads_executor

    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}} if log_level else None
    # As the product runs a job (runtime.run_job): the Definitions' executor, ready steps at once.
    job = dg.define_asset_job("run_graph", selection=selection or MIGRATE_SELECTION)
    defs = dg.Definitions(
        assets=_all_defs(), jobs=[job], resources=dict(resources), executor=step_threads_executor
    )
    return execute_in_this_process(
        defs.resolve_job_def("run_graph"),
        instance=instance,
        tags=dict(tags or {}),
        run_config=run_config,
    )


def reviewed_mappings(
    dest_root: Path,
    decisions: Mapping[str, Mapping[str, Any]] | None = None,
    warehouse: WarehouseResource | None = None,
    dataverse: Any | None = None,
    source_root: Path = DEFAULT_ROOT,
) -> Path:
    """The user's flow after `extract`, scripted: the defaults copied to `dest_root`, propose-mapping run
    on the extracted warehouse (the CLI's code path), then the scripted review with `decisions`
    (`accept_proposals`). A real migration has a human review."""
    from migration_assets.mapping.scripted_review import accept_proposals
    from migration_assets.target.propose import propose_all

    copy_defaults(dest_root, source_root)
    propose_all(dest_root, warehouse, dataverse)
    accept_proposals(dest_root, decisions)
    return dest_root


def resources_for(warehouse: Path | str) -> dict[str, Any]:
    """The Definitions' resources (from the environment), on the warehouse file `warehouse`."""
    from migration_assets.resources import build_resources

    return {**build_resources(), "warehouse": WarehouseResource(path=str(warehouse))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/run_graph.py")
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--groups", default="close,staged,schema,loaded,reports")
    args = parser.parse_args(argv)
    groups = [g for g in args.groups.split(",") if g]
    result = materialize_migration(resources_for(args.warehouse), dg.AssetSelection.groups(*groups))
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
