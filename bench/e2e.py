"""End-to-end benchmark of the migration graph against both emulators (prints figures; not a test).

    python bench/e2e.py [--size typical] [--seed 1] [--mode both|off|limits] [--window 300] [--cost-record 10]
                        [--app-users 1,2,4] [--realistic] [--steps]

Run 1, limits off (both emulators; `--close-limits` keeps Close's rate limits on): the whole graph (close -> staged -> schema -> loaded -> reports) on a generated org.
Run 2, service-protection limits on: schema, then the load again on a fresh Dataverse emulator, from the
staged warehouse of run 1, under the real limits per application user (6,000 requests and 1,200,000 ms of
execution time per 300 s sliding window, 52 concurrent). Each request is charged `--cost-request` ms plus
`--cost-record` ms per record or `$batch` part (default 10 ms: a `typical` load then needs more execution
time than one window grants, so the limits bind). `--window W` keeps the real rates over a shorter window
(budgets scaled to it: 30 s gives 600 requests and 120,000 ms), a harsher test: a pause of the loader longer
than the window wastes budget. `--app-users 1,2,4` runs the load under limits once per count of
application users (each its own budget) and prints the throughput factor over one user. From the requests and the execution time the emulator admitted during the
load, the bench derives the shortest load time the limits permit and prints the share of that throughput
the load achieved (target for one user: 95% of the sustained rate; for 2 and 4 users: 1.8x and 3.5x one user's
throughput; the share of the shorter bound a short load could reach with the first window's burst is printed
too).
Per phase: wall time; for the load: records/s, requests per 1,000 records, 429s; per run, the CPU time of
the tool's process and of each emulator's (how much of the machine the run kept busy); peak memory (RSS) of
the tool's process and, apart, of each emulator's process. `--steps`: when each load step ran.
`--realistic` adds a run with both emulators' latency models on (emulators/*/latency.py: round trips,
Close's server time per page, Dataverse's execution time per request and record, under the real limits)
and prints the load duration predicted from the staged data (load/estimate.py load_seconds) next to the
measured one.
The Dataverse emulator runs in its own process so that it does not share the loader's GIL; each emulator's
process keeps the memory it frees for its next file body (reuse_freed_memory) and maps it in huge pages
(start_with_huge_pages); the tool's is left as it is.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import math
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the graph runner shared with tests

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import httpx  # noqa: E402

from emulators.close import latency as close_latency  # noqa: E402
from emulators.close.config import CloseEmulatorConfig, LatencyConfig, RateLimitConfig  # noqa: E402
from emulators.close.server import CloseEmulatorServer  # noqa: E402
from emulators.dataverse import latency as dv_latency  # noqa: E402
from emulators.dataverse.config import (  # noqa: E402
    AppUser,
    DataverseEmulatorConfig,
    Latency,
    ServiceProtection,
    default_app_users,
    deterministic_id,
)
from emulators.orgdata import generate  # noqa: E402
from migration_assets.defs.loaded._common import BATCH_ROWS  # noqa: E402
from migration_assets.load.engine import ACTION_BATCH_PARTS, DOWNLOAD_WORKERS  # noqa: E402
from migration_assets.load.estimate import (  # noqa: E402
    LoaderShape,
    ServiceTimes,
    TableWrites,
    load_seconds,
    write_requests,
)
from migration_assets.resources.warehouse import quote, table_exists  # noqa: E402

TARGET_PER_1000 = 5  # requests per 1,000 records on bulk-capable tables (the target)
# Issue 15's targets under the limits: one application user reaches 95% of the sustained throughput they allow;
# N users are held to a factor over one user's throughput. The factors are the looser targets: 3.5x at 95% is
# 83% of what 4 users' limits allow (88% at 100%), so the 95% share is not asked of them too.
TARGET_SHARE = 0.95
TARGET_FACTOR = {2: 1.8, 4: 3.5}
REAL = ServiceProtection(enabled=True)  # 6000 req / 300 s, 1,200,000 ms, 52 concurrent


def reuse_freed_memory() -> bool:
    """Make this process's malloc (glibc) keep what it frees for its next allocations: one arena for every
    thread and no returning of the heap's top to the system. Called first in each emulator's process: an
    emulator handles file bodies in ~1-100 MB buffers (request bodies, orjson's copy of a body it parses,
    parsed documents, base64 checks); measured on 1.6 GB of annotation uploads, the Dataverse emulator's CPU
    fell from 11.7 s to 9.6 s. Blocks above glibc's mmap threshold are still mapped afresh each time, each
    page a fault: see serve_blocks_from_the_heap. The tool's own process is left as a user runs it. False
    where there is no glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_arena_max = -1, -8  # malloc.h
    return all(
        libc.mallopt(option, value) == 1
        for option, value in ((m_arena_max, 1), (m_trim_threshold, 2**31 - 1))
    )


