"""Shared machinery of the migrate end-to-end tests: emulators, mappings, resources, and comparisons of
what Dataverse holds with the staged rows (every row, every column)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from run_graph import materialize_migration, reviewed_mappings  # tests/ is on sys.path (rootdir conftest)

from emulators.close.config import CloseEmulatorConfig, RateLimitConfig
from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.config import DataverseEmulatorConfig, Faults
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg
from migration_assets.audit.reconciliation import target_tables
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.defs.jobs import DRY_RUN_ONLY
from migration_assets.demo import (
    demo_dataverse_env,
    demo_decisions,
    first_enabled_user,
    reload_generated_assets,
)
from migration_assets.load.readback import readback_table
from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

REPO = Path(__file__).resolve().parents[2]
# The owner map is a staging input and a gate of every load: re-run with the loads, as in `migrate`.
LOAD_GROUPS = (
    dg.AssetSelection.groups("schema", "loaded", "reports")
    | dg.AssetSelection.assets(["staged", "owner_map"])
) - DRY_RUN_ONLY  # the dry run's review
SCHEMA_ONLY = dg.AssetSelection.groups("schema")
LOADED_ONLY = dg.AssetSelection.groups("loaded")
SCHEMA_AND_LOADED = dg.AssetSelection.groups("schema", "loaded")
# The tiny org carries a custom activity type whose instances use a field the type does not define: its
# staged check fails by design (DESIGN §3 "halts that type only"). Every other step must succeed.
EXPECTED_HALT = "c2d_onboardingchecklist"


def prepare_mappings(
    org: CloseOrg, root: Path, close: CloseEmulatorServer, dv: EmulatorServer, warehouse: Path
) -> Path:
    """The user's flow up to the run, as the demo does it: extract into `warehouse`, propose-mapping into a
    copy of the defaults at `root`, the scripted review with the demo's decisions. The per-type custom
    activity assets are rebuilt from the reviewed file (set CLOSE2D365_MAPPINGS to `root` first)."""
    extracted = materialize_migration(resources(org, close, dv, warehouse), dg.AssetSelection.groups("close"))
    assert extracted.success, failed_steps(extracted)
    client = dataverse_resource(dv).get_client()
    try:
        reviewed_mappings(
            root,
            demo_decisions(first_enabled_user(org.dynamics_users)),
            WarehouseResource(path=str(warehouse)),
            client,
        )
    finally:
        client.close()
    reload_generated_assets()
    return root


def close_server(org: CloseOrg) -> CloseEmulatorServer:
    """The Close emulator for graph tests, with Close's rate limits off: the client's pacing is tested against
    them in its contract tests; here it would only add ~10 s of waiting to every extraction."""
    return CloseEmulatorServer(org, CloseEmulatorConfig(rate_limit=RateLimitConfig(enabled=False)))


@dataclass
class Migrated:
    """A `demo_flow` migration: the emulators (still serving), the warehouse, the run's result."""

    org: CloseOrg
    close: CloseEmulatorServer
    dv: EmulatorServer
    warehouse: Path
    result: dg.ExecuteInProcessResult
    home: Path


@contextmanager
def demo_flow(root: Path, org: CloseOrg) -> Iterator[Migrated]:
    """The demo's flow on `org` (extract, propose-mapping, the scripted review, migrate) with mappings and
    home under `root`; the emulators serve until the block ends. One per test module (a module fixture)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOSE2D365_MAPPINGS", str(root / "mappings"))
    mp.setenv("CLOSE2D365_HOME", str(root / "home"))
    try:
        with close_server(org) as close, dataverse(org) as dv:
            warehouse = root / "w.duckdb"
            prepare_mappings(org, root / "mappings", close, dv, warehouse)
            result = materialize_migration(resources(org, close, dv, warehouse))
            assert_only_expected_halt(result)
            yield Migrated(org, close, dv, warehouse, result, root / "home")
    finally:
        mp.undo()
        reload_generated_assets()


def dv_config(org: CloseOrg, faults: Faults | None = None) -> DataverseEmulatorConfig:
    cfg = DataverseEmulatorConfig(seed_users=[dict(u) for u in org.dynamics_users])
    if faults is not None:
        cfg.faults = faults
    return cfg


def dataverse_resource(server: EmulatorServer, max_retries: int = 8) -> DataverseResource:
    u = server.config.app_users[0]
    return DataverseResource(
        environment_url=server.base_url,
        tenant_id=server.config.tenant_id,
        client_ids=u.client_id,
        client_secrets=u.client_secret,
        authority_host=server.base_url,
        ca_bundle=server.ca_bundle,
        max_retries=max_retries,
    )


def resources(
    org: CloseOrg, close: CloseEmulatorServer, dv: EmulatorServer, warehouse: Path
) -> dict[str, Any]:
    return {
        "close": CloseResource(api_key=org.api_key, base_url=close.base_url),
        "warehouse": WarehouseResource(path=str(warehouse)),
        "dataverse": dataverse_resource(dv),
    }


def failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(e.step_key or "" for e in result.all_events if e.is_step_failure)


def assert_only_expected_halt(result: dg.ExecuteInProcessResult) -> None:
    unexpected = [s for s in failed_steps(result) if EXPECTED_HALT not in s]
    assert unexpected == [], unexpected


def fresh_copy(staged_warehouse: Path, dest: Path) -> Path:
    """The warehouse after extraction and staging, without any ledger (a new target starts clean)."""
    shutil.copyfile(staged_warehouse, dest)
    con = duckdb.connect(str(dest))
    con.execute("DROP SCHEMA IF EXISTS ledger CASCADE")
    con.execute("DROP SCHEMA IF EXISTS loaded CASCADE")
    con.close()
    return dest


def load(
    org: CloseOrg,
    close: CloseEmulatorServer,
    dv: EmulatorServer,
    warehouse: Path,
    selection: dg.AssetSelection = LOAD_GROUPS,
) -> dg.ExecuteInProcessResult:
    return materialize_migration(resources(org, close, dv, warehouse), selection)


def materialized(result: dg.ExecuteInProcessResult, group: str) -> dict[str, dict[str, Any]]:
    """The metadata values of the run's materializations in `group`, by asset name."""
    return {
        "/".join(e.asset_key.path[1:]): {
            k: v.value
            for k, v in e.event_specific_data.materialization.metadata.items()  # type: ignore[union-attr]
        }
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None and e.asset_key.path[0] == group
    }


