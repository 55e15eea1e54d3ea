"""`close2d365 demo` and `close2d365 emulators`: a generated Close org served by both emulators, and the
user's flow run on it. The only module of the package that imports `emulators/`.

The demo produces its mappings the way a user does: propose-mapping on the extracted org into a private
copy of `mappings/` (CLOSE2D365_MAPPINGS points at it), then the scripted review
(`mapping.scripted_review.accept_proposals`) in place of the human one.
"""

from __future__ import annotations

import importlib
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from emulators.orgdata import DEFAULT_SHAPE, ORG_SHAPES, OrgDataError, generate
from migration_assets.mapping.config import DEFAULT_ROOT, ORG_FILES, load_settings
from migration_assets.ports import PortError, listen_problem
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
    "stop_signals",
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


# The fix the halt message documents for values of a field deleted from a custom activity type: keep them in
# a column of their own (nothing is dropped), decided in the reviewed custom_activities.yaml.
DOCUMENTED_FIX = {"orphaned_values": "column"}


def documented_fix(org: Any) -> dict[str, dict[str, Any]]:
    """The scripted decision that fixes the expected halts (by file, then type name)."""
    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    names = [t["name"] for t in org.custom_activity_types if t["id"] == broken]
    return {"custom_activities.yaml": {name: dict(DOCUMENTED_FIX) for name in names}}


def halted_selection(tables: list[str]) -> list[Any]:
    """What a fixed custom activity type needs again, as the UI's "materialize selected" would: the schema
    plan and its custom activity phases (the decision adds columns), the type's staging and everything
    downstream of it, and the reports of the run."""
    import dagster as dg

    from migration_assets.definitions import build_definitions
    from migration_assets.defs.schema.assets import COLUMNS_PHASE, PLAN, TABLES_PHASE

    graph = build_definitions().resolve_job_def("migrate").asset_layer.asset_graph
    staged = [dg.AssetKey(["staged", f"custom_activity_{t}"]) for t in tables]
    # The run's own reconciliation and audit pack (reports/audit_pack depends on nothing: named here).
    reports = dg.AssetSelection.assets(
        dg.AssetKey(["reports", "reconciliation"]), dg.AssetKey(["reports", "audit_pack"])
    )
    selection = (
        dg.AssetSelection.assets(*staged).downstream()
        | reports.downstream()
        | dg.AssetSelection.assets(PLAN, TABLES_PHASE, COLUMNS_PHASE)
    )
    return sorted(selection.resolve(graph), key=lambda k: k.to_user_string())