HEAP_BLOCK_CEILING = 32 * 1024 * 1024  # glibc's largest mmap threshold (HEAP_MAX_SIZE / 2 on 64 bits)


def serve_blocks_from_the_heap() -> bool:
    """Raise glibc's mmap threshold to its ceiling in the Dataverse emulator's process, once its server has
    started (the server sets it to 1 MiB, emulators/dataverse/heap.py, so that a long-lived emulator gives
    the memory of its uploads back; the bench's emulator lives for one run). A file's base64 text (1-32 MB)
    is then served from the heap the previous request freed instead of a new mapping whose pages the kernel
    faults in and zeroes. Measured on 1.26 GB of annotation uploads: 12,000 page faults instead of 420,000,
    the emulator's CPU 7.9-8.5 s instead of 8.7-9.2 s. Request bodies (~100 MB) stay above any threshold
    glibc accepts. Setting it before the server starts would be undone by the server."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3  # malloc.h
    return libc.mallopt(m_mmap_threshold, HEAP_BLOCK_CEILING) == 1


# glibc's tunable (2.35+) to back the heap and its mappings with transparent huge pages where the kernel
# leaves them to madvise (its default): a file body's 50-100 MB buffers then fault in 2 MB pages instead of
# 4 KB ones. Measured on `typical` with it set for all three processes: the Dataverse emulator's CPU 53 s
# instead of 59-60 s, the annotation load 36-37 s instead of 40-43 s. Read when a process starts, so it is
# set in each emulator's environment (start_with_huge_pages); the tool's own process is left as a user runs it.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


@contextmanager
def start_with_huge_pages() -> Iterator[None]:
    """The environment a process started within inherits has HUGE_PAGES_TUNABLE added to GLIBC_TUNABLES
    (the bench's own environment is as it was afterwards; a C library other than glibc ignores it)."""
    before = os.environ.get("GLIBC_TUNABLES")
    os.environ["GLIBC_TUNABLES"] = f"{before}:{HUGE_PAGES_TUNABLE}" if before else HUGE_PAGES_TUNABLE
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = before


def _serve_close(size: str, seed: int, config: CloseEmulatorConfig, conn: Any) -> None:
    reuse_freed_memory()
    org = generate(size, seed)
    with CloseEmulatorServer(org, config) as server:
        conn.send((server.base_url, org.api_key, [dict(u) for u in org.dynamics_users]))
        while (message := conn.recv()) != "stop":
            server.state.config.latency = message  # a LatencyConfig: the model is read per request
            conn.send("ok")


class CloseProcess:
    """The Close emulator serving a generated org (`size`, `seed`) in its own process, so that the peak RSS
    the bench prints for the tool is the tool's own (the org and the emulator are not in it)."""

    def __init__(self, size: str, seed: int, config: CloseEmulatorConfig) -> None:
        self.parent, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(
            target=_serve_close, args=(size, seed, config, child), daemon=True
        )

    def __enter__(self) -> CloseProcess:
        with start_with_huge_pages():
            self.proc.start()
        self.base_url, self.api_key, self.dynamics_users = self.parent.recv()
        SERVING["Close emulator"] = self.proc.pid
        return self

    def set_latency(self, latency: LatencyConfig) -> None:
        self.parent.send(latency)
        self.parent.recv()

    def __exit__(self, *exc: object) -> None:
        SERVING.pop("Close emulator", None)
        peak = process_peak_rss_mb(self.proc.pid)
        if peak is not None:
            print(f"  Close emulator process (pid {self.proc.pid}): peak RSS {peak:.0f} MB")
        self.parent.send("stop")
        self.proc.join(timeout=30)


def _serve(config: DataverseEmulatorConfig, conn: Any) -> None:
    reuse_freed_memory()
    from emulators.dataverse.server import EmulatorServer

    with EmulatorServer(config) as server:
        serve_blocks_from_the_heap()
        conn.send((server.base_url, server.ca_bundle))
        conn.recv()


class DataverseProcess:
    def __init__(self, config: DataverseEmulatorConfig) -> None:
        self.config = config
        self.parent, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_serve, args=(config, child), daemon=True)

    def __enter__(self) -> DataverseProcess:
        with start_with_huge_pages():
            self.proc.start()
        self.base_url, self.ca_bundle = self.parent.recv()
        SERVING["Dataverse emulator"] = self.proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        SERVING.pop("Dataverse emulator", None)
        peak = process_peak_rss_mb(self.proc.pid)
        if peak is not None:
            print(f"  Dataverse emulator process (pid {self.proc.pid}): peak RSS {peak:.0f} MB")
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
        users = self.config.app_users
        return {
            "DATAVERSE_URL": self.base_url,
            "DATAVERSE_TENANT_ID": self.config.tenant_id,
            "DATAVERSE_CLIENT_IDS": ",".join(u.client_id for u in users),
            "DATAVERSE_CLIENT_SECRETS": ",".join(u.client_secret for u in users),
            "DATAVERSE_AUTHORITY_HOST": self.base_url,
            "DATAVERSE_CA_BUNDLE": self.ca_bundle,
        }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SHOW_STEPS = False  # --steps: print when each load step ran