@contextmanager
def dataverse(org: CloseOrg, faults: Faults | None = None) -> Iterator[EmulatorServer]:
    with EmulatorServer(dv_config(org, faults)) as server:
        yield server


def client_for(server: EmulatorServer) -> DataverseClient:
    return dataverse_resource(server).get_client()


@dataclass
class Comparison:
    per_table: dict[str, tuple[int, int]]  # table -> (staged rows, records in Dataverse with a Close id)
    mismatches: list[dict[str, Any]]


def compare_all(warehouse: Path, client: DataverseClient) -> Comparison:
    """Every staged row read back and compared column by column; counts per table."""
    from migration_assets.audit.reconciliation import read_back_ids

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        per_table: dict[str, tuple[int, int]] = {}
        mismatches: list[dict[str, Any]] = []
        for table, staged in target_tables(con):
            checked, bad = readback_table(con, client, table, staged, sample=10**9, seed=0)
            mismatches += bad
            back = read_back_ids(client, table, "c2d_closeid")
            per_table[table] = (checked, len(back))
        return Comparison(per_table, mismatches)
    finally:
        con.close()


def snapshot(client: DataverseClient, tables: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every record of the tables (all columns): to prove a run changed nothing / a rollback restored all."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for table in tables:
        pk = client.metadata(table).primary_id
        out[table] = {str(r[pk]): {k: v for k, v in r.items() if "@" not in k} for r in client.query(table)}
    return out


def staged_rows(warehouse: Path, table: str) -> list[dict[str, Any]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute(f'SELECT * FROM staged."{table}"')
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def ledger_rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def document_bytes(client: DataverseClient, annotation_id: str) -> bytes | None:
    rec = client.get("annotation", annotation_id, ["documentbody"])
    body = (rec or {}).get("documentbody")
    return None if body is None else base64.b64decode(body)


KILLED = -signal.SIGKILL  # the exit status of a process killed from outside
HOLD_TIMEOUT_S = 300  # a run that never sends the awaited request fails the test instead of hanging it


def write_to(entity_set: str) -> str:
    """The hold rule's pattern for the first write to `entity_set`: a bulk message or a `$batch` part."""
    return rf"POST \S*/api/data/v9\.2/{entity_set}\b"


def run_killed_at(
    cmd: list[str], env: dict[str, str], dv: EmulatorServer, entity_set: str, after_work: bool
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` until the Dataverse emulator holds its first write to `entity_set` (after doing it when
    `after_work`: the write landed, its answer never came; else before: nothing landed), then SIGKILL the
    process from outside, like a user or the OOM killer would: no cleanup runs in it."""
    control = dv.app.state.edge_control
    held = control.faults.stats.held
    control.set_faults(hold_request=write_to(entity_set), hold_after_work=after_work)
    # Files, not pipes: a child blocked on a full pipe would never reach the held request.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        try:
            deadline = time.monotonic() + HOLD_TIMEOUT_S
            while control.faults.stats.held == held and proc.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"{cmd} sent no write to {entity_set} in {HOLD_TIMEOUT_S} s")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
            control.set_faults(hold_request="", hold_after_work=False)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def killed_load(
    org: CloseOrg,
    close: CloseEmulatorServer,
    dv: EmulatorServer,
    warehouse: Path,
    mappings: Path,
    entity_set: str,
    after_work: bool,
) -> int:
    """The load (schema, loaded) in a child process killed at its first write to `entity_set` (see
    `run_killed_at`); returns its exit status."""
    env = {
        **os.environ,
        **demo_dataverse_env(dv),
        "CLOSE_API_KEY": org.api_key,
        "CLOSE_BASE_URL": close.base_url,
        "CLOSE2D365_MAPPINGS": str(mappings),
    }
    cmd = [
        sys.executable,
        str(REPO / "tests" / "run_graph.py"),
        "--warehouse",
        str(warehouse),
        "--groups",
        "schema,loaded",
    ]
    return run_killed_at(cmd, env, dv, entity_set, after_work).returncode


def json_safe(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`close2d365 <args>` in a child process, as a user runs it, with `env` as its whole environment."""
    return subprocess.run(
        [sys.executable, "-m", "migration_assets.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
