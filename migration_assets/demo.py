"""`close2d365 demo` and `close2d365 emulators`: the whole tool against the bundled emulators.

The demo generates a synthetic Close org, serves it from the Close emulator, points the resources at it through
the same environment variables a real run uses, and runs the jobs of the one Definitions on the shared
Dagster instance, so `close2d365 ui` shows the demo's runs, lineage and checks afterwards.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from emulators.orgdata import CloseOrg, generate


def close_env(base_url: str, api_key: str) -> dict[str, str]:
    return {"CLOSE_API_KEY": api_key, "CLOSE_BASE_URL": base_url, "CLOSE2D365_CLOSE_SOURCE": "api"}


@contextmanager
def patched_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def count_table(org: CloseOrg) -> list[tuple[str, int, int | None]]:
    """(table, expected from the generator's truth, extracted rows or None if the table is missing)."""
    from migration_assets.resources.warehouse import WarehouseResource

    warehouse = WarehouseResource()
    rows: list[tuple[str, int, int | None]] = []
    for table, expected in org.truth["counts"].items():
        got: int | None = None
        if warehouse.table_exists("close", table):
            got = int(warehouse.read(f'SELECT count(*) AS n FROM close."{table}"')["n"][0])
        rows.append((table, int(expected), got))
    return rows


def render_counts(rows: list[tuple[str, int, int | None]]) -> str:
    lines = [f"{'close table':<24}{'expected':>10}{'extracted':>11}  ", "-" * 48]
    for table, expected, got in rows:
        mark = "ok" if got == expected else "MISMATCH"
        lines.append(f"{table:<24}{expected:>10}{'-' if got is None else got:>11}  {mark}")
    return "\n".join(lines)


def print_job_outcome(result: dg.ExecuteInProcessResult) -> int:
    """Print why a run failed (step and message, not a traceback); 0 when it succeeded."""
    if result.success:
        print(f"run {result.run_id}: success")
        return 0
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            message = error.message.strip() if error else "failed"
            cause = error.cause.message.strip() if error and error.cause else ""
            print(
                f"  {event.step_key}: {message}" + (f"\n    caused by: {cause}" if cause else ""),
                file=sys.stderr,
            )
    print(f"run {result.run_id}: FAILED (see the run in `close2d365 ui` for details)", file=sys.stderr)
    return 2


def run_demo(size: str = "demo", seed: int = 1, ui: bool = False) -> int:
    from emulators.close.server import CloseEmulatorServer
    from migration_assets.runtime import dagster_home, run_job

    print(f"Generating the '{size}' Close org (seed {seed}) ...", flush=True)
    org = generate(size, seed)
    with CloseEmulatorServer(org) as close_server:
        print(f"Close emulator: {close_server.base_url}", flush=True)
        env = close_env(close_server.base_url, org.api_key)
        with patched_env(env):
            print(
                f"Extracting every Close object through Dagster (instance {dagster_home()}) ...", flush=True
            )
            result = run_job("extract", tags={"close2d365/mode": "demo", "close2d365/size": size})
            status = print_job_outcome(result)
            rows = count_table(org)
            print(render_counts(rows))
            if any(got != expected for _, expected, got in rows):
                status = status or 3
            if ui:
                from migration_assets.cli import launch_ui

                launch_ui(env=env)
    return status


def serve_emulators(size: str, seed: int, host: str, close_port: int, dataverse_port: int) -> int:
    """Serve both emulators on fixed ports until Ctrl-C; prints where they are and the synthetic credentials."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer

    org = generate(size, seed)
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in org.dynamics_users])
    with (
        CloseEmulatorServer(org, host=host, port=close_port) as close_server,
        EmulatorServer(config, host=host, port=dataverse_port) as dv,
    ):
        app_user = config.app_users[0]
        print(
            f"Close emulator ({size}, seed {seed}): {close_server.base_url}\n"
            f"  CLOSE_API_KEY={org.api_key}   (synthetic)\n"
            f"Dataverse emulator: {dv.base_url}/api/data/v9.2/   (tables: {dv.base_url}/)\n"
            f"  DATAVERSE_URL={dv.base_url}\n  DATAVERSE_TENANT_ID={config.tenant_id}\n"
            f"  DATAVERSE_CLIENT_IDS={app_user.client_id}\n  DATAVERSE_CLIENT_SECRETS={app_user.client_secret}"
            f"   (synthetic)\n  DATAVERSE_AUTHORITY_HOST={dv.base_url}\n  DATAVERSE_CA_BUNDLE={dv.ca_bundle}\n"
            "Ctrl-C to stop.",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