# The emulators' processes serving now, by name: a run's figures include the CPU time each of them used.
SERVING: dict[str, int] = {}


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system, all threads) used so far by this process, or by another one (from
    /proc/<pid>/stat, Linux; None where it cannot be read)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def cpu_snapshot() -> dict[str, float | None]:
    return {"tool": cpu_seconds(), **{name: cpu_seconds(pid) for name, pid in SERVING.items()}}


def cpu_used(before: dict[str, float | None]) -> dict[str, float]:
    """CPU seconds each process used since `before` (processes that started or ended in between left out)."""
    after = cpu_snapshot()
    return {
        name: end - start
        for name, start in before.items()
        if start is not None and (end := after.get(name)) is not None
    }


def process_peak_rss_mb(pid: int | None) -> float | None:
    """Another process's peak RSS (VmHWM in /proc/<pid>/status, Linux); None where it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None


def measured_run(resources: dict[str, Any], selection: dg.AssetSelection | None = None) -> dict[str, Any]:
    """Materialize `selection` (default: the migration) and return its figures."""
    import run_graph as rg

    with dg.DagsterInstance.ephemeral() as instance:
        before, started, clock = cpu_snapshot(), time.monotonic(), time.time()
        result = rg.materialize_migration(resources, selection, instance=instance, log_level="CRITICAL")
        cpu, wall = cpu_used(before), time.monotonic() - started
        # The event log's times are the system clock's: where it moved during the run (a machine paused
        # and resumed), the spans taken from it are off by as much; the run's own time is not.
        drift = (time.time() - clock) - wall
        timeline = step_timeline(instance, result.run_id)
        figs = figures(result, instance)
        if drift > 1.0 and set(figs["phases"]) <= {"loaded"}:  # the load alone: the span is the run's
            figs["phases"]["loaded"] = max(0.0, figs["phases"]["loaded"] - drift)
        return {
            "result": result,
            "cpu": cpu,
            "cpu_wall": wall,
            "clock_drift": drift,
            "timeline": timeline,
            **figs,
        }


def step_timeline(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    """(step key, start, end) of every step of a run, in seconds from the run's start, by start."""
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    first: float | None = None
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "RUN_START":
            first = entry.timestamp
        elif event.step_key and event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.step_key and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ended[event.step_key] = entry.timestamp
    zero = first if first is not None else min(started.values(), default=0.0)
    rows = [(k, t - zero, ended.get(k, t) - zero) for k, t in started.items()]
    return sorted(rows, key=lambda r: r[1])


