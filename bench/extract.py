"""Benchmark the Close extraction: API path vs JSON-export path (not a test; prints figures).

    python bench/extract.py --size typical [--rps 20] [--paths api,export]

The Close emulator runs in a subprocess (its memory is not counted), rate limited to `--rps` requests
per second per key and endpoint group, like Close. The extracting process writes every close.* table
into a scratch DuckDB exactly as the assets do (pages → Polars chunks → table writer), and reports
records/s, requests per 1,000 records, the request rate against the allowed rate (over the whole run, and
while paging, i.e. excluding the sorted write of each table), and the peak RSS of this process (sampled
every 20 ms, child processes included); then each target of the issue with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migration_assets.extract.sources import ClosePass  # noqa: E402
from migration_assets.extract.tables import TABLES  # noqa: E402
from migration_assets.extract.writer import write_table  # noqa: E402
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource  # noqa: E402

SOURCE_TABLES = [t for t in TABLES if t not in ("attachments", "call_recordings")]

# The project issue's targets (measured with --size typical; memory with --size large).
API_RATE_TARGET = 0.90  # share of the allowed request rate over the whole API extraction
EXPORT_SPEEDUP_TARGET = 10.0  # export path wall time vs API path wall time
PEAK_RSS_TARGET_MB = 1024


class PeakRSS:
    """Samples the resident set size of this process plus its child processes (the export path's
    parser workers) in a background thread.

    Listing the children scans /proc (~0.5 ms): done every `relist` samples only, so the sampler
    takes little of the CPU it measures; the workers live for seconds, far longer than that period.
    """

    def __init__(self, interval: float = 0.02, relist: int = 5) -> None:
        self.interval = interval
        self.relist = relist
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._children: list[psutil.Process] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, relist: bool = True) -> int:
        total = self._proc.memory_info().rss
        if relist:
            self._children = self._proc.children(recursive=True)
        for child in self._children:
            try:
                total += child.memory_info().rss
            except psutil.Error:  # exited since it was listed
                continue
        return total

    def _run(self) -> None:
        samples = 0
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss(relist=samples % self.relist == 0))
            samples += 1
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(size: str, seed: int, rps: float) -> tuple[subprocess.Popen[str], str, str]:
    port = _free_port()
    code = (
        "from emulators.close.server import serve\n"
        "from emulators.close.config import CloseEmulatorConfig, RateLimitConfig\n"
        f"serve({size!r}, {seed}, '127.0.0.1', {port}, "
        f"CloseEmulatorConfig(rate_limit=RateLimitConfig(requests_per_second={rps})))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    key = None
    assert proc.stderr is not None
    while key is None:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"emulator exited (code {proc.poll()})")
        if "API key (synthetic):" in line:
            key = line.rsplit(":", 1)[1].strip()
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its stderr
    base = f"http://127.0.0.1:{port}/api/v1/"
    for _ in range(600):
        try:
            if httpx.get(base + "me/", auth=(key, ""), timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    return proc, base, key


def _timed(pages: Iterator[Any], timings: dict[str, float]) -> Iterator[Any]:
    """Pass `pages` through, adding the time until the last page was consumed to `timings['_paging']`."""
    started = time.monotonic()
    yield from pages
    timings["_paging"] = timings.get("_paging", 0.0) + time.monotonic() - started


def extract(
    close: CloseResource, warehouse: WarehouseResource, tables: list[str], timings: dict[str, float]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    # Exactly what the close/* multi_asset's step does (`defs/close/_common.py`): one `ClosePass` over
    # its tables (an export source is requested when the pass opens, before the first table), pages →
    # sorted table, table after table.
    with ClosePass(close, tables, "bench") as close_pass:
        for table in tables:
            started = time.monotonic()
            pages = close_pass.pages(table)
            read, dropped = write_table(warehouse, TABLES[table], _timed(pages, timings))
            timings[table] = time.monotonic() - started
            counts[table] = read - dropped  # the rows of the written table (the writer counted them)
    return counts


def table_counts(warehouse: WarehouseResource, tables: list[str]) -> dict[str, int]:
    """Row counts read back from the DuckDB file (outside the timed run)."""
    with warehouse.connect() as con:
        return {t: int(con.execute(f"SELECT count(*) FROM close.{t}").fetchone()[0]) for t in tables}  # type: ignore[index]


def run_path(name: str, base: str, key: str, workdir: Path, rps: float) -> dict[str, Any]:
    source = "api" if name == "api" else "export"
    close = CloseResource(api_key=key, base_url=base, source=source, export_cache_dir=str(workdir / "cache"))
    warehouse = WarehouseResource(path=str(workdir / f"{name}.duckdb"))
    started = time.monotonic()
    timings: dict[str, float] = {}
    baseline = psutil.Process().memory_info().rss
    with PeakRSS() as rss:
        written = extract(close, warehouse, SOURCE_TABLES, timings)
    seconds = time.monotonic() - started
    counts = table_counts(warehouse, SOURCE_TABLES)
    if counts != written:  # the writer's own count must be what landed in the file
        raise RuntimeError(f"row counts written {written} differ from the tables {counts}")
    stats = close.get_client().stats
    close.teardown_after_execution(None)  # type: ignore[arg-type]
    records = sum(counts.values())
    return {
        "path": name,
        "records": records,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "requests": int(stats["requests"]),
        "requests_per_1000": 1000 * stats["requests"] / records,
        "request_rate": stats["requests"] / seconds,
        "paging_request_rate": stats["requests"] / timings["_paging"],
        "rate_utilisation": stats["requests"] / seconds / rps,
        "rate_limit": rps,
        "rate_limited_429": int(stats["rate_limited_429"]),
        "peak_rss_mb": rss.peak / 2**20,
        "baseline_rss_mb": baseline / 2**20,
        "counts": counts,
        "timings": timings,
    }


def _worker(name: str, base: str, key: str, workdir: str, rps: float) -> None:
    """Run one path in this (fresh) process and print its figures as JSON on the last line."""
    print(json.dumps(run_path(name, base, key, Path(workdir), rps)))


def _run_in_subprocess(name: str, base: str, key: str, workdir: Path, rps: float) -> dict[str, Any]:
    # Each path gets a fresh process so its peak RSS is not inflated by the previous path's heap.
    # The key travels in the environment, never on a command line (visible in `ps`, echoed in errors).
    cmd = [sys.executable, __file__, "--worker", name, base, str(workdir), str(rps)]
    env = {**os.environ, "CLOSE_API_KEY": key}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the {name} path failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, name, base, workdir, rps = sys.argv
        _worker(name, base, os.environ["CLOSE_API_KEY"], workdir, float(rps))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="typical", choices=["tiny", "demo", "typical", "large"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rps", type=float, default=20.0, help="emulator rate limit per key and endpoint group"
    )
    parser.add_argument("--paths", default="api,export")
    args = parser.parse_args()

    print(
        f"starting the Close emulator ({args.size}, {args.rps:g} req/s per key) in a subprocess...",
        flush=True,
    )
    proc, base, key = start_emulator(args.size, args.seed, args.rps)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="close-bench-") as tmp:
            for name in args.paths.split(","):
                print(f"extracting via {name} ...", flush=True)
                results.append(_run_in_subprocess(name, base, key, Path(tmp), args.rps))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"\nsize={args.size}  allowed rate={args.rps:g} req/s  (each path measured in its own process)")
    header = f"{'path':<8}{'records':>9}{'seconds':>9}{'rec/s':>9}{'requests':>10}{'req/1k rec':>11}{'req/s':>7}{'of limit':>9}{'paging':>7}{'429s':>6}{'peak RSS MB':>12}{'(start)':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['path']:<8}{r['records']:>9,}{r['seconds']:>9.1f}{r['records_per_s']:>9.0f}{r['requests']:>10,}"
            f"{r['requests_per_1000']:>11.1f}{r['request_rate']:>7.1f}{r['rate_utilisation']:>9.0%}"
            f"{r['paging_request_rate'] / float(r['rate_limit']):>7.0%}{r['rate_limited_429']:>6}{r['peak_rss_mb']:>12.0f}{r['baseline_rss_mb']:>8.0f}"
        )
    print(
        "\nseconds per table: "
        + "; ".join(
            f"{r['path']}: "
            + ", ".join(f"{t} {s:.1f}" for t, s in r["timings"].items() if s >= 0.5 and not t.startswith("_"))
            for r in results
        )
    )
    by_path = {r["path"]: r for r in results}
    if "api" in by_path and "export" in by_path:
        same = by_path["api"]["counts"] == by_path["export"]["counts"]
        print(f"\nrow counts identical on both paths: {same}")
        if not same:
            print(by_path["api"]["counts"], by_path["export"]["counts"], sep="\n")
    print_targets(args.size, by_path)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_targets(size: str, by_path: dict[str, dict[str, Any]]) -> None:
    """The issue's targets, each with the measured figure and PASS/FAIL (n/a when not measured)."""
    print("\ntargets:")
    api, export = by_path.get("api"), by_path.get("export")
    if api is not None:
        util = api["rate_utilisation"]
        print(
            f"  (a) API path sustains >= {API_RATE_TARGET:.0%} of the allowed request rate over the whole "
            f"extraction: {util:.1%} ({api['request_rate']:.1f} of {api['rate_limit']:g} req/s)  "
            f"{_verdict(util >= API_RATE_TARGET)}"
        )
    else:
        print("  (a) API request rate: n/a (the api path was not run)")
    if api is not None and export is not None:
        speedup = api["seconds"] / export["seconds"]
        print(
            f"  (b) export path >= {EXPORT_SPEEDUP_TARGET:g}x faster than the API path (wall time): "
            f"{speedup:.1f}x ({api['seconds']:.1f} s vs {export['seconds']:.1f} s)  "
            f"{_verdict(speedup >= EXPORT_SPEEDUP_TARGET)}"
        )
    else:
        print("  (b) export speed-up: n/a (needs both paths)")
    scope = "" if size == "large" else f" (the target is set for --size large; this is {size})"
    for r in (api, export):
        if r is not None:
            peak = r["peak_rss_mb"]
            print(
                f"  (c) {r['path']} path peak memory < {PEAK_RSS_TARGET_MB:,} MB: {peak:.0f} MB  "
                f"{_verdict(peak < PEAK_RSS_TARGET_MB)}{scope}"
            )


if __name__ == "__main__":
    main()
