"""Running the whole migration (close/* -> staged/* -> schema/* -> loaded/* -> reports/*) from Python:
for `close2d365 run` / `close2d365 demo`, tests and benchmarks.

The demo (and only the demo) auto-confirms the custom field proposal: it writes a confirmed
`custom_fields.yaml` into a private copy of `mappings/` and points CLOSE2D365_MAPPINGS at it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from migration_assets.lib.custom_activity_plan import TYPES_FILE, render_types
from migration_assets.lib.mapping_config import DEFAULT_ROOT, load_mapping_config
from migration_assets.lib.proposal import confirm_all, propose, render_proposal
from migration_assets.resources.warehouse import WarehouseResource, default_home
from migration_assets.runtime import patched_env

MIGRATE_GROUPS = ("close", "staged", "schema", "loaded", "reports")


def migrate_selection() -> dg.AssetSelection:
    """The `migrate` job: every stage, in lineage order (the coordinator registers it in jobs.py)."""
    return dg.AssetSelection.groups(*MIGRATE_GROUPS)


def rollback_job() -> dg.JobDefinition:
    from migration_assets.rollback import rollback_job as job

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


def custom_field_samples(objects: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """cf_id -> values seen, from Close objects carrying `custom.<cf_id>` keys."""
    out: dict[str, list[Any]] = {}
    for items in objects.values():
        for obj in items:
            for k, v in obj.items():
                if k.startswith("custom.cf_") and v is not None:
                    out.setdefault(k[len("custom.") :], []).append(v)
    return out


def write_confirmed_proposal(
    custom_fields: Mapping[str, list[dict[str, Any]]],
    samples: Mapping[str, list[Any]],
    activity_types: list[dict[str, Any]],
    dest_root: Path,
    prefix: str = "c2d",
    source_root: Path = DEFAULT_ROOT,
) -> Path:
    """Copy `mappings/` to `dest_root` with every custom field proposed as a new column and CONFIRMED.
    For the demo and tests only: a real migration has a human review and confirm each entry."""
    if dest_root.exists():
        shutil.rmtree(dest_root)
    shutil.copytree(source_root, dest_root)
    proposals = confirm_all(propose(custom_fields, samples, {}, prefix))
    (dest_root / "custom_fields.yaml").write_text(render_proposal(proposals), encoding="utf-8")
    (dest_root / TYPES_FILE).write_text(render_types(activity_types, prefix), encoding="utf-8")
    return dest_root


def demo_overrides(root: Path, fallback_owner: str | None, max_rejected_fraction: float = 0.5) -> None:
    """Demo/test settings in a mappings copy: records of unmatched Close users go to `fallback_owner`, and
    staged tables may reject a share of rows (the generated org is full of deliberately bad records; they
    are listed in staged/*_rejected instead of blocking the demo)."""
    owners_path, settings_path = root / "owners.yaml", root / "settings.yaml"
    owners = yaml.safe_load(owners_path.read_text(encoding="utf-8")) or {}
    owners["fallback_owner"] = fallback_owner
    owners["disabled_users"] = "fallback"
    owners_path.write_text(yaml.safe_dump(owners, sort_keys=False), encoding="utf-8")
    settings = yaml.safe_load(settings_path.read_text(encoding="utf-8")) or {}
    settings.setdefault("rejection_thresholds", {})["default"] = {
        "max_rows": None,
        "max_fraction": max_rejected_fraction,
    }
    settings_path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")


def first_enabled_user(dynamics_users: list[dict[str, Any]]) -> str | None:
    return next((u["internalemailaddress"] for u in dynamics_users if not u.get("isdisabled")), None)


def reconciliation_text(warehouse: WarehouseResource | None = None) -> str:
    """The latest reconciliation report as a fixed-width table (for the terminal)."""
    from migration_assets.defs.reports.reconciliation import RECON_COLUMNS

    runs = sorted((default_home() / "reports").glob("*/reconciliation.csv"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return "(no reconciliation report yet)"
    import csv

    with runs[-1].open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in RECON_COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(RECON_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(r.get(c, "").ljust(w) for c, w in zip(RECON_COLUMNS, widths, strict=True)) for r in rows
    ]
    return "\n".join(lines) + f"\n\nReports: {runs[-1].parent}"


def run_migration(tags: Mapping[str, str] | None = None, expected_halts: Sequence[str] = ()) -> int:
    """`close2d365 run`: the `migrate` job on the shared instance (resources from the environment), then the
    reconciliation table and where the reports are. Returns the process exit status."""
    from migration_assets.runtime import print_job_outcome, run_job

    result = run_job("migrate", tags=dict(tags or {}))
    status = print_job_outcome(result, expected_halts)
    print(reconciliation_text())
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


def run_demo_migration(size: str = "demo", seed: int = 1, ui: bool = False) -> int:
    """`close2d365 demo`: generate an org, serve it from both emulators, auto-confirm the custom field
    proposal (demo only), run the `migrate` job, print the reconciliation and the reports folder."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer
    from emulators.orgdata import generate

    org = generate(size, seed)
    mappings = write_confirmed_proposal(
        org.custom_fields,
        custom_field_samples(
            {"leads": org.leads, "contacts": org.contacts, "opportunities": org.opportunities}
        ),
        org.custom_activity_types,
        default_home() / "demo_mappings",
    )
    demo_overrides(mappings, first_enabled_user(org.dynamics_users))
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in org.dynamics_users])
    with CloseEmulatorServer(org) as close_server, EmulatorServer(config) as dv:
        env = {
            "CLOSE_API_KEY": org.api_key,
            "CLOSE_BASE_URL": close_server.base_url,
            "CLOSE2D365_CLOSE_SOURCE": "api",
            "CLOSE2D365_MAPPINGS": str(mappings),
            **demo_dataverse_env(dv),
        }
        with patched_env(env):
            print(f"Close emulator {close_server.base_url}, Dataverse emulator {dv.base_url}", flush=True)
            status = run_migration(
                tags={"close2d365/mode": "demo", "close2d365/size": size},
                expected_halts=demo_expected_halts(org),
            )
            if ui:
                from migration_assets.cli import launch_ui

                print(f"Both emulators stay up; what landed in Dataverse: {dv.base_url}/", flush=True)
                launch_ui(env=env)
            return status


def demo_expected_halts(org: Any) -> list[str]:
    """The generated org's deliberately broken custom activity type: its own check halts it, and only it."""
    from migration_assets.lib.custom_activities import activity_types

    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    prefix = str(load_mapping_config().settings.publisher_prefix)
    # Named exactly as the proposal names the tables (one function, collisions included).
    return [a.table for a in activity_types(org.custom_activity_types, prefix) if a.close_type_id == broken]


def resources_from_env(warehouse_path: str | None = None) -> dict[str, Any]:
    """close / dataverse / warehouse resources from the environment variables the definitions use."""
    from migration_assets.resources.close import CloseResource
    from migration_assets.rollback import dataverse_from_env

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