def figures(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> dict[str, Any]:
    """Per phase (the steps' group): its wall time, from its first step's start to its last step's end
    (steps run at once: step_threads.py, so phases overlap); the load's figures per table."""
    spans: dict[str, list[float]] = {}
    for entry in instance.all_logs(result.run_id):
        ev = entry.dagster_event
        if ev is not None and ev.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
            group, at = (ev.step_key or "").split("__")[0], entry.timestamp
            span = spans.setdefault(group, [at, at])
            span[0], span[1] = min(span[0], at), max(span[1], at)
    loaded = {"records": 0, "requests": 0, "throttled": 0, "retried": 0, "seconds": 0.0}
    tables: dict[str, dict[str, Any]] = {}
    for ev in result.all_events:
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
    phases = {group: end - start for group, (start, end) in spans.items()}
    return {"phases": phases, "loaded": loaded, "tables": tables}


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
                f"    {table:<28} {w:>7} written in {secs:6.1f} s {int(m.get('write_requests', 0)):>6} requests  "
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
    # The loaded steps' wall time: the sum of the tables' own times would leave out what ran beside them
    # (loaded/file_bodies fetches the annotations' files while the tables before them load).
    seconds = figs["phases"].get("loaded", 0.0)
    rate = ld["records"] / seconds if seconds else 0.0
    per_k = 1000 * ld["requests"] / ld["records"] if ld["records"] else 0.0
    print(
        f"\n== {title} ==  wall {wall:.1f} s, peak RSS of the tool's process {peak_rss_mb():.0f} MB "
        "(each emulator runs in its own process; theirs are printed apart)"
    )
    drift = figs.get("clock_drift", 0.0)
    if abs(drift) > 1.0:
        print(
            f"  the system clock moved {drift:+.1f} s against the run's own time (a paused machine?): the "
            + (
                "load's span is corrected by as much"
                if set(figs["phases"]) <= {"loaded"}
                else "spans below include it"
            )
        )
    for phase in ("close", "staged", "schema", "loaded", "reports"):
        if phase in figs["phases"]:
            print(f"  {phase:<8} {figs['phases'][phase]:8.1f} s")
    print(
        f"  load: {ld['records']} records written in {seconds:.1f} s = {rate:.0f} records/s "
        f"(the tables' own times add up to {ld['seconds']:.1f} s), "
        f"{per_k:.1f} requests per 1,000 records, {ld['retried']} retries, {ld['throttled']} throttled (429)"
    )
    if figs.get("cpu"):
        cores, wall = os.cpu_count() or 1, figs["cpu_wall"]
        used = ", ".join(f"{name} {secs:.1f} s" for name, secs in figs["cpu"].items())
        total = sum(figs["cpu"].values())
        print(
            f"  CPU time during the run: {used}; {total:.1f} s in all = {100 * total / (cores * wall):.0f}% "
            f"of {cores} cores for its {wall:.1f} s"
        )
    per_table(figs["tables"])
    if SHOW_STEPS:
        # When each load step ran: the gaps between the tables, what ran beside them.
        steps = [(k, a, b) for k, a, b in figs["timeline"] if k.startswith("loaded__")]
        print(f"  timeline of the load's steps (start and end, s from the run's start; {len(steps)} steps):")
        for key, start, end in steps:
            print(f"    {start:7.2f} {end:7.2f} {end - start:7.2f}  {key}")
    ahead, notes = figs["tables"].get("file_bodies"), figs["tables"].get("annotation", {})
    if ahead:
        print(
            f"  files fetched ahead (loaded/file_bodies): {ahead.get('files_fetched', 0)} "
            f"({int(ahead.get('bytes_fetched', 0)) / 1e6:,.0f} MB), {ahead.get('files_left_to_the_load', 0)} left "
            f"to the load, {ahead.get('downloads_failed', 0)} failed; annotation sent "
            f"{notes.get('files_downloaded', 0)} files, {notes.get('files_fetched_ahead', 0)} of them fetched ahead"
        )


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


def limits_share(
    limits: ServiceProtection, stats: dict[str, Any], load_on: float, load_off: float, app_users: int = 1
) -> None:
    """Print what the limits allow for the work the emulator admitted during the load, and the share of it
    the load achieved. Sustained, the limits allow one budget of requests and execution time per window:
    the load's work takes `x` windows at that rate (the target's measure: a long migration runs at this
    rate). A short load also gets the first window's budget at once; since no window may hold more than
    one budget, it still cannot end before (ceil(x) - 1) windows have passed. The share's target is one
    user's; several users' share is printed with their target, the factor over one user."""
    users = stats["stats"]["protection"]
    windows, binding = 0.0, "none"
    for user, u in users.items():
        by_requests = u["admitted"] / limits.max_requests
        by_time = u["charged_ms"] / limits.max_execution_ms
        if max(by_requests, by_time) > windows:
            windows = max(by_requests, by_time)
            binding = f"{'execution time' if by_time >= by_requests else 'request count'} (…{user[-6:]})"
        throttled = u["throttled_requests"] + u["throttled_execution_time"] + u["throttled_concurrency"]
        print(
            f"  emulator, user …{user[-6:]}: {u['admitted']} requests admitted, {u['charged_ms']:,.0f} ms "
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
    verdict = (
        f"target >= {TARGET_SHARE:.0%}: {'PASS' if sustained >= TARGET_SHARE else 'FAIL'}"
        if app_users == 1
        else f"{app_users} users' target is the factor over one user, below"
    )
    print(
        f"  load under limits took {load_on:.1f} s (limits off {load_off:.1f} s); at the sustained rate the "
        f"limits allow {steady:.1f} s: {100 * sustained:.0f}% of the allowed throughput "
        f"({verdict}); "
        f"with the first window's burst {burst:.1f} s: {100 * short:.0f}%"
    )


def staged_loads(con: duckdb.DuckDBPyConnection, tables: dict[str, dict[str, Any]]) -> list[TableWrites]:
    """What a dry run knows of each table the load writes, from the staged warehouse: its rows, the final
    states and Win/Lose actions they need (a record is created open: only another state costs a change),
    the file bodies to download; bulk messages or `$batch` as the target answered run 1; the table with
    files in its pool of its own, after the tables it follows and beside the others."""
    from migration_assets.defs.loaded import tables as loaded_tables  # the definitions of this run's mappings

    loads = []
    for table, meta in sorted(tables.items()):
        if not table_exists(con, "staged", table):
            continue
        cols = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'staged' "
                "AND table_name = ?",
                [table],
            ).fetchall()
        }

        def count(where: str, table: str = table) -> int:
            return int(
                con.execute(f"SELECT count(*) FROM staged.{quote(table)} WHERE {where}").fetchall()[0][0]
            )

        action = "_close_action IN ('win', 'lose')"
        state = "_statecode IS NOT NULL AND NOT (_statecode = 0 AND coalesce(_statuscode, -1) IN (-1, 1))"
        if "_close_action" in cols:
            state += f" AND NOT coalesce({action}, false)"
        loads.append(
            TableWrites(
                table,
                count("true"),
                count(state) if "_statecode" in cols else 0,
                count(action) if "_close_action" in cols else 0,
                bulk=meta.get("write_path") == "bulk",
                downloads=count("_file_url IS NOT NULL") if "_file_url" in cols else 0,
                after=frozenset(loaded_tables.BEFORE_FILES) if table == loaded_tables.FILES_TABLE else None,
            )
        )
    return loads


