"""`close2d365 demo` and `close2d365 emulators`: a generated Close org served by both emulators, and the
user's flow run on it. The only module of the package that imports `emulators/`.

The demo produces its mappings the way a user does: propose-mapping on the extracted org into a private
copy of `mappings/` (CLOSE2D365_MAPPINGS points at it), then the scripted review
(`mapping.scripted_review.accept_proposals`) in place of the human one.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from emulators.orgdata import DEFAULT_SHAPE, ORG_SHAPES, OrgDataError, generate
from migration_assets.mapping.config import DEFAULT_ROOT, ORG_FILES, load_settings
from migration_assets.resources import env as env_var
from migration_assets.resources.warehouse import default_home

# The org shapes and the generator's error are re-exported for the command line, which does not import
# emulators/ itself.
__all__ = [
    "DEFAULT_SHAPE",
    "ORG_SHAPES",
    "OrgDataError",
    "copy_defaults",
    "demo_dataverse_env",
    "demo_decisions",
    "demo_expected_halts",
    "first_enabled_user",
    "reload_generated_assets",
    "run_demo",
    "serve_emulators",
]


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


def first_enabled_user(dynamics_users: list[dict[str, Any]]) -> str | None:
    return next((u["internalemailaddress"] for u in dynamics_users if not u.get("isdisabled")), None)


def reload_generated_assets() -> None:
    """The per-type custom activity assets are generated from CLOSE2D365_MAPPINGS at import: rebuild them
    after propose-mapping wrote custom_activities.yaml in this process."""
    for name in (
        "migration_assets.defs.staged.custom_activity",
        "migration_assets.defs.loaded.custom_activities",
    ):
        if name in sys.modules:
            importlib.reload(sys.modules[name])


def demo_dataverse_env(server: Any) -> dict[str, str]:
    """The environment that points the tool at a running Dataverse emulator (its first application user)."""
    app_user = server.config.app_users[0]
    return {
        env_var.DATAVERSE_URL: server.base_url,
        env_var.DATAVERSE_TENANT_ID: server.config.tenant_id,
        env_var.DATAVERSE_CLIENT_IDS: app_user.client_id,
        env_var.DATAVERSE_CLIENT_SECRETS: app_user.client_secret,
        env_var.DATAVERSE_AUTHORITY_HOST: server.base_url,
        env_var.DATAVERSE_CA_BUNDLE: server.ca_bundle,
    }


def demo_expected_halts(org: Any) -> list[str]:
    """The generated org's deliberately broken custom activity type: its own check halts it, and only it."""
    from migration_assets.mapping.custom_activities import activity_types

    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    prefix = str(load_settings().publisher_prefix)
    # Named exactly as the proposal names the tables (one function, collisions included).
    return [a.table for a in activity_types(org.custom_activity_types, prefix) if a.close_type_id == broken]


def run_demo(size: str = "demo", seed: int = 1, ui: bool = False, org: str = DEFAULT_SHAPE) -> int:
    """`close2d365 demo`: generate an org, serve it from both emulators and run the user's flow on it:
    the `extract` job, propose-mapping into a private copy of the defaults, the scripted review (every
    proposal accepted; fallback owner and tolerated rejections decided), the `migrate` job, then the
    reconciliation and the reports folder."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer
    from migration_assets.mapping.scripted_review import accept_proposals
    from migration_assets.runtime import (
        last_extraction_time,
        launch_ui,
        patched_env,
        print_job_outcome,
        run_job,
        run_migration,
    )
    from migration_assets.target.propose import propose_all

    close_org = generate(size, seed, org=org)
    mappings = copy_defaults(default_home() / "demo_mappings")
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in close_org.dynamics_users])
    with CloseEmulatorServer(close_org) as close_server, EmulatorServer(config) as dv:
        env = {
            env_var.CLOSE_API_KEY: close_org.api_key,
            env_var.CLOSE_BASE_URL: close_server.base_url,
            env_var.CLOSE2D365_CLOSE_SOURCE: "api",
            env_var.CLOSE2D365_MAPPINGS: str(mappings),
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
            for line in propose_all(mappings, extracted_at=last_extraction_time()).report():
                print(f"  {line}")
            decisions = demo_decisions(first_enabled_user(close_org.dynamics_users))
            print(f"3/4 scripted review: every proposal accepted, decided: {decisions}", flush=True)
            accept_proposals(mappings, decisions)
            reload_generated_assets()  # the custom activity types' assets come from the reviewed file
            print("4/4 close2d365 run", flush=True)
            status = run_migration(tags=tags, expected_halts=demo_expected_halts(close_org))
            if ui:
                print(f"Both emulators stay up; what landed in Dataverse: {dv.base_url}/", flush=True)
                launch_ui(env=env)
            return status


def serve_emulators(
    size: str, seed: int, host: str, close_port: int, dataverse_port: int, org: str = DEFAULT_SHAPE
) -> int:
    """`close2d365 emulators`: both emulators until Ctrl-C; prints where they are and the synthetic
    credentials."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer

    close_org = generate(size, seed, org=org)
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in close_org.dynamics_users])
    with (
        CloseEmulatorServer(close_org, host=host, port=close_port) as close_server,
        EmulatorServer(config, host=host, port=dataverse_port) as dv,
    ):
        env: Mapping[str, str] = {
            env_var.CLOSE_API_KEY: close_org.api_key,
            env_var.CLOSE_BASE_URL: close_server.base_url,
            **demo_dataverse_env(dv),
        }
        print(
            f"Close emulator ({org} org, {size}, seed {seed}): {close_server.base_url}\n"
            f"Dataverse emulator: {dv.base_url}/api/data/v9.2/   (what landed: {dv.base_url}/)\n"
            "Environment for `close2d365 extract|run` (synthetic credentials, generated for this emulator):\n"
            + "\n".join(f"  export {k}={v}" for k, v in env.items())
            + "\nCtrl-C to stop.",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
