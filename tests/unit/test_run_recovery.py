"""A run killed while a step held a pool slot leaves the run 'started' and the slot claimed: the next
command recovers both (with a line saying so) instead of waiting forever for the slot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.test_utils import instance_for_test

from migration_assets.runtime import HOST_TAG, PID_TAG, STARTED_TAG, recover_dead_runs


@dg.op
def _noop() -> None:
    pass


@dg.job
def _job() -> None:
    _noop()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_run_is_marked_failed_and_its_pool_slot_freed(tmp_path: Path) -> None:
    with instance_for_test(temp_dir=str(tmp_path)) as inst:
        storage = inst.event_log_storage
        storage.set_concurrency_slots("dataverse_api", 1)
        host = socket.gethostname()
        dead = inst.create_run_for_job(
            _job, status=dg.DagsterRunStatus.STARTED, tags={PID_TAG: str(_dead_pid()), HOST_TAG: host}
        )
        alive = inst.create_run_for_job(
            _job,
            status=dg.DagsterRunStatus.STARTED,
            tags={PID_TAG: str(os.getpid()), HOST_TAG: host},
        )
        canceled = inst.create_run_for_job(_job, status=dg.DagsterRunStatus.CANCELED)
        assert storage.claim_concurrency_slot("dataverse_api", dead.run_id, "loaded__contact").is_claimed
        storage.set_concurrency_slots("dataverse_api", 3)
        assert storage.claim_concurrency_slot("dataverse_api", alive.run_id, "loaded__lead").is_claimed
        assert storage.claim_concurrency_slot("dataverse_api", canceled.run_id, "loaded__task").is_claimed

        lines = recover_dead_runs(inst)

        assert inst.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert inst.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
        assert storage.get_concurrency_run_ids() == {alive.run_id}  # only the live run keeps its slot
        assert any(dead.run_id in line and "marked failed" in line for line in lines)
        assert any(canceled.run_id in line and "freed" in line for line in lines)
        assert recover_dead_runs(inst) == []  # nothing left to recover


def test_a_reused_pid_or_an_unreaped_process_does_not_keep_a_dead_run_started(tmp_path: Path) -> None:
    """After a reboot (or in a new container) the dead run's pid may be another process's; a killed process
    that its parent has not reaped yet is a zombie. Neither is the run's process any more."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped: a zombie
    try:
        with instance_for_test(temp_dir=str(tmp_path)) as inst:
            me, host = psutil.Process(), socket.gethostname()
            started = me.create_time()

            def run(pid: int, process_started: float | None) -> dg.DagsterRun:
                tags = {PID_TAG: str(pid), HOST_TAG: host}
                if process_started is not None:
                    tags[STARTED_TAG] = f"{process_started:.3f}"
                return inst.create_run_for_job(_job, status=dg.DagsterRunStatus.STARTED, tags=tags)

            reused = run(me.pid, started - 3600)  # this pid, but a process that started an hour earlier
            unreaped = run(zombie.pid, None)
            alive = run(me.pid, started)

            lines = recover_dead_runs(inst)

            records = inst.get_run_records(
                filters=dg.RunsFilter(run_ids=[reused.run_id, unreaped.run_id, alive.run_id])
            )
            status = {r.dagster_run.run_id: r.dagster_run.status for r in records}
            assert status == {
                reused.run_id: dg.DagsterRunStatus.FAILURE,
                unreaped.run_id: dg.DagsterRunStatus.FAILURE,
                alive.run_id: dg.DagsterRunStatus.STARTED,
            }
            assert len(lines) == 2
    finally:
        zombie.wait()