def loaded_requests(result: dg.ExecuteInProcessResult) -> int:
    """Requests the load's steps sent to Dataverse (their `dataverse_requests`, assets and checks)."""
    total = 0
    for ev in result.all_events:
        data = ev.event_specific_data
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            key, meta = data.materialization.asset_key, data.materialization.metadata
        elif ev.event_type_value == "ASSET_CHECK_EVALUATION":
            key, meta = data.asset_key, data.metadata
        else:
            continue
        if key.path[0] == "loaded" and "dataverse_requests" in meta:
            total += int(meta["dataverse_requests"].value)
    return total


def load_alone(
    work: Path, name: str, warehouse: Path, config: DataverseEmulatorConfig
) -> tuple[dg.ExecuteInProcessResult, dict[str, Any], dict[str, Any]]:
    """Schema, then the load alone (the measured part), from a copy of run 1's staged warehouse on a fresh
    Dataverse emulator: the run, its figures and the emulator's statistics of the load."""
    import run_graph as rg

    copy = work / f"warehouse_{name}.duckdb"
    shutil.copyfile(warehouse, copy)
    con = duckdb.connect(str(copy))
    con.execute("DROP SCHEMA IF EXISTS ledger CASCADE")
    con.close()
    with DataverseProcess(config) as dv:
        os.environ.update(dv.env())
        resources = rg.resources_for(copy)
        rg.materialize_migration(resources, dg.AssetSelection.groups("schema"), log_level="CRITICAL")
        dv.control({"reset_protection": True})
        run = measured_run(resources, dg.AssetSelection.groups("loaded"))
        return run["result"], run, dv.control()