def run_demo(
    size: str = "demo", seed: int = 1, ui: bool = False, org: str = DEFAULT_SHAPE, ui_port: int = 3000
) -> int:
    """`close2d365 demo`: generate an org, serve it from both emulators and run the user's flow on it:
    the `extract` job, propose-mapping into a private copy of the defaults, the scripted review (every
    proposal accepted; fallback owner and tolerated rejections decided), the `migrate` job, then the
    reconciliation and the reports folder."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer
    from migration_assets.mapping.scripted_review import accept_proposals
    from migration_assets.runtime import (
        EXPECTED_HALT,
        last_extraction_time,
        launch_ui,
        patched_env,
        print_job_outcome,
        rematerialize,
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
            print("1/5 close2d365 extract", flush=True)
            status = print_job_outcome(run_job("extract", tags=tags))
            if status:
                return status
            print(f"2/5 close2d365 propose-mapping -> {mappings}", flush=True)
            for line in propose_all(mappings, extracted_at=last_extraction_time()).report():
                print(f"  {line}")
            decisions = demo_decisions(first_enabled_user(close_org.dynamics_users))
            print(f"3/5 scripted review: every proposal accepted, decided: {decisions}", flush=True)
            accept_proposals(mappings, decisions)
            reload_generated_assets()  # the custom activity types' assets come from the reviewed file
            print("4/5 close2d365 run", flush=True)
            halted = demo_expected_halts(close_org)
            status = run_migration(tags=tags, expected_halts=halted)
            if status == EXPECTED_HALT:
                fix = documented_fix(close_org)
                print(
                    f"5/5 the documented fix, decided in {mappings / 'custom_activities.yaml'}: {fix}; then "
                    "only what halted is materialized again",
                    flush=True,
                )
                accept_proposals(mappings, fix)
                reload_generated_assets()
                status = rematerialize(halted_selection(halted), tags=tags)
            if ui:
                print(f"Both emulators stay up; what landed in Dataverse: {dv.base_url}/", flush=True)
                launch_ui(port=ui_port, env=env)
            return status


@contextmanager
def _naming_the_port(what: str, host: str, port: int, option: str) -> Iterator[None]:
    """An emulator that cannot listen (port in use, address not available) is the user's to fix: say
    which emulator, which port and which option changes it."""
    from emulators.close.server import EmulatorServerError
    from emulators.dataverse.server import EmulatorStartError

    try:
        yield
    except (EmulatorServerError, EmulatorStartError) as exc:
        if not isinstance(exc.__cause__, OSError):
            raise
        raise PortError(
            f"the {what} emulator cannot listen on {listen_problem(exc.__cause__, host, port, option)}"
        ) from exc


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals() -> Iterator[Callable[[], int]]:
    """Catch Ctrl-C (SIGINT) and SIGTERM from here on; yields a function that blocks until one arrives (or
    arrived since entering) and returns its number. Use from the main thread.

    The kernel may deliver the signal to any thread, here often a server's; Python then runs its handler
    only when the main thread next executes bytecode, which a main thread blocked in Event.wait() never
    did (Ctrl-C was ignored). The wakeup fd is written by the C-level handler whichever thread took the
    signal, so the main thread, blocked reading it, wakes at once."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    # A Python-level handler for each: without one nothing is written to the wakeup fd (SIGTERM would kill
    # the process at once, the servers not stopped), and SIGINT's default raises KeyboardInterrupt.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in STOP_SIGNALS}

    def wait() -> int:
        while True:
            received = reader.recv(1)  # one byte per signal: its number
            if received and received[0] in STOP_SIGNALS:
                return received[0]

    try:
        yield wait
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()


def serve_emulators(
    size: str,
    seed: int,
    host: str,
    close_port: int,
    dataverse_port: int,
    org: str = DEFAULT_SHAPE,
    realistic: bool = False,
) -> int:
    """`close2d365 emulators`: both emulators until Ctrl-C (or SIGTERM); prints where they are and the
    synthetic credentials. `realistic`: both answer with their latency models on (emulators/*/latency.py)."""
    from emulators.close import latency as close_latency
    from emulators.close.config import CloseEmulatorConfig
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.latency import with_realistic_latency
    from emulators.dataverse.server import EmulatorServer

    close_org = generate(size, seed, org=org)
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in close_org.dynamics_users])
    close_config = CloseEmulatorConfig(latency=close_latency.REALISTIC) if realistic else None
    if realistic:
        config = with_realistic_latency(config)
    with ExitStack() as servers:
        with _naming_the_port("Close", host, close_port, "--close-port"):
            close_server = servers.enter_context(
                CloseEmulatorServer(close_org, close_config, host=host, port=close_port)
            )
        with _naming_the_port("Dataverse", host, dataverse_port, "--dataverse-port"):
            dv = servers.enter_context(EmulatorServer(config, host=host, port=dataverse_port))
        env: Mapping[str, str] = {
            env_var.CLOSE_API_KEY: close_org.api_key,
            env_var.CLOSE_BASE_URL: close_server.base_url,
            **demo_dataverse_env(dv),
        }
        # Caught before the banner says how to stop: a signal sent as soon as it shows stops cleanly too.
        wait_for_stop = servers.enter_context(stop_signals())
        print(
            f"Close emulator ({org} org, {size}, seed {seed}): {close_server.base_url}\n"
            f"Dataverse emulator: {dv.base_url}/api/data/v9.2/   (what landed: {dv.base_url}/)\n"
            + (
                "Latency models on (--realistic): emulators/close/latency.py, emulators/dataverse/latency.py\n"
                if realistic
                else ""
            )
            + "Environment for `close2d365 extract|run` (synthetic credentials, generated for this emulator):\n"
            + "\n".join(f"  export {k}={v}" for k, v in env.items())
            + "\nCtrl-C to stop.",
            flush=True,
        )
        wait_for_stop()
        print("Stopping the emulators.", flush=True)
    return 0
