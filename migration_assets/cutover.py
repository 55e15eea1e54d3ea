"""The delta cutover from the command line (DESIGN §8): `close2d365 observe`, `delta` and `cutover`.

What changed is Dagster's own staleness, read from the shared instance exactly as the UI reads it: an
observation of Close records new data versions of the Close objects, and every asset downstream of a
changed one is "unsynced". The commands print that, run the `delta` job, and for the cutover check first
that Close has been quiet, then judge the final run (its status, the reconciliation, the spot check).
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from migration_assets.clients.close.client import CloseClient
from migration_assets.defs.jobs import DELTA_JOB, OBSERVE_JOB, VERIFY_JOB
from migration_assets.extract.close_changes import scan_changes
from migration_assets.resources import env
from migration_assets.resources.warehouse import default_home

if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph


def _asset_graph() -> AssetGraph:
    from migration_assets.definitions import build_definitions

    return build_definitions().resolve_asset_graph()


def unsynced_assets() -> list[dg.AssetKey]:
    """Assets the UI shows as unsynced on the shared instance: materialized, and stale because an upstream
    data version (Close's, as last observed) or code version moved since."""
    # The resolver the UI itself uses; Dagster has no public API for staleness yet.
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.storage.event_log.base import AssetRecord
    from dagster._time import get_current_datetime

    from migration_assets.runtime import instance

    inst = instance()
    graph = _asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=inst,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=inst, asset_graph=graph, loading_context=view)
    keys = sorted(graph.materializable_asset_keys)
    # Every asset's record in one query, into the view's cache, rather than one query per asset.
    AssetRecord.blocking_get_many(view, graph.get_all_asset_keys())
    return [k for k in keys if resolver.get_status(k) == StaleStatus.STALE]


def downstream_assets(keys: Iterable[str | dg.AssetKey]) -> list[dg.AssetKey]:
    """`keys` and every materializable asset downstream of them in the lineage."""
    graph = _asset_graph()
    start = {dg.AssetKey.from_user_string(k) if isinstance(k, str) else k for k in keys}
    seen, todo = set(start), list(start)
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return sorted(k for k in seen if k in graph.materializable_asset_keys)


def _close_client() -> CloseClient:
    from migration_assets.resources import CLOSE_API_URL

    return CloseClient(os.environ[env.CLOSE_API_KEY], os.environ.get(env.CLOSE_BASE_URL, CLOSE_API_URL))


def quiet_check(quiet: timedelta) -> tuple[bool, list[str]]:
    """Whether Close has been quiet (no change of a migrated object) for `quiet`, judged on Close's own
    clock; the lines that say what changed when it has not."""
    client = _close_client()
    try:
        now = client.server_now()
        changes = scan_changes(client, now - quiet, now=now)
    finally:
        client.close()
    last = changes.last_change_at
    if last is None or now - last >= quiet:
        return True, [
            f"Close has been quiet for {_minutes(quiet)} (by Close's clock, {now:%Y-%m-%d %H:%M:%S} UTC)"
        ]
    lines = [
        f"Close is still changing: the last change was at {last:%H:%M:%S} UTC, {_minutes(now - last)} ago "
        f"by Close's clock; the cutover needs {_minutes(quiet)} without changes."
    ]
    for table in changes.changed_tables():
        counts = ", ".join(f"{n} {what}" for what, n in changes.tables[table].counts.items() if n)
        lines.append(f"  {table}: {counts}")
    lines += [f"  merge: lead {m.source} into {m.destination}" for m in changes.merges]
    lines.append(
        "Freeze Close (make users read-only, stop integrations and sequences), then run `close2d365 cutover` "
        f"again once it has been quiet for {_minutes(quiet)} (--quiet-minutes)."
    )
    return False, lines


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{span.total_seconds():.0f} s"