def loader_shape() -> LoaderShape:
    """How the load's client sends (the `dataverse` resource's settings and the loader's constants)."""
    import run_graph as rg

    res = rg.resources_for(":memory:")["dataverse"]
    return LoaderShape(
        BATCH_ROWS,
        res.batch_size,
        res.batch_request_size,
        ACTION_BATCH_PARTS,
        res.max_in_flight,
        DOWNLOAD_WORKERS,
        app_users=len(res.client_ids.split(",")),
        fetch_ahead=True,  # loaded/file_bodies
    )


def realistic_run(
    work: Path,
    warehouse: Path,
    seed_users: list[dict[str, Any]],
    close: CloseProcess,
    first: dict[str, Any],
) -> None:
    """The load with both latency models on and the real limits, next to its prediction. The prediction
    takes the staged data (rows, states, actions, files per table; `staged_loads`) through the loader's
    request pattern at the service's times (load/estimate.py load_seconds), plus what the service cannot
    show: the tool's own time and the reads it sends, from the same load alone on loopback."""
    con = duckdb.connect(str(warehouse), read_only=True)
    loads = staged_loads(con, first["tables"])
    con.close()
    config = dv_latency.with_realistic_latency(
        DataverseEmulatorConfig(seed_users=seed_users, protection=REAL)
    )
    protection = config.protection
    # Nothing slept and no limits (on loopback the costs would pile up faster than real time): the tool's
    # own time and requests.
    unlimited = dataclasses.replace(protection, enabled=False)
    loopback, loop_figs, _ = load_alone(
        work, "loopback", warehouse, dataclasses.replace(config, latency=Latency(), protection=unlimited)
    )
    shape = loader_shape()
    times = ServiceTimes(
        dv_latency.REALISTIC.round_trip_ms,
        protection.cost_ms_per_request,
        protection.cost_ms_per_record,
        close_latency.file_download_ms(close_latency.REALISTIC),
    )
    own = loop_figs["phases"].get("loaded", 0.0)
    reads = loaded_requests(loopback) - write_requests(loads, shape)
    predicted = load_seconds(loads, times, shape, own, reads)
    print(
        f"\nrun 3: the load with the latency models on, predicted to take {predicted.seconds:.0f} s",
        flush=True,
    )
    close.set_latency(close_latency.REALISTIC)
    t = time.monotonic()
    try:
        result, figs, stats = load_alone(work, "realistic", warehouse, config)
    finally:
        close.set_latency(LatencyConfig())
    report(
        "run 3: the load alone with the latency models on (--realistic), real limits",
        figs,
        time.monotonic() - t,
    )
    measured = figs["phases"].get("loaded", 0.0)
    limits_share(protection, stats, measured, own)
    print(
        f"  latency: Dataverse round trip {times.round_trip_ms:g} ms + {times.request_ms:g} ms/request + "
        f"{times.record_ms:g} ms/record; Close {close_latency.REALISTIC}"
    )
    print(
        f"  prediction: {predicted.requests} requests ({reads} besides the writes, as on loopback; sent: "
        f"{loaded_requests(result)}): {predicted.service_seconds:.1f} s of service time + "
        f"{predicted.own_seconds:.1f} s of the tool's own (the same load alone on loopback); "
        f"service-protection floor {predicted.protection_seconds:.1f} s"
    )
    ratio = measured / predicted.seconds if predicted.seconds else 0.0
    print(
        f"  predicted load duration {predicted.seconds:.1f} s, measured {measured:.1f} s, ratio {ratio:.2f} "
        f"(target 0.85-1.15: {'PASS' if 0.85 <= ratio <= 1.15 else 'FAIL'})"
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
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="also load with both emulators' latency models on; print the predicted and measured load time",
    )
    parser.add_argument(
        "--app-users",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[1],
        help="application users of the load under limits, e.g. 1,2,4 (a run each; prints the scaling)",
    )
    parser.add_argument("--steps", action="store_true", help="print when each step of each load ran")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (removed by default)")
    args = parser.parse_args()
    global SHOW_STEPS
    SHOW_STEPS = args.steps
    with work_dir("close2d365-bench-", args.keep) as work:
        return bench(args, work)


