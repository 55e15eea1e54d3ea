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
from migration_assets.resources.progress import console_progress
from migration_assets.resources.warehouse import default_home
from migration_assets.step_threads import execute_in_this_process

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
    job_name: str,
    *,
    tags: dict[str, str] | None = None,
    log_level: str = "CRITICAL",
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute a job of the one Definitions in this process, recorded on the shared instance (only
    `asset_selection` of its assets when given: a partial re-materialization, as the UI launches one).

    Resources resolve their EnvVars when the run starts, so callers set the environment first. What killed
    runs left behind (a run "started" forever, pool slots never freed) is recovered first, with a line
    saying so. The long steps' progress shows on stdout while the job runs (resources/progress.py).
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
    with console_progress(sys.stdout):
        return execute_in_this_process(
            job,
            instance=inst,
            tags=tags,
            run_config=run_config,
            raise_on_error=False,
            asset_selection=list(asset_selection) if asset_selection is not None else None,
        )


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


def check_reasons(description: str | None) -> list[str]:
    """A failed check's reasons: its description split where a check joins them ("; "), but not inside
    parentheses, where a reason lists its own parts the same way."""
    reasons: list[str] = []
    depth, start = 0, 0
    text = description or ""
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and text.startswith("; ", i):
            reasons.append(text[start:i])
            start = i + 2
    reasons.append(text[start:])
    return [r.strip() for r in reasons if r.strip()] or ["see the check in `close2d365 ui`"]


def failed_steps(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """(step key, message with its cause) of every failed step of a run; a step halted by a check is keyed
    as the asset's step, its message names the check ("asset: check", as the UI does) and lists the
    reasons one per line (the demo's halt was once one line of 440 characters)."""
    # A blocking check halts its step with Dagster's generic "1 blocking asset check failed" error: say
    # which check and why instead (its description carries the reason).
    failed_checks = {
        f"{'/'.join(e.asset_key.path)}: {e.check_name}": (e.check_name, e.description)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }
    failures: list[tuple[str, str]] = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None and event.step_key:
            error = event.step_failure_data.error
            message = error.message.strip() if error else "failed"
            step = event.step_key
            halted_by = [
                (name, check, why) for name, (check, why) in failed_checks.items() if name in message
            ]
            if halted_by:
                message = "".join(
                    f"\n    check {name} failed:" + "".join(f"\n      - {r}" for r in check_reasons(why))
                    for name, _, why in halted_by
                )
                # A check's own step is keyed `<asset step>_<check name>`: the message names the check.
                step = next(
                    (
                        step.removesuffix(f"_{check}")
                        for _, check, _ in halted_by
                        if step.endswith(f"_{check}")
                    ),
                    step,
                )
            elif error and error.cause:
                message += f"\n    caused by: {error.cause.message.strip()}"
            failures.append((step, message))
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


EXPECTED_HALT = 3  # print_job_outcome: the run failed on the demo's expected halts alone


def print_job_outcome(result: dg.ExecuteInProcessResult, expected_halts: Sequence[str] = ()) -> int:
    """Print why a run failed (step and message, not a traceback); 0 when it succeeded.

    `expected_halts` are step-key fragments whose failure is the intended outcome (the demo's deliberately
    broken custom activity type): they are reported as such and answered with EXPECTED_HALT, for the demo to
    apply the fix. The verdict word is always the run's status in the UI: a run with a halt failed there.
    """
    failures = failed_steps(result)
    unexpected = [(k, m) for k, m in failures if not any(fragment in k for fragment in expected_halts)]
    for key, message in failures:
        expected = (key, message) not in unexpected
        label = "halted (expected in the demo)" if expected else "FAILED"
        separator = "" if message.startswith("\n") else " "  # a check's halt starts on the next line
        print(f"  {label} {key}:{separator}{message}", file=sys.stdout if expected else sys.stderr)
    if not result.success and not failures:
        # No step failed, yet the run did: it could not start (the verdict is the run's own status).
        reasons = start_failures(result) or ["see the run in `close2d365 ui`"]
        for reason in reasons:
            print(f"  FAILED before the first step: {reason}", file=sys.stderr)
        print(f"run {result.run_id}: FAILED: it could not start", file=sys.stderr)
        return 2
    _print_calls(result)
    if result.success:
        print(f"run {result.run_id}: success")
        return 0
    if not unexpected:
        print(f"run {result.run_id}: failure: only the halts above, which the demo expects (its fix follows)")
        return EXPECTED_HALT
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
    predicted = predicted_load_line(result)
    if predicted:
        print(predicted)
    _print_calls(result)
    if problems == 0 and result.success:
        print(f"run {result.run_id}: the plan is clean (review: {review})")
        return 0
    what = f"{problems} problems" if problems else "the run failed"
    print(f"run {result.run_id}: {what}; fix them and dry-run again (review: {review})", file=sys.stderr)
    return 2


def predicted_load_line(result: dg.ExecuteInProcessResult) -> str | None:
    """What the real load will take under the target's limits, from the run's load plan (load/estimate.py):
    its requests, the service-protection floor on its duration and the days of request entitlement."""
    plans = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "load_plan" and e.materialization is not None
    ]
    if not plans:
        return None
    meta = {k: getattr(v, "value", v) for k, v in plans[-1].items()}
    return (
        f"Predicted load: {meta['http_requests']:,} requests to Dataverse, at least "
        f"{meta['min_minutes_service_protection']} min under its service-protection limits "
        f"({meta['app_users']} application user(s), 6,000 requests per 5 min each); "
        f"{meta['entitlement_requests']:,} entitlement requests = {meta['days_of_entitlement']} day(s) of the "
        f"daily pool of {meta['daily_entitlement_pool']:,}"
    )


