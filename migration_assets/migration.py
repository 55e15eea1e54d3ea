"""Running the whole migration (close/* -> staged/* -> schema/* -> loaded/* -> reports/*) from Python:
for `close2d365 run` / `close2d365 demo`, tests and benchmarks.

The demo produces its mappings the way a user does: propose-mapping on the extracted org into a private
copy of `mappings/` (CLOSE2D365_MAPPINGS points at it), then a scripted review (`review.accept_proposals`)
in place of the human one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from migration_assets.mapping.config import DEFAULT_ROOT, ORG_FILES, load_settings
from migration_assets.resources.warehouse import WarehouseResource, default_home
from migration_assets.runtime import patched_env

MIGRATE_GROUPS = ("close", "staged", "schema", "loaded", "reports")


def migrate_selection() -> dg.AssetSelection:
    """The `migrate` job: every stage, in lineage order (the coordinator registers it in jobs.py)."""
    from migration_assets.defs.jobs import DRY_RUN_ONLY

    return dg.AssetSelection.groups(*MIGRATE_GROUPS) - DRY_RUN_ONLY


def rollback_job() -> dg.JobDefinition:
    from migration_assets.load.rollback import rollback_job as job

    return job


def _all_defs() -> tuple[list[Any], list[Any]]:
    from migration_assets import defs as defs_package

    return (
        list(dg.load_assets_from_package_module(defs_package)),
        list(dg.load_asset_checks_from_package_module(defs_package)),
    )


def materialize_migration(
    resources: Mapping[str, Any],
    selection: dg.AssetSelection | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: Mapping[str, str] | None = None,
    log_level: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the migration graph in this process with explicit resources (tests, benchmarks).
    `log_level` (e.g. "WARNING") quiets the console logger; the events stay on the result."""
    assets, checks = _all_defs()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}} if log_level else None
    return dg.materialize(
        [*assets, *checks],
        selection=selection or migrate_selection(),
        resources=dict(resources),
        instance=instance,
        tags=dict(tags or {}),
        raise_on_error=False,
        run_config=run_config,
    )


def copy_defaults(dest_root: Path, source_root: Path = DEFAULT_ROOT) -> Path:
    """A private mappings root holding the project defaults (what a user starts from). Org files that a
    propose-mapping run left in `source_root` belong to another org: they are not copied (owners.yaml only
    while it holds the default settings, without a generated user list)."""
    if dest_root.exists():
        shutil.rmtree(dest_root)

    def org_files(folder: str, names: list[str]) -> set[str]:
        if Path(folder).resolve() != source_root.resolve():
            return set()
        skip = {n for n in names if n in ORG_FILES and n != "owners.yaml"}
        owners = source_root / "owners.yaml"
        if owners.is_file() and "users" in (yaml.safe_load(owners.read_text(encoding="utf-8")) or {}):
            skip.add("owners.yaml")
        return skip

    # Contents only (copyfile, no copystat): the copy gets this process's owner-only modes, since the org
    # files generated into it name the org's users.
    shutil.copytree(source_root, dest_root, ignore=org_files, copy_function=shutil.copyfile)
    for folder in (dest_root, *(p for p in dest_root.rglob("*") if p.is_dir())):
        folder.chmod(0o700)
    return dest_root


def reviewed_mappings(
    dest_root: Path,
    decisions: Mapping[str, Mapping[str, Any]] | None = None,
    warehouse: WarehouseResource | None = None,
    dataverse: Any | None = None,
    source_root: Path = DEFAULT_ROOT,
) -> Path:
    """The user's flow after `extract`, scripted: the defaults copied to `dest_root`, propose-mapping run
    on the extracted warehouse (the CLI's code path), then the scripted review with `decisions`
    (`review.accept_proposals`). For the demo, tests and benchmarks: a real migration has a human review."""
    from migration_assets.mapping.scripted_review import accept_proposals
    from migration_assets.target.propose import propose_all

    copy_defaults(dest_root, source_root)
    propose_all(dest_root, warehouse, dataverse)
    accept_proposals(dest_root, decisions)
    return dest_root


def demo_decisions(
    fallback_owner: str | None, max_rejected_fraction: float = 0.5
) -> dict[str, dict[str, Any]]:
    """The demo's review decisions: records of unmatched or disabled Close users go to `fallback_owner`, and
    staged tables may reject a share of rows (the generated org is full of deliberately bad records; they
    are listed in staged/*_rejected instead of blocking the demo)."""
    return {
        "owners.yaml": {"fallback_owner": fallback_owner, "disabled_users": "fallback"},
        "settings.yaml": {
            "rejection_thresholds": {"default": {"max_rows": None, "max_fraction": max_rejected_fraction}}
        },
    }


def reload_generated_assets() -> None:
    """The per-type custom activity assets are generated from CLOSE2D365_MAPPINGS at import: rebuild them
    after propose-mapping wrote custom_activities.yaml in this process."""
    import importlib
    import sys

    for name in (
        "migration_assets.defs.staged.custom_activity",
        "migration_assets.defs.loaded.custom_activities",
    ):
        if name in sys.modules:
            importlib.reload(sys.modules[name])


def first_enabled_user(dynamics_users: list[dict[str, Any]]) -> str | None:
    return next((u["internalemailaddress"] for u in dynamics_users if not u.get("isdisabled")), None)


