"""Benchmark of the delta cutover (issue 13): a full migration, ~1% of Close changed, the `delta` job (prints
figures; not a test).

    python bench/delta.py [--size typical] [--seed 1] [--fraction 0.01] [--close-latency]

1. A generated org is extracted, proposed and reviewed (scripted), then migrated in full by the `migrate` job
   against the Dataverse emulator (limits off; Close's rate limits off too). Both emulators run in their own
   processes, as in bench/e2e.py: the tool's process settings (resources/heap.py) and its GIL stay its own.
2. About `--fraction` of the records of each migrated type are changed through the Close emulator's HTTP API:
   leads renamed, contacts, opportunities, tasks and activities of every type edited; a few created and
   deleted; two leads merged (`POST /lead/merge/`).
3. The `delta` job runs (Close read in delta mode, only the affected rows staged, the changed rows loaded).
Prints side by side the wall time and the Dataverse requests of the full migration and of the delta, their
ratios against the issue's targets (delta < 10% of the wall time, < 2% of the requests), the delta's time per
step group (close, staged, loaded, ...) and how each staged table was staged (incremental or full, why).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the graph runner shared with tests
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/e2e.py: the Dataverse emulator process

import dagster as dg  # noqa: E402
import httpx  # noqa: E402
from e2e import CloseProcess, DataverseProcess, peak_rss_mb, step_timeline, work_dir  # noqa: E402

from emulators.close.config import CloseEmulatorConfig, LatencyConfig, RateLimitConfig  # noqa: E402
from emulators.close.latency import REALISTIC as CLOSE_REALISTIC  # noqa: E402
from emulators.dataverse.config import DataverseEmulatorConfig  # noqa: E402
from emulators.orgdata import CloseOrg, generate  # noqa: E402
from migration_assets.resources.api_calls import run_call_totals  # noqa: E402
from migration_assets.step_threads import execute_in_this_process, step_threads_executor  # noqa: E402

TARGET_WALL, TARGET_REQUESTS = 0.10, 0.02  # the delta's share of a full migration (issue 13)
PHASES = ("close", "staged", "schema", "loaded", "reports", "audit")
# Close activity type (orgdata `_type`) -> its API path and an edit the Close API accepts.
ACTIVITY_EDITS = {
    "Call": ("activity/call", {"note": "Edited during the migration window"}),
    "Email": ("activity/email", {"subject": "Edited during the migration window"}),
    "SMS": ("activity/sms", {"text": "Edited during the migration window"}),
    "Meeting": ("activity/meeting", {"user_note": "Edited during the migration window"}),
    "Note": ("activity/note", {"note": "Edited during the migration window"}),
    "Custom": ("activity/custom", {"pinned": True}),
}


def job_defs(resources: dict[str, Any]) -> dg.Definitions:
    from migration_assets import defs as defs_package
    from migration_assets.defs.jobs import all_jobs

    return dg.Definitions(
        assets=dg.load_assets_from_package_module(defs_package),
        asset_checks=dg.load_asset_checks_from_package_module(defs_package),
        jobs=all_jobs(),
        resources=resources,
        executor=step_threads_executor,  # as the product's Definitions
    )


def run_job(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, run_config: dict[str, Any]
) -> tuple[dg.ExecuteInProcessResult, float]:
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    started = time.monotonic()
    result = execute_in_this_process(
        defs.resolve_job_def(name), instance=instance, run_config={**run_config, **quiet}
    )
    return result, time.monotonic() - started


def step_seconds(result: dg.ExecuteInProcessResult, whole_key: bool = False) -> dict[str, float]:
    """Seconds per step group (the first part of the step key: close, staged, loaded, ...), or per step."""
    out: Counter[str] = Counter()
    for ev in result.all_events:
        if ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key:
            duration = getattr(ev.event_specific_data, "duration_ms", None)
            if duration is not None:
                out[ev.step_key if whole_key else ev.step_key.split("__")[0]] += duration / 1000
    return dict(out)


def dataverse_requests(result: dg.ExecuteInProcessResult) -> int:
    metadata = [
        ev.event_specific_data.materialization.metadata
        for ev in result.all_events
        if ev.event_type_value == "ASSET_MATERIALIZATION"
    ]
    metadata += [e.metadata for e in result.get_asset_check_evaluations()]
    return run_call_totals(metadata).get("dataverse_requests", 0)


def requests_by_asset(result: dg.ExecuteInProcessResult) -> Counter[str]:
    """Dataverse requests per materialized asset or check (asset key, `:check` for a check's share)."""
    out: Counter[str] = Counter()
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            m = ev.event_specific_data.materialization
            n = run_call_totals([m.metadata]).get("dataverse_requests", 0)
            if n:
                out["/".join(m.asset_key.path)] += n
    for check in result.get_asset_check_evaluations():
        n = run_call_totals([check.metadata]).get("dataverse_requests", 0)
        if n:
            out[f"{'/'.join(check.asset_key.path)}:{check.check_name}"] += n
    return out


def staging_modes(result: dg.ExecuteInProcessResult) -> list[tuple[str, str, Any, str]]:
    """(staged table, mode, rows re-staged, why in full) of each staged table the run materialized."""
    out = []
    for ev in result.all_events:
        if ev.event_type_value != "ASSET_MATERIALIZATION":
            continue
        m = ev.event_specific_data.materialization
        meta = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
        if m.asset_key.path[0] == "staged" and "staging_mode" in meta:
            out.append(
                (
                    "/".join(m.asset_key.path[1:]),
                    str(meta["staging_mode"]),
                    meta.get("restaged_rows", "-"),
                    str(meta.get("full_restage_reason", "")),
                )
            )
    return sorted(out)


class _RequestTrace(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Dataverse request "):
            method, url = record.args[:2]  # type: ignore[index]
            self.lines.append(f"{method} {str(url).split('/api/data/', 1)[-1][:160]}")


@contextlib.contextmanager
def traced_requests(on: bool) -> Iterator[list[str]]:
    """The transport's debug line of each request ("Dataverse request METHOD URL"), collected while on."""
    handler = _RequestTrace()
    logger = logging.getLogger("migration_assets.clients.dataverse.transport")
    level = logger.level
    if on:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def sample(items: list[dict[str, Any]], fraction: float, busy: set[str]) -> list[dict[str, Any]]:
    """Every n-th item (about `fraction` of them, at least one) whose lead is not in `busy`."""
    free = [i for i in items if i.get("lead_id", i.get("id")) not in busy]
    step = max(1, round(1 / fraction))
    return free[::step] or free[:1]


def change_close(http: httpx.Client, org: CloseOrg, fraction: float) -> Counter[str]:
    """About `fraction` of the records of each migrated type changed through the Close API."""
    done: Counter[str] = Counter()

    def call(method: str, path: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = http.request(method, path, json=body)
        if response.status_code not in (200, 201, 204):
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
        done[what] += 1
        return response.json() if response.content else {}

    leads = sorted(org.leads, key=lambda o: o["id"])
    source, destination, removed = leads[1], leads[2], leads[3]
    busy = {source["id"], destination["id"], removed["id"]}
    call("POST", "lead/merge/", "lead merged", {"source": source["id"], "destination": destination["id"]})
    call("DELETE", f"lead/{removed['id']}/", "lead deleted")
    for lead in sample(leads, fraction, busy):
        call(
            "PUT",
            f"lead/{lead['id']}/",
            "lead updated",
            {"description": "Edited during the migration window"},
        )
    for contact in sample(org.contacts, fraction, busy):
        call("PUT", f"contact/{contact['id']}/", "contact updated", {"title": "Delta title"})
    for opp in sample(org.opportunities, fraction, busy):
        call("PUT", f"opportunity/{opp['id']}/", "opportunity updated", {"note": "Revised in the window"})
    for task in sample(org.tasks, fraction, busy):
        call("PUT", f"task/{task['id']}/", "task updated", {"text": "Follow up (edited)"})
    for type_, (path, edit) in ACTIVITY_EDITS.items():
        activities = [a for a in org.activities if a.get("_type") == type_]
        for activity in sample(activities, fraction, busy):
            call("PUT", f"{path}/{activity['id']}/", f"{type_.lower()} updated", edit)
    target = leads[-1]["id"]
    call("POST", "lead/", "lead created", {"name": "Delta Window Ltd"})
    call("POST", "contact/", "contact created", {"lead_id": target, "name": "Dana Delta"})
    call("POST", "activity/note/", "note created", {"lead_id": target, "note": "Written in the window"})
    return done


def cpu_seconds() -> float:
    """CPU time of this process so far (user and system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def print_side_by_side(full: tuple[float, int], delta: tuple[float, int]) -> None:
    (full_s, full_req), (delta_s, delta_req) = full, delta
    wall = delta_s / full_s if full_s else 0.0
    req = delta_req / full_req if full_req else 0.0
    print(f"\n{'':<22}{'full migration':>16}{'delta':>12}{'ratio':>9}  target")
    print(
        f"{'wall time (s)':<22}{full_s:>16.1f}{delta_s:>12.1f}{wall:>9.1%}  < {TARGET_WALL:.0%}: "
        f"{'PASS' if wall < TARGET_WALL else 'FAIL'}"
    )
    print(
        f"{'Dataverse requests':<22}{full_req:>16,}{delta_req:>12,}{req:>9.2%}  < {TARGET_REQUESTS:.0%}: "
        f"{'PASS' if req < TARGET_REQUESTS else 'FAIL'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="typical", choices=["tiny", "demo", "typical", "large"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=0.01, help="share of each type's records changed")
    parser.add_argument(
        "--trace", action="store_true", help="list every Dataverse request of the delta, in order"
    )
    parser.add_argument("--steps", action="store_true", help="list every step of the delta with its time")
    parser.add_argument(
        "--close-latency",
        action="store_true",
        help="Close answers with its latency model on (emulators/close/latency.py REALISTIC) in both runs",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (removed by default)")
    args = parser.parse_args()
    with work_dir("close2d365-bench-delta-", args.keep) as work:
        return bench(args, work)


def bench(args: argparse.Namespace, work: Path) -> int:
    os.environ["CLOSE2D365_HOME"] = str(work / "home")
    maps = work / "mappings"
    os.environ["CLOSE2D365_MAPPINGS"] = str(maps)
    import run_graph as rg

    from migration_assets import demo
    from migration_assets.defs.jobs import DELTA_JOB, DELTA_RUN_CONFIG

    # The same generated org as the emulator's (same size and seed): the records the bench changes are chosen
    # from it.
    org = generate(args.size, args.seed)
    print(
        f"org '{args.size}' generated; work dir {work}{'' if args.keep else ' (removed at the end)'}; load average {os.getloadavg()[0]:.1f}"
    )
    warehouse = work / "warehouse.duckdb"
    close_config = CloseEmulatorConfig(
        rate_limit=RateLimitConfig(requests_per_second=100_000.0),
        latency=CLOSE_REALISTIC if args.close_latency else LatencyConfig(),
    )
    with CloseProcess(args.size, args.seed, close_config) as close:
        os.environ.update({"CLOSE_API_KEY": close.api_key, "CLOSE_BASE_URL": close.base_url})
        with DataverseProcess(DataverseEmulatorConfig(seed_users=close.dynamics_users)) as dv:
            os.environ.update(dv.env())
            resources = rg.resources_for(warehouse)
            extract = rg.materialize_migration(
                resources, dg.AssetSelection.groups("close"), log_level="CRITICAL"
            )
            assert extract.success, "the extraction failed"
            decisions = demo.demo_decisions(demo.first_enabled_user(org.dynamics_users))
            rg.reviewed_mappings(maps, decisions, resources["warehouse"])
            demo.reload_generated_assets()
            defs = job_defs(resources)
            instance = dg.DagsterInstance.ephemeral()

            migrate, full_s = run_job(defs, "migrate", instance, {})
            full_req = dataverse_requests(migrate)
            print(
                f"full migration: {full_s:.1f} s, {full_req:,} Dataverse requests, success {migrate.success}"
            )

            with httpx.Client(
                base_url=close.base_url.rstrip("/") + "/", auth=(close.api_key, ""), timeout=60
            ) as http:
                started = time.monotonic()
                changed = change_close(http, org, args.fraction)
            print(
                f"changed in Close in {time.monotonic() - started:.1f} s: "
                + ", ".join(f"{n} {what}" for what, n in sorted(changed.items()))
            )

            load = os.getloadavg()[0]
            cpu = cpu_seconds()
            with traced_requests(args.trace) as trace:
                delta, delta_s = run_job(defs, DELTA_JOB, instance, DELTA_RUN_CONFIG)
            cpu = cpu_seconds() - cpu
            delta_req = dataverse_requests(delta)
    steps = len(step_seconds(delta, whole_key=True))
    print(
        f"delta run: success {delta.success}; load average before it {load:.1f}, after it "
        f"{os.getloadavg()[0]:.1f}; {steps} steps; {cpu:.1f} s of CPU in the tool's process (a busy "
        f"machine stretches the wall time, not this); peak RSS {peak_rss_mb():.0f} MB"
    )
    failed = sorted({e.step_key for e in delta.all_events if e.is_step_failure and e.step_key})
    if failed:
        print(f"  failed steps: {failed}")
    print_side_by_side((full_s, full_req), (delta_s, delta_req))
    full_steps, delta_steps = step_seconds(migrate), step_seconds(delta)
    print(f"\n{'step group (s)':<22}{'full migration':>16}{'delta':>12}")
    for phase in sorted(set(full_steps) | set(delta_steps), key=lambda p: (p not in PHASES, p)):
        print(f"{phase:<22}{full_steps.get(phase, 0.0):>16.1f}{delta_steps.get(phase, 0.0):>12.1f}")
    by_asset = requests_by_asset(delta).most_common(25)
    print("\nDataverse requests of the delta by asset: " + ", ".join(f"{k} {n}" for k, n in by_asset))
    by_step = sorted(step_seconds(delta, whole_key=True).items(), key=lambda kv: -kv[1])
    print("\nslowest steps of the delta: " + ", ".join(f"{k} {v:.1f} s" for k, v in by_step[:15]))
    if args.steps:
        print(f"\nevery step of the delta ({len(by_step)}, {sum(v for _, v in by_step):.1f} s in steps):")
        for key, seconds in by_step:
            print(f"  {seconds:6.2f} s  {key}")
        # When each step ran: what waited for what (pools, dependencies) and how much ran at once.
        timeline = step_timeline(instance, delta.run_id)
        print(f"\ntimeline of the delta ({len(timeline)} steps; start and end, s from the run's start):")
        for key, start, end in timeline:
            print(f"  {start:6.2f} {end:6.2f}  {key}")
    print("\nstaged tables in the delta (mode, rows re-staged, why in full):")
    for table, mode, rows, why in staging_modes(delta):
        print(f"  {table:<44} {mode:<12} {rows!s:>7}  {why if mode == 'full' else ''}")
    if args.trace:
        print(f"\nDataverse requests of the delta, in order ({len(trace)}):")
        for line in trace:
            print(f"  {line}")
    return 0 if delta.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
