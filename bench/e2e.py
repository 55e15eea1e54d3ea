"""End-to-end benchmark of the migration graph against both emulators (prints figures; not a test).

    python bench/e2e.py [--size typical] [--seed 1] [--mode both|off|limits] [--window 300] [--cost-record 10]

Run 1, limits off (both emulators; `--close-limits` keeps Close's rate limits on): the whole graph (close -> staged -> schema -> loaded -> reports) on a generated org.
Run 2, service-protection limits on: schema, then the load again on a fresh Dataverse emulator, from the
staged warehouse of run 1, under the real limits per application user (6,000 requests and 1,200,000 ms of
execution time per 300 s sliding window, 52 concurrent). Each request is charged `--cost-request` ms plus
`--cost-record` ms per record or `$batch` part (default 10 ms: a `typical` load then needs more execution
time than one window grants, so the limits bind). `--window W` keeps the real rates over a shorter window
(budgets scaled to it: 30 s gives 600 requests and 120,000 ms), a harsher test: a pause of the loader longer
than the window wastes budget. From the requests and the execution time the emulator admitted during the
load, the bench derives the shortest load time the limits permit and prints the share of that throughput
the load achieved (target 80% of the sustained rate; the share of the shorter bound a short
load could reach with the first window's burst is printed too).
Per phase: wall time; for the load: records/s, requests per 1,000 records, 429s; peak memory (RSS).
The Dataverse emulator runs in its own process so that it does not share the loader's GIL.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the graph runner shared with tests

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import httpx  # noqa: E402

from emulators.close.config import CloseEmulatorConfig, RateLimitConfig  # noqa: E402
from emulators.close.server import CloseEmulatorServer  # noqa: E402
from emulators.dataverse.config import DataverseEmulatorConfig, ServiceProtection  # noqa: E402
from emulators.orgdata import generate  # noqa: E402

TARGET_PER_1000 = 5  # requests per 1,000 records on bulk-capable tables (the target)
TARGET_SHARE = 0.8  # of the throughput the service-protection limits allow
REAL = ServiceProtection(enabled=True)  # 6000 req / 300 s, 1,200,000 ms, 52 concurrent


def _serve(config: DataverseEmulatorConfig, conn: Any) -> None:
    from emulators.dataverse.server import EmulatorServer

    with EmulatorServer(config) as server:
        conn.send((server.base_url, server.ca_bundle))
        conn.recv()


class DataverseProcess:
    def __init__(self, config: DataverseEmulatorConfig) -> None:
        self.config = config
        self.parent, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_serve, args=(config, child), daemon=True)

    def __enter__(self) -> DataverseProcess:
        self.proc.start()
        self.base_url, self.ca_bundle = self.parent.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self.parent.send("stop")
        self.proc.join(timeout=30)

    def control(self, document: dict[str, Any] | None = None) -> dict[str, Any]:
        """The emulator's admin route: its limits and per-user statistics (POST changes them first)."""
        url = self.base_url + "/_emulator/faults"
        if document is None:
            resp = httpx.get(url, verify=self.ca_bundle)
        else:
            resp = httpx.post(url, json=document, verify=self.ca_bundle)
        resp.raise_for_status()
        return resp.json()

    def env(self) -> dict[str, str]:
        u = self.config.app_users[0]
        return {
            "DATAVERSE_URL": self.base_url,
            "DATAVERSE_TENANT_ID": self.config.tenant_id,
            "DATAVERSE_CLIENT_IDS": u.client_id,
            "DATAVERSE_CLIENT_SECRETS": u.client_secret,
            "DATAVERSE_AUTHORITY_HOST": self.base_url,
            "DATAVERSE_CA_BUNDLE": self.ca_bundle,
        }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def figures(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    phases: Counter[str] = Counter()
    loaded = {"records": 0, "requests": 0, "throttled": 0, "retried": 0, "seconds": 0.0}
    tables: dict[str, dict[str, Any]] = {}
    for ev in result.all_events:
        if ev.event_type_value == "STEP_SUCCESS":
            phases[(ev.step_key or "").split("__")[0]] += ev.event_specific_data.duration_ms / 1000
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            m = ev.event_specific_data.materialization
            if m.asset_key.path[0] == "loaded":
                meta = {k: v.value for k, v in m.metadata.items()}
                loaded["records"] += int(meta.get("created", 0)) + int(meta.get("updated", 0))
                loaded["requests"] += int(meta.get("write_requests", 0))
                loaded["throttled"] += int(meta.get("dataverse_throttled_429", 0))
                loaded["retried"] += int(meta.get("dataverse_retries", 0))
                loaded["seconds"] += float(meta.get("seconds", 0.0))
                tables["/".join(m.asset_key.path[1:])] = meta
    return {"phases": dict(phases), "loaded": loaded, "tables": tables}


def per_table(tables: dict[str, dict[str, Any]]) -> None:
    """Requests per 1,000 written records per table, bulk-capable and `$batch` tables apart; the
    <= 5 target (TARGET_PER_1000) is judged on the bulk-capable ones."""
    for path in ("bulk", "$batch"):
        rows = {t: m for t, m in tables.items() if m.get("write_path") == path}
        if not rows:
            continue
        written = sum(int(m.get("created", 0)) + int(m.get("updated", 0)) for m in rows.values())
        requests = sum(int(m.get("write_requests", 0)) for m in rows.values())
        per_k = 1000 * requests / written if written else 0.0
        verdict = ("PASS" if per_k <= TARGET_PER_1000 else "FAIL") if path == "bulk" else "no target"
        print(
            f"  {path} tables: {written} records, {requests} requests = {per_k:.1f} per 1,000 "
            f"(target <= {TARGET_PER_1000}: {verdict})"
        )
        for table, m in sorted(rows.items()):
            w = int(m.get("created", 0)) + int(m.get("updated", 0))
            secs = float(m.get("seconds", 0.0))
            print(
                f"    {table:<28} {w:>7} written in {secs:6.1f} s {int(m.get('requests', 0)):>6} requests  "
                f"{m.get('requests_per_1000')!s:>6} per 1,000  reads: {m.get('existing_read', '?'):<4}  "
                f"{table_verdict(m)}"
            )


def table_verdict(meta: dict[str, Any]) -> str:
    """The <= TARGET_PER_1000 verdict of one loaded/* table (the assets carry only the figure)."""
    per_k = meta.get("requests_per_1000")
    if per_k is None:
        return "n/a (nothing written)"
    if meta.get("write_path") != "bulk":
        return "n/a ($batch table)"
    return f"{'PASS' if float(per_k) <= TARGET_PER_1000 else 'FAIL'} (<= {TARGET_PER_1000})"


def report(title: str, figs: dict[str, Any], wall: float) -> None:
    ld = figs["loaded"]
    rate = ld["records"] / ld["seconds"] if ld["seconds"] else 0.0
    per_k = 1000 * ld["requests"] / ld["records"] if ld["records"] else 0.0
    print(f"\n== {title} ==  wall {wall:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
    for phase in ("close", "staged", "schema", "loaded", "reports"):
        if phase in figs["phases"]:
            print(f"  {phase:<8} {figs['phases'][phase]:8.1f} s")
    print(
        f"  load: {ld['records']} records written in {ld['seconds']:.1f} s = {rate:.0f} records/s, "
        f"{per_k:.1f} requests per 1,000 records, {ld['retried']} retries, {ld['throttled']} throttled (429)"
    )
    per_table(figs["tables"])


def scaled_limits(args: argparse.Namespace) -> ServiceProtection:
    """The real per-user rates over a `--window`-second sliding window (budgets scaled to the window)."""
    scale = args.window / REAL.window_seconds
    return dataclasses.replace(
        REAL,
        window_seconds=args.window,
        max_requests=max(1, round(REAL.max_requests * scale)),
        max_execution_ms=max(1, round(REAL.max_execution_ms * scale)),
        cost_ms_per_request=args.cost_request,
        cost_ms_per_record=args.cost_record,
    )


def limits_share(limits: ServiceProtection, stats: dict[str, Any], load_on: float, load_off: float) -> None:
    """Print what the limits allow for the work the emulator admitted during the load, and the share of it
    the load achieved. Sustained, the limits allow one budget of requests and execution time per window:
    the load's work takes `x` windows at that rate (the target's measure: a long migration runs at this
    rate). A short load also gets the first window's budget at once; since no window may hold more than
    one budget, it still cannot end before (ceil(x) - 1) windows have passed."""
    users = stats["stats"]["protection"]
    windows, binding = 0.0, "none"
    for user, u in users.items():
        by_requests = u["admitted"] / limits.max_requests
        by_time = u["charged_ms"] / limits.max_execution_ms
        if max(by_requests, by_time) > windows:
            windows = max(by_requests, by_time)
            binding = f"{'execution time' if by_time >= by_requests else 'request count'} ({user[:8]}…)"
        throttled = u["throttled_requests"] + u["throttled_execution_time"] + u["throttled_concurrency"]
        print(
            f"  emulator, user {user[:8]}…: {u['admitted']} requests admitted, {u['charged_ms']:,.0f} ms "
            f"charged, {u['records']} records/parts, 429s: {throttled} "
            f"(requests {u['throttled_requests']}, execution time {u['throttled_execution_time']}, "
            f"concurrency {u['throttled_concurrency']})"
        )
    steady = windows * limits.window_seconds
    burst = max(math.ceil(windows) - 1, 0) * limits.window_seconds
    print(
        f"  limits: {limits.max_requests} requests and {limits.max_execution_ms:,} ms per {limits.window_seconds:g} s "
        f"per user (the real rates), cost {limits.cost_ms_per_request:g} ms/request + "
        f"{limits.cost_ms_per_record:g} ms/record; binding: {binding}; the load's work = {windows:.2f} budgets"
    )
    if not load_on:
        return
    # Neither bound can be beaten by a load slower than the limits: the tool's own limits-off time counts.
    sustained = max(steady, load_off) / load_on
    short = max(burst, load_off) / load_on
    print(
        f"  load under limits took {load_on:.1f} s (limits off {load_off:.1f} s); at the sustained rate the "
        f"limits allow {steady:.1f} s: {100 * sustained:.0f}% of the allowed throughput "
        f"(target >= {TARGET_SHARE:.0%}: {'PASS' if sustained >= TARGET_SHARE else 'FAIL'}); "
        f"with the first window's burst {burst:.1f} s: {100 * short:.0f}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="typical", choices=["tiny", "demo", "typical", "large"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", default="both", choices=["both", "off", "limits"])
    parser.add_argument("--window", type=float, default=300.0, help="sliding window, s (real: 300)")
    parser.add_argument("--cost-request", type=float, default=2.0, help="simulated ms charged per request")
    parser.add_argument(
        "--cost-record", type=float, default=10.0, help="simulated ms charged per record or $batch part"
    )
    parser.add_argument(
        "--close-limits", action="store_true", help="keep the Close emulator's rate limits on in both runs"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="close2d365-bench-"))
    os.environ["CLOSE2D365_HOME"] = str(work / "home")
    import run_graph as rg

    from migration_assets import demo

    started = time.monotonic()
    org = generate(args.size, args.seed)
    print(f"org '{args.size}' generated in {time.monotonic() - started:.1f} s; work dir {work}")
    maps = work / "mappings"
    os.environ["CLOSE2D365_MAPPINGS"] = str(maps)
    seed_users = [dict(u) for u in org.dynamics_users]
    warehouse = work / "warehouse.duckdb"
    # "Limits off" is both emulators': Close's own rate limits (20 requests/s per endpoint group) would
    # otherwise bound the attachment downloads (one request each), whatever the loader does. The client
    # paces itself by the RateLimit header Close always sends, so "off" is a limit too high to matter.
    close_rate = RateLimitConfig() if args.close_limits else RateLimitConfig(requests_per_second=100_000.0)
    close_config = CloseEmulatorConfig(rate_limit=close_rate)
    with CloseEmulatorServer(org, close_config) as close:
        os.environ.update({"CLOSE_API_KEY": org.api_key, "CLOSE_BASE_URL": close.base_url})
        with DataverseProcess(DataverseEmulatorConfig(seed_users=seed_users)) as dv:
            os.environ.update(dv.env())
            # The user's flow before the run: extract, propose-mapping, the scripted review.
            extract = rg.materialize_migration(
                rg.resources_for(warehouse),
                dg.AssetSelection.groups("close"),
                log_level="CRITICAL",
            )
            assert extract.success, "the extraction failed"
            decisions = demo.demo_decisions(demo.first_enabled_user(org.dynamics_users))
            rg.reviewed_mappings(maps, decisions, rg.resources_for(warehouse)["warehouse"])
            demo.reload_generated_assets()
            t = time.monotonic()
            result = rg.materialize_migration(rg.resources_for(warehouse), log_level="CRITICAL")
            first = figures(result)
            report("run 1: whole graph, limits off", first, time.monotonic() - t)
            failed = sorted({e.step_key for e in result.all_events if e.is_step_failure})
            if failed:
                print(f"  failed steps (expected: halted custom activity types only): {failed}")
        if args.mode in ("both", "limits"):
            copy = work / "warehouse_limits.duckdb"
            shutil.copyfile(warehouse, copy)
            con = duckdb.connect(str(copy))
            con.execute("DROP SCHEMA IF EXISTS ledger CASCADE")
            con.close()
            limits = scaled_limits(args)
            config = DataverseEmulatorConfig(seed_users=seed_users, protection=limits)
            with DataverseProcess(config) as dv:
                os.environ.update(dv.env())
                resources = rg.resources_for(copy)
                t = time.monotonic()
                rg.materialize_migration(resources, dg.AssetSelection.groups("schema"), log_level="CRITICAL")
                schema_s = time.monotonic() - t
                dv.control({"reset_protection": True})  # measure the load alone, from empty windows
                t = time.monotonic()
                result = rg.materialize_migration(
                    resources, dg.AssetSelection.groups("loaded"), log_level="CRITICAL"
                )
                figs = figures(result)
                report("run 2: load under service-protection limits", figs, time.monotonic() - t)
                print(f"  schema (before the measured load) {schema_s:.1f} s")
                limits_share(
                    limits,
                    dv.control(),
                    figs["phases"].get("loaded", 0.0),
                    first["phases"].get("loaded", 0.0),
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