def reconciliation_text(run_id: str) -> str:
    """The reconciliation report of run `run_id` as a fixed-width table (for the terminal). Only this
    run's: an older report would describe another run (e.g. when this one stopped before the reports)."""
    from migration_assets.defs.reports.reconciliation import RECON_COLUMNS

    path = default_home() / "reports" / run_id / "reconciliation.csv"
    if not path.is_file():
        return f"(run {run_id} wrote no reconciliation report: it stopped before the reports step)"
    import csv

    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in RECON_COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(RECON_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(r.get(c, "").ljust(w) for c, w in zip(RECON_COLUMNS, widths, strict=True)) for r in rows
    ]
    return "\n".join(lines) + f"\n\nReports: {path.parent}"


def run_migration(tags: Mapping[str, str] | None = None, expected_halts: Sequence[str] = ()) -> int:
    """`close2d365 run`: the `migrate` job on the shared instance (resources from the environment), then the
    reconciliation table and where the reports are. Returns the process exit status."""
    from migration_assets.runtime import print_job_outcome, run_job

    result = run_job("migrate", tags=dict(tags or {}))
    status = print_job_outcome(result, expected_halts)
    print(reconciliation_text(result.run_id))
    return status


def demo_dataverse_env(server: Any) -> dict[str, str]:
    app_user = server.config.app_users[0]
    return {
        "DATAVERSE_URL": server.base_url,
        "DATAVERSE_TENANT_ID": server.config.tenant_id,
        "DATAVERSE_CLIENT_IDS": app_user.client_id,
        "DATAVERSE_CLIENT_SECRETS": app_user.client_secret,
        "DATAVERSE_AUTHORITY_HOST": server.base_url,
        "DATAVERSE_CA_BUNDLE": server.ca_bundle,
    }


def run_demo_migration(size: str = "demo", seed: int = 1, ui: bool = False, org: str = "brightwave") -> int:
    """`close2d365 demo`: generate an org, serve it from both emulators and run the user's flow on it:
    the `extract` job, propose-mapping into a private copy of the defaults, the scripted review (every
    proposal accepted; fallback owner and tolerated rejections decided), the `migrate` job, then the
    reconciliation and the reports folder."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer
    from emulators.orgdata import generate
    from migration_assets.mapping.scripted_review import accept_proposals
    from migration_assets.runtime import print_job_outcome, run_job
    from migration_assets.target.propose import propose_all

    org = generate(size, seed, org=org)  # `org` names the shape until the generated org replaces it
    mappings = copy_defaults(default_home() / "demo_mappings")
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in org.dynamics_users])
    with CloseEmulatorServer(org) as close_server, EmulatorServer(config) as dv:
        env = {
            "CLOSE_API_KEY": org.api_key,
            "CLOSE_BASE_URL": close_server.base_url,
            "CLOSE2D365_CLOSE_SOURCE": "api",
            "CLOSE2D365_MAPPINGS": str(mappings),
            **demo_dataverse_env(dv),
        }
        tags = {"close2d365/mode": "demo", "close2d365/size": size}
        with patched_env(env):
            print(f"Close emulator {close_server.base_url}, Dataverse emulator {dv.base_url}", flush=True)
            print("1/4 close2d365 extract", flush=True)
            status = print_job_outcome(run_job("extract", tags=tags))
            if status:
                return status
            print(f"2/4 close2d365 propose-mapping -> {mappings}", flush=True)
            for line in propose_all(mappings).report():
                print(f"  {line}")
            decisions = demo_decisions(first_enabled_user(org.dynamics_users))
            print(f"3/4 scripted review: every proposal accepted, decided: {decisions}", flush=True)
            accept_proposals(mappings, decisions)
            reload_generated_assets()  # the custom activity types' assets come from the reviewed file
            print("4/4 close2d365 run", flush=True)
            status = run_migration(tags=tags, expected_halts=demo_expected_halts(org))
            if ui:
                from migration_assets.cli import launch_ui

                print(f"Both emulators stay up; what landed in Dataverse: {dv.base_url}/", flush=True)
                launch_ui(env=env)
            return status


def demo_expected_halts(org: Any) -> list[str]:
    """The generated org's deliberately broken custom activity type: its own check halts it, and only it."""
    from migration_assets.mapping.custom_activities import activity_types

    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    prefix = str(load_settings().publisher_prefix)
    # Named exactly as the proposal names the tables (one function, collisions included).
    return [a.table for a in activity_types(org.custom_activity_types, prefix) if a.close_type_id == broken]


def resources_from_env(warehouse_path: str | None = None) -> dict[str, Any]:
    """close / dataverse / warehouse resources from the environment variables the definitions use."""
    from migration_assets.load.rollback import dataverse_from_env
    from migration_assets.resources.close import CloseResource

    dataverse = dataverse_from_env()
    return {
        "close": CloseResource(
            api_key=os.environ.get("CLOSE_API_KEY", ""), base_url=os.environ.get("CLOSE_BASE_URL", "")
        ),
        "dataverse": dataverse,
        "warehouse": WarehouseResource(path=warehouse_path or ""),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m migration_assets.migration --warehouse PATH --groups schema,loaded`: materialize groups of
    the migration graph with resources from the environment (used by resume tests and benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m migration_assets.migration")
    parser.add_argument("--warehouse", default="")
    parser.add_argument("--groups", default=",".join(MIGRATE_GROUPS))
    args = parser.parse_args(argv)
    groups = [g for g in args.groups.split(",") if g]
    result = materialize_migration(resources_from_env(args.warehouse), dg.AssetSelection.groups(*groups))
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