def cutover(quiet_minutes: float) -> int:
    """`close2d365 cutover`, the seed's step 6 in one command: Close must have been quiet for
    `quiet_minutes`; then the final delta, the full reconciliation and the spot check; then go or no-go."""
    from migration_assets.runtime import print_job_outcome, reconciliation_text, run_job

    quiet = timedelta(minutes=quiet_minutes)
    print("1/4 is Close frozen?", flush=True)
    frozen, lines = quiet_check(quiet)
    for line in lines:
        print(f"  {line}", file=sys.stdout if frozen else sys.stderr)
    if not frozen:
        print("cutover: NO-GO, nothing was run: Close is still changing", file=sys.stderr)
        return 2
    started = _close_now()
    tags = {"close2d365/mode": "cutover"}
    print("2/4 the final delta (the `delta` job)", flush=True)
    delta = run_job(DELTA_JOB, tags=tags)
    delta_status = print_job_outcome(delta)
    print("3/4 full reconciliation and spot check against Close (the `verify` job)", flush=True)
    verify = run_job(VERIFY_JOB, tags=tags)
    verify_status = print_job_outcome(verify)
    print(reconciliation_text(verify.run_id))
    print("4/4 go / no-go", flush=True)
    reasons = _no_go_reasons(delta, delta_status, verify, verify_status, started)
    reports = default_home() / "reports" / verify.run_id
    if reasons:
        for reason in reasons:
            print(f"  - {reason}", file=sys.stderr)
        print(f"cutover: NO-GO (delta run {delta.run_id}, reports: {reports})", file=sys.stderr)
        return 2
    print(f"  the delta run {delta.run_id} succeeded; every table reconciles; the spot check matches Close")
    print(f"cutover: GO (reports: {reports})")
    return 0


def _close_now() -> datetime:
    client = _close_client()
    try:
        return client.server_now()
    finally:
        client.close()


def _no_go_reasons(
    delta: dg.ExecuteInProcessResult,
    delta_status: int,
    verify: dg.ExecuteInProcessResult,
    verify_status: int,
    started: datetime,
) -> list[str]:
    reasons = []
    if delta_status:
        reasons.append(f"the delta run {delta.run_id} failed (above); fix it and run the cutover again")
    if verify_status:
        reasons.append(f"the verification run {verify.run_id} failed (above)")
    path = default_home() / "reports" / verify.run_id / "reconciliation.csv"
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if not row.get("status", "").startswith(("ok", "partial")):
                    reasons.append(f"{row['table']} does not reconcile: {row['status']}")
    else:
        reasons.append("no reconciliation report was written")
    mismatches = _spot_check_mismatches(verify)
    if mismatches is None:
        reasons.append("the spot check did not run")
    elif mismatches:
        reasons.append(f"the spot check found {mismatches} values that differ from Close")
    client = _close_client()
    try:
        now = client.server_now()
        moved = scan_changes(client, started, now=now)
    finally:
        client.close()
    changed = [
        t for t in moved.changed_tables() if moved.tables[t].newest and moved.tables[t].newest.at >= started
    ]
    if changed:
        reasons.append(f"Close changed during the cutover ({', '.join(changed)}): it is not frozen")
    return reasons


def _spot_check_mismatches(result: dg.ExecuteInProcessResult) -> int | None:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(["reports", "spot_check"]):
            value = event.materialization.metadata.get("mismatches")
            return int(getattr(value, "value", value) or 0)
    return None


def observe() -> int:
    """`close2d365 observe`: record what changed in Close (the `observe` job) and print what is unsynced."""
    from migration_assets.runtime import print_job_outcome, run_job

    result = run_job(OBSERVE_JOB, tags={"close2d365/mode": "observe"})
    status = print_job_outcome(result)
    if status:
        return status
    for event in result.all_events:
        if event.event_type_value != "ASSET_OBSERVATION" or event.asset_key is None:
            continue
        meta = event.event_specific_data.asset_observation.metadata  # type: ignore[union-attr]
        counts = {k: getattr(meta.get(k), "value", None) for k in ("created", "updated", "deleted")}
        if any(counts.values()):
            what = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
            print(f"  {event.asset_key.to_user_string()}: {what}")
    stale = unsynced_assets()
    if not stale:
        print("Everything is in sync with Close: a delta run would move nothing.")
        return 0
    names = ", ".join(k.to_user_string() for k in stale)
    print(
        f"Unsynced: {names}. `close2d365 delta` (or 'Materialize unsynced' in the UI) moves them and the "
        f"{len(downstream_assets(stale)) - len(stale)} assets downstream of them."
    )
    return 0