def reconciliation_text(run_id: str) -> str:
    """The reconciliation report of run `run_id` as a fixed-width table (for the terminal). Only this
    run's: an older report would describe another run (e.g. when this one stopped before the reports)."""
    from migration_assets.audit.reconciliation import RECON_COLUMNS

    path = default_home() / "reports" / run_id / "reconciliation.csv"
    if not path.is_file():
        return f"(run {run_id} wrote no reconciliation report: it stopped before the reports step)"
    with path.open(encoding="utf-8") as fh:
        rows = [{c: terminal_cell(r.get(c) or "") for c in RECON_COLUMNS} for r in csv.DictReader(fh)]
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in RECON_COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(RECON_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(r[c].ljust(w) for c, w in zip(RECON_COLUMNS, widths, strict=True)) for r in rows]
    skipped = skipped_files_line(path.parent)
    return "\n".join(lines) + (f"\n{skipped}" if skipped else "") + f"\n\nReports: {path.parent}"


# A halted table's status carries the whole halt reason (kept in full in reconciliation.csv); on the
# terminal it would widen every row of the table to hundreds of characters, and the run's halt lines above
# the table already give the reason.
TERMINAL_CELL_CHARS = 100


def terminal_cell(text: str) -> str:
    """`text` on one line, cut to TERMINAL_CELL_CHARS with a pointer to the full text in the CSV."""
    text = " ".join(text.split())
    if len(text) <= TERMINAL_CELL_CHARS:
        return text
    tail = "... (in full in reconciliation.csv)"
    return text[: TERMINAL_CELL_CHARS - len(tail)].rstrip() + tail


def skipped_files_line(folder: Path) -> str | None:
    """The files this run did not load because of their size, said on the terminal (they are rows of
    oversize_attachments.csv in the run's folder, never silently dropped)."""
    path = folder / "oversize_attachments.csv"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as fh:
        count = sum(1 for _ in csv.DictReader(fh))
    if not count:
        return None
    files = "1 file was" if count == 1 else f"{count:,} files were"
    return (
        f"{files} not loaded: above the target's upload limit (organization.maxuploadfilesize); listed in "
        "oversize_attachments.csv with each size"
    )


def run_migration(tags: Mapping[str, str] | None = None, expected_halts: Sequence[str] = ()) -> int:
    """`close2d365 run`: the `migrate` job on the shared instance (resources from the environment), then the
    reconciliation table and where the reports are. Returns the process exit status."""
    result = run_job("migrate", tags=dict(tags or {}))
    status = print_job_outcome(result, expected_halts)
    print(reconciliation_text(result.run_id))
    return status


def rematerialize(keys: Sequence[dg.AssetKey], tags: Mapping[str, str] | None = None) -> int:
    """A partial re-materialization of the `migrate` job (`keys` only), its outcome and, when it produced
    one, its own reconciliation."""
    print("  materializing: " + ", ".join(k.to_user_string() for k in keys), flush=True)
    result = run_job("migrate", tags=dict(tags or {}), asset_selection=keys)
    status = print_job_outcome(result)
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
