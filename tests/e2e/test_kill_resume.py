"""Issue 11 defect #3 ("resume after a kill can hang forever"), end to end from the command line: a
`close2d365 run` killed inside a loaded step leaves the run "started" and its `dataverse_api` pool slot
claimed on the instance; the next `close2d365 run` says it recovered both, does not wait for the slot,
and leaves the target in the exact state: every staged record with its staged values, none twice; the
batch the kill left in flight (ledger rows still `pending`) is in the target and not created again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import dagster as dg
import pytest
from org_mappings import proposed_root  # noqa: E402 - tests/ is on sys.path (rootdir conftest)

from emulators.orgdata import CloseOrg, generate
from migration_assets.audit.reconciliation import read_back_ids
from migration_assets.demo import demo_dataverse_env, demo_decisions, first_enabled_user
from migration_assets.mapping.scripted_review import accept_proposals
from migration_assets.runtime import PID_TAG

pytestmark = pytest.mark.e2e
POOL = "dataverse_api"  # the pool every loaded/* asset declares (dagster.yaml: one slot, per op)
KILLED_TABLE = "contact"
KILLED_SET = "contacts"  # its entity set: the emulator holds the first write to it
KILLED_STEP = f"loaded__{KILLED_TABLE}"
# Bounded: without the recovery the re-run waits for the dead run's slot forever.
RUN_TIMEOUT_S = 180


def _decisions(org: CloseOrg) -> dict[str, dict[str, Any]]:
    """The demo's review, and the orphaned values of the org's broken custom activity type dropped: every
    step loads, so a clean re-run exits 0."""
    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    name = next(t["name"] for t in org.custom_activity_types if t["id"] == broken)
    return {
        **demo_decisions(first_enabled_user(org.dynamics_users)),
        "custom_activities.yaml": {name: {"orphaned_values": "drop"}},
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`close2d365 run` in its own process, as a user starts it; one that does not finish fails the test."""
    cmd = [sys.executable, "-m", "migration_assets.cli", "run"]
    try:
        return subprocess.run(cmd, cwd=s.REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        why = "waiting for a pool slot a killed run holds?"
        pytest.fail(f"`close2d365 run` still running after {RUN_TIMEOUT_S} s ({why}); stderr:\n{err[-2000:]}")


def _instance(home: Path) -> dg.DagsterInstance:
    """The instance the command line used (the repo's dagster.yaml, copied under the home)."""
    return dg.DagsterInstance.from_config(str(home / "dagster_home"))


def test_a_run_killed_inside_a_pooled_step_is_recovered_and_resumed_exactly(tmp_path: Path) -> None:
    org = generate("tiny", 1)
    mappings, _ = proposed_root(org, tmp_path / "mappings")  # propose-mapping on the org's objects
    accept_proposals(mappings, _decisions(org))  # the scripted review
    home = tmp_path / "home"
    with s.close_server(org) as close, s.dataverse(org) as dv:
        env = {
            **os.environ,
            **demo_dataverse_env(dv),
            "CLOSE_API_KEY": org.api_key,
            "CLOSE_BASE_URL": close.base_url,
            "CLOSE2D365_CLOSE_SOURCE": "api",
            "CLOSE2D365_HOME": str(home),
            "CLOSE2D365_MAPPINGS": str(mappings),
        }
        env.pop("DAGSTER_HOME", None)

        # Killed from outside once the first contact batch landed, before its outcome was recorded.
        cli_run = [sys.executable, "-m", "migration_assets.cli", "run"]
        killed = s.run_killed_at(cli_run, env, dv, KILLED_SET, after_work=True)
        assert killed.returncode == s.KILLED, killed.stdout + killed.stderr
        with _instance(home) as inst:
            dead = inst.get_runs(limit=1)[0]
            assert dead.job_name == "migrate" and dead.status == dg.DagsterRunStatus.STARTED
            assert dead.tags[PID_TAG].isdigit()
            storage = inst.event_log_storage
            assert storage.get_concurrency_run_ids() == {dead.run_id}
            claimed = storage.get_concurrency_info(POOL).claimed_slots
            assert [(c.run_id, c.step_key) for c in claimed] == [(dead.run_id, KILLED_STEP)]
        warehouse = home / "warehouse.duckdb"
        in_flight = s.ledger_rows(
            warehouse,
            f"SELECT record_id FROM ledger.writes WHERE run_id = '{dead.run_id}' AND status = 'pending'",
        )
        assert in_flight, "the kill left no batch in flight"

        resumed = _run(env)  # a hang (the slot never freed) fails here, on the timeout
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        recovered = [line for line in resumed.stderr.splitlines() if line.startswith("recovered: ")]
        assert recovered == [
            f"recovered: run {dead.run_id} was left running by a process that is gone: marked failed",
            f"recovered: run {dead.run_id} still held pool slots it no longer uses: freed",
        ], resumed.stderr
        with _instance(home) as inst:
            latest, previous = inst.get_runs(limit=2)
            assert (previous.run_id, previous.status) == (dead.run_id, dg.DagsterRunStatus.FAILURE)
            assert latest.status == dg.DagsterRunStatus.SUCCESS
            assert inst.event_log_storage.get_concurrency_run_ids() == set()

        client = s.client_for(dv)
        try:
            comparison = s.compare_all(warehouse, client)
            in_target = read_back_ids(client, KILLED_TABLE, "c2d_closeid")
        finally:
            client.close()
        summary = Counter((m["table"], m["column"]) for m in comparison.mismatches)
        assert comparison.mismatches == [], (summary, comparison.mismatches[:3])
        for table, (staged, loaded) in comparison.per_table.items():
            assert staged == loaded, (table, staged, loaded)  # every staged record, none twice
        assert comparison.per_table[KILLED_TABLE][0] > 0
        # The batch in flight landed once: the re-run found it in the target and created none of it again
        # (the dead run's rows stay pending by design: a rollback of it deletes what "may exist").
        assert {r for (r,) in in_flight} <= in_target
        again = s.ledger_rows(
            warehouse,
            f"SELECT count(*) FROM ledger.writes WHERE run_id = '{latest.run_id}' "
            f"AND (status = 'pending' OR (action = 'created' AND record_id IN "
            f"(SELECT record_id FROM ledger.writes WHERE run_id = '{dead.run_id}')))",
        )
        assert again == [(0,)]
