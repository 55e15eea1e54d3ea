"""Benchmark of the Dataverse client against the emulator (prints figures; not a test).

    python bench/dataverse.py [--records 100000] [--users 2] [--window 30] [--max-requests 600] ...

Two runs of N contacts through `create_multiple`:
1. limits off: records/s and requests per 1,000 records (targets: >= 2,000 records/s, <= 5 requests);
2. service-protection limits on, scaled down proportionally (real: 6,000 requests and 1,200,000 ms of
   execution time per 300 s per user; default here: 600 requests and 120,000 ms per 30 s), with a simulated
   execution cost per request and per record; prints the throughput the limits allow and the achieved
   share (target >= 80%).
The emulator runs in a separate process so that it does not share the client's GIL.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id  # noqa: E402
from migration_assets.clients.dataverse.client import DataverseClient  # noqa: E402
from migration_assets.clients.dataverse.transport import AppUserCredentials, TransportSettings  # noqa: E402

NS = uuid.UUID("b3c4d5e6-0000-4000-8000-00000000be4c")


def _users(n: int) -> list[AppUser]:
    return [
        AppUser(
            f"c2d36500-0000-4000-8000-0000000b{i:04d}", f"bench-secret-{i}", deterministic_id("bench", str(i))
        )
        for i in range(n)
    ]


def _serve(config: DataverseEmulatorConfig, conn: Any) -> None:
    from emulators.dataverse.server import EmulatorServer

    with EmulatorServer(config) as server:
        conn.send((server.base_url, server.ca_bundle))
        conn.recv()  # block until the parent says stop


def _rows(run: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "contactid": str(uuid.uuid5(NS, f"{run}:{i}")),
            "firstname": f"First{i}",
            "lastname": f"Last{i}",
            "emailaddress1": f"person{i}@example.com",
        }
        for i in range(n)
    ]


def _run(
    base_url: str, ca: str, tenant: str, users: list[AppUser], args: argparse.Namespace, run: str
) -> dict:
    settings = TransportSettings(
        environment_url=base_url,
        tenant_id=tenant,
        users=[AppUserCredentials(u.client_id, u.client_secret) for u in users],
        authority_host=base_url,
        ca_bundle=ca,
        max_in_flight=args.in_flight,
    )
    rows = _rows(run, args.records)
    with DataverseClient(settings, batch_size=args.batch_size) as client:
        client.metadata("contact")  # warm the per-run caches outside the timed section
        client.supports_bulk("CreateMultiple", "contact")
        warm = sum(s["requests"] for s in client.stats().values())
        started = time.monotonic()
        result = client.create_multiple("contact", rows)
        seconds = time.monotonic() - started
        stats = client.stats()
    total_requests = sum(s["requests"] for s in stats.values()) - warm
    if result.rejected:
        raise SystemExit(f"{run}: {len(result.rejected)} rows rejected, e.g. {result.rejected[0]}")
    return {
        "seconds": seconds,
        "records_per_s": len(result.succeeded) / seconds,
        "requests_per_1000": 1000 * total_requests / args.records,
        "throttled": result.throttled,
        "retries": result.retries,
        "stats": stats,
    }


def _allowed_per_s(args: argparse.Namespace, users: int) -> tuple[float, str]:
    per_request_ms = args.cost_request + args.cost_record * args.batch_size
    by_requests = args.max_requests
    by_time = math.ceil(args.max_exec_ms / per_request_ms)  # admission checks "total >= limit"
    requests = min(by_requests, by_time)
    binding = "execution time" if by_time < by_requests else "request count"
    return users * requests * args.batch_size / args.window, binding


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--users", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--in-flight", type=int, default=4)
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--max-requests", type=int, default=600)
    p.add_argument("--max-exec-ms", type=int, default=120_000)
    p.add_argument("--max-concurrent", type=int, default=52)
    p.add_argument("--cost-request", type=float, default=2.0, help="simulated ms per request")
    p.add_argument(
        "--cost-record", type=float, default=10.0, help="simulated ms per record in a bulk request"
    )
    p.add_argument("--skip-free", action="store_true")
    p.add_argument("--skip-limits", action="store_true")
    args = p.parse_args()

    users = _users(args.users)
    config = DataverseEmulatorConfig(app_users=users)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(config, child), daemon=True)
    proc.start()
    base_url, ca = parent.recv()
    admin = base_url + "/_emulator/faults"
    try:
        print(
            f"Dataverse client benchmark: {args.records:,} contacts, {args.users} app user(s), "
            f"batch {args.batch_size}, {args.in_flight} in flight per user"
        )
        if not args.skip_free:
            httpx.post(admin, json={"protection": {"enabled": False}}, verify=ca).raise_for_status()
            free = _run(base_url, ca, config.tenant_id, users, args, "free")
            print(
                f"limits off : {free['records_per_s']:,.0f} records/s ({free['seconds']:.1f} s), "
                f"{free['requests_per_1000']:.2f} requests per 1,000 records, retries {free['retries']}"
            )
        if not args.skip_limits:
            protection = {
                "enabled": True,
                "window_seconds": args.window,
                "max_requests": args.max_requests,
                "max_execution_ms": args.max_exec_ms,
                "max_concurrent": args.max_concurrent,
                "cost_ms_per_request": args.cost_request,
                "cost_ms_per_record": args.cost_record,
            }
            httpx.post(
                admin, json={"protection": protection, "reset_protection": True}, verify=ca
            ).raise_for_status()
            limited = _run(base_url, ca, config.tenant_id, users, args, "limited")
            allowed, binding = _allowed_per_s(args, args.users)
            # Over a finite run the sliding window also lets one extra budget through at the start.
            per_window = allowed * args.window
            burst_allowed = per_window * (1 + limited["seconds"] / args.window) / limited["seconds"]
            print(
                f"limits on  : window {args.window:g} s, {args.max_requests} requests, {args.max_exec_ms:,} ms "
                f"(scaled from 6,000 / 1,200,000 ms per 300 s), cost {args.cost_request:g} ms/request + "
                f"{args.cost_record:g} ms/record; binding limit: {binding}"
            )
            print(
                f"             allowed {allowed:,.0f} records/s steady state "
                f"({burst_allowed:,.0f} records/s counting the first window's burst over {limited['seconds']:.0f} s)"
            )
            print(
                f"             achieved {limited['records_per_s']:,.0f} records/s = "
                f"{100 * limited['records_per_s'] / allowed:.0f}% of steady state, "
                f"{100 * limited['records_per_s'] / burst_allowed:.0f}% of the burst-inclusive bound; "
                f"{limited['requests_per_1000']:.2f} requests per 1,000 records, {limited['throttled']} x 429"
            )
            for cid, s in limited["stats"].items():
                print(
                    f"             user {cid}: {s['requests']} requests, {s['throttled']} throttled, "
                    f"window now {s['window']} (min {s['min_window']})"
                )
    finally:
        parent.send("stop")
        proc.join(timeout=20)


if __name__ == "__main__":
    main()