@contextmanager
def work_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A bench's work folder (warehouse, mappings, the tool's home with its reports and file spool: ~1 GB on
    `typical`, several on `large`), removed at the end unless `keep`. Runs left behind fill the disk, and a
    fuller disk changes the run it measures: loaded/file_bodies stops fetching at its free-space floor."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path) -> int:
    os.environ["CLOSE2D365_HOME"] = str(work / "home")
    import run_graph as rg

    from migration_assets import demo

    maps = work / "mappings"
    os.environ["CLOSE2D365_MAPPINGS"] = str(maps)
    warehouse = work / "warehouse.duckdb"
    # "Limits off" is both emulators': Close's own rate limits (20 requests/s per endpoint group) would
    # otherwise bound the attachment downloads (one request each), whatever the loader does. The client
    # paces itself by the RateLimit header Close always sends, so "off" is a limit too high to matter.
    close_rate = RateLimitConfig() if args.close_limits else RateLimitConfig(requests_per_second=100_000.0)
    close_config = CloseEmulatorConfig(rate_limit=close_rate)
    started = time.monotonic()
    with CloseProcess(args.size, args.seed, close_config) as close:
        print(
            f"org '{args.size}' generated and served in {time.monotonic() - started:.1f} s (own process); "
            f"work dir {work}{'' if args.keep else ' (removed at the end; --keep keeps it)'}"
        )
        seed_users = close.dynamics_users
        os.environ.update({"CLOSE_API_KEY": close.api_key, "CLOSE_BASE_URL": close.base_url})
        with DataverseProcess(DataverseEmulatorConfig(seed_users=seed_users)) as dv:
            os.environ.update(dv.env())
            # The user's flow before the run: extract, propose-mapping, the scripted review.
            extract = rg.materialize_migration(
                rg.resources_for(warehouse),
                dg.AssetSelection.groups("close"),
                log_level="CRITICAL",
            )
            assert extract.success, "the extraction failed"
            decisions = demo.demo_decisions(demo.first_enabled_user(close.dynamics_users))
            rg.reviewed_mappings(maps, decisions, rg.resources_for(warehouse)["warehouse"])
            demo.reload_generated_assets()
            t = time.monotonic()
            first = measured_run(rg.resources_for(warehouse))
            result = first["result"]
            report("run 1: whole graph, limits off", first, time.monotonic() - t)
            failed = sorted({e.step_key for e in result.all_events if e.is_step_failure})
            if failed:
                print(f"  failed steps (expected: halted custom activity types only): {failed}")
        if args.realistic:
            realistic_run(work, warehouse, seed_users, close, first)
        if args.mode in ("both", "limits"):
            limits = scaled_limits(args)
            rates: dict[int, float] = {}
            for n in args.app_users:
                config = DataverseEmulatorConfig(
                    seed_users=seed_users, protection=limits, app_users=bench_app_users(n)
                )
                name = f"limits_{n}_users"
                t = time.monotonic()
                _, figs, stats = load_alone(work, name, warehouse, config)
                report(
                    f"run 2: load under service-protection limits, {n} application user(s)",
                    figs,
                    time.monotonic() - t,
                )
                loaded = figs["loaded"]
                wall = figs["phases"].get("loaded", 0.0)
                rates[n] = loaded["records"] / wall if wall else 0.0
                limits_share(
                    limits, stats, figs["phases"].get("loaded", 0.0), first["phases"].get("loaded", 0.0), n
                )
            if len(rates) > 1 and rates.get(1):
                print("\nscaling by application users (records/s under the limits, factor over one user):")
                for n, rate in rates.items():
                    target = TARGET_FACTOR.get(n)
                    verdict = (
                        f" (target >= {target}x: {'PASS' if rate / rates[1] >= target else 'FAIL'})"
                        if target
                        else ""
                    )
                    print(f"  {n} user(s): {rate:.0f} records/s = {rate / rates[1]:.2f}x{verdict}")
    return 0


def bench_app_users(n: int) -> list[AppUser]:
    """`n` application users, each with its own service-protection budget (the first is the default one)."""
    first = default_app_users()[0]
    return [first] + [
        AppUser(
            f"c2d36500-0000-4000-8000-0000000b{i:04d}",
            f"bench-secret-{i}",
            deterministic_id("systemuser", f"bench-app-user-{i}"),
        )
        for i in range(1, n)
    ]


if __name__ == "__main__":
    raise SystemExit(main())
