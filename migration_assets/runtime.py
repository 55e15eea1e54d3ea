"""Running jobs from the command line on the same Dagster instance the UI shows, printing their outcomes,
and launching the UI."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psutil

from migration_assets.resources.api_calls import calls_line, run_call_totals
from migration_assets.resources.env import DAGSTER_HOME
from migration_assets.resources.warehouse import default_home

REPO_ROOT = Path(__file__).resolve().parents[1]
# Every file a command creates (the warehouse and its WAL, the Dagster instance's databases, exports,
# reports) holds customer data: created owner-only, whatever the user's umask.
PRIVATE_UMASK = 0o077


def dagster_home() -> Path:
    """The instance folder ($DAGSTER_HOME, else $CLOSE2D365_HOME/dagster_home), with the project's dagster.yaml."""
    home = Path(os.environ.get(DAGSTER_HOME) or default_home() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if not config.exists() and source.exists():
        shutil.copyfile(source, config)
    os.environ[DAGSTER_HOME] = str(home)
    return home


def instance() -> dg.DagsterInstance:
    dagster_home()
    return dg.DagsterInstance.get()


# Which process runs a command-line run: a run whose process is gone (killed) is recognised and recovered.
# Its start time too: after a reboot, or in a new container (where the command is often pid 1 again), the
# pid may belong to another process, which must not keep the dead run "started" forever.
PID_TAG, HOST_TAG, STARTED_TAG = "close2d365/pid", "close2d365/host", "close2d365/process_started"
_IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process that ran a run still exists: that pid, started at that time (when tagged)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not reaped yet by its parent
            return False
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by someone else: cannot tell, so left alone
        return True
    try:
        # A second of slack: the start time is derived from the boot time, which a clock step moves.
        return started is None or abs(created - float(started)) < 1.0
    except ValueError:
        return True


def recover_dead_runs(inst: dg.DagsterInstance) -> list[str]:
    """Free what killed runs left behind, so that the next run does not wait forever for a pool slot.

    A run started by this command line whose process no longer exists is marked failed; every pool slot
    held by a run that is not in progress any more (killed, or canceled in the UI while a step held its
    slot) is freed. Returns one line per recovery, for the user."""
    lines: list[str] = []
    host = socket.gethostname()
    for record in inst.get_run_records(filters=dg.RunsFilter(statuses=_IN_PROGRESS)):
        run = record.dagster_run
        pid = run.tags.get(PID_TAG)
        if not pid or run.tags.get(HOST_TAG) != host or not pid.isdigit():
            continue
        if _alive(int(pid), run.tags.get(STARTED_TAG)):
            continue
        inst.report_run_failed(run, message=f"the process {pid} running it is gone (killed); recovered")
        lines.append(f"run {run.run_id} was left running by a process that is gone: marked failed")
    storage = inst.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            run = inst.get_run_by_id(run_id)
            if run is None or run.status not in _IN_PROGRESS:
                storage.free_concurrency_slots_for_run(run_id)
                lines.append(f"run {run_id} still held pool slots it no longer uses: freed")
    return lines


def run_job(
    job_name: str, *, tags: dict[str, str] | None = None, log_level: str = "CRITICAL"
) -> dg.ExecuteInProcessResult:
    """Execute a job of the one Definitions in this process, recorded on the shared instance.

    Resources resolve their EnvVars when the run starts, so callers set the environment first. What killed
    runs left behind (a run "started" forever, pool slots never freed) is recovered first, with a line
    saying so.
    """
    from migration_assets.definitions import build_definitions

    job = build_definitions().resolve_job_def(job_name)
    # The console logger would print every Dagster event, and a failed step as a stack trace; the CLI prints
    # its own summary (each failed step with its message) and the full event log stays on the instance for
    # the UI.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    inst = instance()
    for line in recover_dead_runs(inst):
        print(f"recovered: {line}", file=sys.stderr)
    me = psutil.Process()
    tags = {
        **(tags or {}),
        PID_TAG: str(me.pid),
        STARTED_TAG: f"{me.create_time():.3f}",
        HOST_TAG: socket.gethostname(),
    }
    return job.execute_in_process(instance=inst, tags=tags, run_config=run_config, raise_on_error=False)


@contextmanager
def patched_env(values: Mapping[str, str]) -> Iterator[None]:
    """Point the resources at other endpoints for the duration of a block (demo, tests)."""
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


def failed_steps(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """(step key, message with its cause) of every failed step of a run."""
    # A blocking check halts its step with Dagster's generic "1 blocking asset check failed" error: say
    # which check and why instead (its description carries the reason).
    failed_checks = {
        f"{'/'.join(e.asset_key.path)}: {e.check_name}": e.description
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }
    failures: list[tuple[str, str]] = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None and event.step_key:
            error = event.step_failure_data.error
            message = error.message.strip() if error else "failed"
            halted_by = [
                f"check {name} failed: {why or 'see the check in the UI'}"
                for name, why in failed_checks.items()
                if name in message
            ]
            if halted_by:
                message = "; ".join(halted_by)
            elif error and error.cause:
                message += f"\n    caused by: {error.cause.message.strip()}"
            failures.append((event.step_key, message))
    return failures


def start_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """Why a run failed outside any step (resources that could not start: a locked, corrupt or unwritable
    warehouse, a bad setting), each as its innermost cause: the message that names the problem."""
    out: list[str] = []
    for event in result.all_events:
        if event.event_type_value not in ("RESOURCE_INIT_FAILURE", "PIPELINE_FAILURE"):
            continue
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            message = error.message.strip().removeprefix("_duckdb.").splitlines()[0]
            if message not in out:
                out.append(message)
    return out


def step_metadata(result: dg.ExecuteInProcessResult) -> list[Mapping[str, Any]]:
    """The metadata of every materialization and check evaluation of the run."""
    metas: list[Mapping[str, Any]] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization is not None
    ]
    return metas + [e.metadata for e in result.get_asset_check_evaluations()]


def _print_calls(result: dg.ExecuteInProcessResult) -> None:
    calls = calls_line(run_call_totals(step_metadata(result)))
    if calls:
        print(f"  {calls}")


def print_job_outcome(result: dg.ExecuteInProcessResult, expected_halts: Sequence[str] = ()) -> int:
    """Print why a run failed (step and message, not a traceback); 0 when it succeeded.

    `expected_halts` are step-key fragments whose failure is the intended outcome (the demo's deliberately
    broken custom activity type): they are reported, and do not make the exit status non-zero.
    """
    failures = failed_steps(result)
    unexpected = [(k, m) for k, m in failures if not any(fragment in k for fragment in expected_halts)]
    for key, message in failures:
        expected = (key, message) not in unexpected
        label = "halted (expected in the demo)" if expected else "FAILED"
        print(f"  {label} {key}: {message}", file=sys.stdout if expected else sys.stderr)
    if not result.success and not failures:
        # No step failed, yet the run did: it could not start (the verdict is the run's own status).
        reasons = start_failures(result) or ["see the run in `close2d365 ui`"]
        for reason in reasons:
            print(f"  FAILED before the first step: {reason}", file=sys.stderr)
        print(f"run {result.run_id}: FAILED: it could not start", file=sys.stderr)
        return 2
    _print_calls(result)
    if result.success or not unexpected:
        print(f"run {result.run_id}: success" + (" with the expected halts above" if failures else ""))
        return 0
    print(f"run {result.run_id}: FAILED (see the run in `close2d365 ui` for details)", file=sys.stderr)
    return 2


def print_dry_run_outcome(result: dg.ExecuteInProcessResult) -> int:
    """The dry run's summary (every problem, its row count and fix, as reports/dry_run_review found them)
    and one last line: 0 when the plan is clean, 2 when it has problems.

    The exit status follows the run's status in the UI: the review's check `plan_clean` fails the run
    exactly when it lists a problem, so the CLI never says "problems" of a green run, nor "clean" of a red one.
    """
    from migration_assets.defs.jobs import REVIEW_KEY

    events = [e for e in result.get_asset_materialization_events() if e.asset_key == REVIEW_KEY]
    if not events or events[-1].materialization is None:
        # The review itself did not run (a bug, or the run was cut short): say why the run failed instead.
        return print_job_outcome(result)
    meta = events[-1].materialization.metadata
    problems = int(meta["problems"].value)  # type: ignore[arg-type]
    review = meta["review_file"].value
    summary = str(meta["summary"].value or "")
    if summary:
        print(summary)
    _print_calls(result)
    if problems == 0 and result.success:
        print(f"run {result.run_id}: the plan is clean (review: {review})")
        return 0
    what = f"{problems} problems" if problems else "the run failed"
    print(f"run {result.run_id}: {what}; fix them and dry-run again (review: {review})", file=sys.stderr)
    return 2


def reconciliation_text(run_id: str) -> str:
    """The reconciliation report of run `run_id` as a fixed-width table (for the terminal). Only this
    run's: an older report would describe another run (e.g. when this one stopped before the reports)."""
    from migration_assets.audit.reconciliation import RECON_COLUMNS

    path = default_home() / "reports" / run_id / "reconciliation.csv"
    if not path.is_file():
        return f"(run {run_id} wrote no reconciliation report: it stopped before the reports step)"
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
    result = run_job("migrate", tags=dict(tags or {}))
    status = print_job_outcome(result, expected_halts)
    print(reconciliation_text(result.run_id))
    return status


def run_delta(tags: Mapping[str, str] | None = None, expected_halts: Sequence[str] = ()) -> int:
    """`close2d365 delta`: the `delta` job on the shared instance, its outcome printed as `run` prints a
    migration's. The delta reconciles nothing (its requests follow the change): `cutover` verifies."""
    from migration_assets.defs.jobs import DELTA_JOB

    return print_job_outcome(run_job(DELTA_JOB, tags=dict(tags or {})), expected_halts)


def launch_ui(port: int = 3000, env: Mapping[str, str] | None = None) -> int:
    """Run the Dagster UI on the project's workspace and the shared instance (blocks until Ctrl-C)."""
    home = dagster_home()
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-p", str(port)]
    print(f"Dagster UI on http://127.0.0.1:{port}  (instance: {home}); Ctrl-C to stop.", flush=True)
    try:
        return subprocess.call(
            cmd,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {}), DAGSTER_HOME: str(home)},
            umask=PRIVATE_UMASK,  # the UI's processes write run databases and reports too
        )
    except KeyboardInterrupt:
        return 0


def last_extraction_time() -> str | None:
    """When close/lead_statuses was last materialized on the shared instance (None when unknown): the
    header of proposed mapping files says which extraction they describe."""
    from datetime import UTC, datetime

    try:
        event = instance().get_latest_materialization_event(dg.AssetKey(["close", "lead_statuses"]))
    except Exception:  # noqa: BLE001 - the time only annotates the header
        return None
    return (
        None if event is None else datetime.fromtimestamp(event.timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
    )
