"""Load plan arithmetic (reference §5.1, §5.2, §11): custom tables against the edition's limit, and the
Power Platform requests a planned load costs against the daily entitlement. Pure: counts in, figures out.

Entitlement counts every CRUD operation, *including each item inside a bulk message*; service protection
(6,000 requests / 5 min / user / server) counts HTTP requests, where a bulk message or a $batch is one.

`load_seconds` predicts how long the load takes when each request costs a network round trip plus the
execution time the service charges it (per request and per record, reference §5.1; the emulators' latency
model, emulators/dataverse/latency.py, charges and sleeps exactly that). It follows the loader's request
pattern (load/engine.py): tables one after another, but a table with a pool of its own (`TableWrites.after`:
the annotations) loads beside the others once the tables it follows are loaded (they go first); ledgered
batches one after another, each batch's file downloads made while the batch before it is sent (or,
`fetch_ahead`, all of them from the load's start, beside the tables before theirs); a batch sends its writes
(bulk messages of `bulk_size` rows or `$batch` of `batch_parts`, up to `in_flight` at once per application
user), then the final states (UpdateMultiple on bulk tables, else `$batch` one after another; Win/Lose
actions in `$batch` of `action_parts`). Both pools are given every in-flight slot: in the loader they share
the application users' slots, which the estimate does not divide. The result is never below the
service-protection floor: the requests and the execution time the load needs, at what the limits allow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Sales Professional: "up to 15 custom tables (per application)"; Enterprise/Premium: no such limit (§11).
EDITION_TABLE_LIMITS: dict[str, int | None] = {
    "sales_professional": 15,
    "sales_enterprise": None,
    "sales_premium": None,
}
TENANT_POOL_BASE, TENANT_POOL_PER_LICENCE, TENANT_POOL_MAX = 500_000, 5_000, 10_000_000
SERVICE_PROTECTION_REQUESTS = 6_000  # per 5 minutes, per user, per web server
SERVICE_PROTECTION_EXECUTION_MS = 1_200_000  # combined execution time per 5 minutes, per user (§5.1)
SERVICE_PROTECTION_WINDOW_S = 300.0
UPLOAD_BLOCK = 4 * 1024 * 1024  # chunked upload block size (base64 bytes)


@dataclass(frozen=True)
class TableLoad:
    table: str
    rows: int
    state_changes: int = 0  # PATCH statecode/statuscode after create
    close_actions: int = 0  # WinOpportunity / LoseOpportunity
    upload_blocks: int = 0  # extra chunked-upload calls for large files


@dataclass(frozen=True)
class LoadEstimate:
    entitlement_requests: int  # what counts against the daily Power Platform entitlement
    http_requests: int  # what counts against service protection limits
    daily_pool: int
    days: int
    min_minutes_per_user: float  # lower bound from the 6,000 / 5 min service-protection window


@dataclass(frozen=True)
class TableWrites:
    """One table's load as the loader sends it (the input of `load_seconds`)."""

    table: str
    rows: int
    state_changes: int = 0  # rows whose final state is not the one a record is created in
    close_actions: int = 0  # WinOpportunity / LoseOpportunity
    bulk: bool = True  # written with bulk messages (CreateMultiple...), else `$batch`
    downloads: int = 0  # file bodies downloaded from the source on the way (attachments)
    upload_blocks: int = 0
    # None: loaded in the main pool, one table after another. A set: loaded in a pool of its own, beside
    # the main pool's tables, once the tables it names are loaded; the main pool loads those first
    # (defs/loaded/tables.py FILES_POOL and FIRST).
    after: frozenset[str] | None = None


@dataclass(frozen=True)
class ServiceTimes:
    """What one request takes: the round trip plus the execution time charged per request and per record
    (bulk Targets or `$batch` parts); a file download from the source takes `download_ms`."""

    round_trip_ms: float = 0.0
    request_ms: float = 0.0
    record_ms: float = 0.0
    download_ms: float = 0.0

    def charged_ms(self, records: int) -> float:
        return self.request_ms + self.record_ms * records

    def seconds(self, records: int) -> float:
        return (self.round_trip_ms + self.charged_ms(records)) / 1000.0


@dataclass(frozen=True)
class LoaderShape:
    """How the loader sends a table (its own settings: defs/loaded/_common.BATCH_ROWS, the client's batch
    sizes and in-flight window, engine.ACTION_BATCH_PARTS and DOWNLOAD_WORKERS); `setup_requests` are the
    requests a loaded step sends besides its writes, when they were not counted on a load (metadata, the
    target scan, key lookups, checks): the `tiny` and `demo` loads of bench/e2e.py sent about 150 such
    requests over 13 loaded steps, whatever their size."""

    batch_rows: int
    bulk_size: int
    batch_parts: int
    action_parts: int
    in_flight: int
    download_workers: int
    app_users: int = 1
    setup_requests: int = 12
    # Files fetched ahead (loaded/file_bodies): downloaded from the load's start, beside the tables before
    # theirs, which then starts once they are all on disk and sends them without downloading.
    fetch_ahead: bool = False


@dataclass(frozen=True)
class LoadDuration:
    seconds: float  # the prediction: the tool's own time plus the service's, never below the floor
    service_seconds: float  # the loader's request pattern at the service's round trip and execution time
    own_seconds: float  # the tool's own time (given)
    protection_seconds: float  # the floor from service protection (requests and execution time per user)
    requests: int
    charged_ms: float


def _request_sizes(records: int, per_request: int) -> list[int]:
    full, rest = divmod(records, per_request)
    return [per_request] * full + ([rest] if rest else [])


def _parallel(sizes: Sequence[int], lanes: int, times: ServiceTimes) -> float:
    """Requests sent `lanes` at a time: each wave lasts as long as its largest request."""
    return sum(times.seconds(max(sizes[i : i + lanes])) for i in range(0, len(sizes), lanes))


def _table_requests(t: TableWrites, rows: int, shape: LoaderShape) -> tuple[list[int], list[int], list[int]]:
    """One ledgered batch of `rows` of table `t`: its write, state and action requests (records each)."""
    share = rows / t.rows if t.rows else 0.0
    writes = _request_sizes(rows, shape.bulk_size if t.bulk else shape.batch_parts)
    states = _request_sizes(round(t.state_changes * share), shape.bulk_size if t.bulk else shape.batch_parts)
    actions = _request_sizes(round(t.close_actions * share), shape.action_parts)
    return writes, states, actions


def _batches(t: TableWrites, shape: LoaderShape) -> list[int]:
    full, rest = divmod(t.rows, shape.batch_rows)
    return [shape.batch_rows] * full + ([rest] if rest else [])


def write_requests(loads: Sequence[TableWrites], shape: LoaderShape) -> int:
    """The writes, final states, actions and upload blocks `load_seconds` expects the loader to send."""
    batched = sum(
        sum(len(part) for part in _table_requests(t, rows, shape))
        for t in loads
        for rows in _batches(t, shape)
    )
    return batched + sum(t.upload_blocks for t in loads)


def pipelined_seconds(steps: Sequence[tuple[float, float]]) -> float:
    """Wall time of batches whose downloads (first) overlap the previous batch's sends (second): the
    loader prepares the next batch while it sends one (load/batches.py prepared_ahead)."""
    if not steps:
        return 0.0
    wall = steps[0][0] + steps[-1][1]
    for (_, send), (fetch, _) in zip(steps, steps[1:], strict=False):
        wall += max(send, fetch)
    return wall


def _table_seconds(
    t: TableWrites, times: ServiceTimes, shape: LoaderShape, lanes: int, workers: int, sizes: list[int]
) -> float:
    """One table's wall time: its ledgered batches, each one's downloads (unless fetched ahead) overlapping
    the batch before it being sent. Appends the records of each request it sends to `sizes`."""
    fetched_ahead = shape.fetch_ahead and t.downloads > 0
    steps: list[tuple[float, float]] = []  # (downloads, sends) of each ledgered batch, in seconds
    for rows in _batches(t, shape):
        writes, states, actions = _table_requests(t, rows, shape)
        downloads = round(t.downloads * rows / t.rows) if t.rows and not fetched_ahead else 0
        fetch = math.ceil(downloads / workers) * times.download_ms / 1000.0
        # UpdateMultiple goes out in parallel like the writes; `$batch` states and actions one by one.
        send = (
            _parallel(writes, lanes, times)
            + _parallel(states, lanes if t.bulk else 1, times)
            + _parallel(actions, 1, times)
        )
        steps.append((fetch, send))
        sizes += writes + states + actions
    sizes += [0] * t.upload_blocks
    return pipelined_seconds(steps) + t.upload_blocks * times.seconds(0)


def load_seconds(
    loads: Sequence[TableWrites],
    times: ServiceTimes,
    shape: LoaderShape,
    own_seconds: float = 0.0,
    reads: int | None = None,
) -> LoadDuration:
    """The predicted duration of loading `loads` (see the module docstring). `own_seconds` is the tool's
    own time for the same load, which the service's times add to (the same load measured against the
    emulators with no latency; 0 when unknown); `reads` the requests it sends besides `write_requests`,
    one at a time (counted on such a load; unknown: `setup_requests` per table)."""
    lanes = max(1, shape.in_flight * shape.app_users)
    reads = shape.setup_requests * len(loads) if reads is None else max(reads, 0)
    sizes: list[int] = [0] * reads
    workers = max(1, shape.download_workers)
    ahead = (
        math.ceil(sum(t.downloads for t in loads) / workers) * times.download_ms / 1000.0
        if shape.fetch_ahead
        else 0.0
    )
    beside = [t for t in loads if t.after is not None]
    awaited = {name for t in beside for name in t.after or ()}
    # Stable: the tables a load beside them waits for go first, the others keep their order.
    main = sorted((t for t in loads if t.after is None), key=lambda t: t.table not in awaited)
    clock = reads * times.seconds(0)
    loaded: dict[str, float] = {}
    for t in main:
        start = max(clock, ahead) if shape.fetch_ahead and t.downloads > 0 else clock
        clock = start + _table_seconds(t, times, shape, lanes, workers, sizes)
        loaded[t.table] = clock
    wall = clock
    side_clock = reads * times.seconds(0)
    for t in beside:
        start = max([side_clock] + [loaded[name] for name in t.after or () if name in loaded])
        if shape.fetch_ahead and t.downloads > 0:
            start = max(start, ahead)
        side_clock = start + _table_seconds(t, times, shape, lanes, workers, sizes)
        wall = max(wall, side_clock)
    charged = sum(times.charged_ms(n) for n in sizes)
    users = max(1, shape.app_users)
    floor = (
        max(len(sizes) / SERVICE_PROTECTION_REQUESTS, charged / SERVICE_PROTECTION_EXECUTION_MS)
        * SERVICE_PROTECTION_WINDOW_S
        / users
    )
    total = max(wall + own_seconds, floor)
    return LoadDuration(
        round(total, 1), round(wall, 1), round(own_seconds, 1), round(floor, 1), len(sizes), charged
    )


def daily_pool(licences: int) -> int:
    """Tenant-level pool for non-licensed (application) users with Dynamics 365 Enterprise/Professional."""
    return min(TENANT_POOL_MAX, TENANT_POOL_BASE + TENANT_POOL_PER_LICENCE * max(0, licences))


def estimate(
    loads: list[TableLoad],
    licences: int,
    batch_size: int = 250,
    batch_request_size: int = 100,
    app_users: int = 1,
) -> LoadEstimate:
    ent = http = 0
    for t in loads:
        ent += t.rows + t.state_changes + t.close_actions + t.upload_blocks
        http += math.ceil(t.rows / batch_size) if t.rows else 0
        extra = t.state_changes + t.close_actions
        http += math.ceil(extra / batch_request_size) if extra else 0
        http += t.upload_blocks
    pool = daily_pool(licences)
    minutes = http / SERVICE_PROTECTION_REQUESTS * 5 / max(1, app_users)
    return LoadEstimate(ent, http, pool, max(1, math.ceil(ent / pool)) if ent else 0, round(minutes, 1))


def upload_blocks(file_sizes: list[int], simple_limit: int = UPLOAD_BLOCK) -> int:
    """Extra calls for files sent by chunked upload (Initialize + blocks + Commit instead of one create)."""
    extra = 0
    for size in file_sizes:
        b64 = 4 * math.ceil(size / 3)
        if b64 > simple_limit:
            extra += 1 + math.ceil(b64 / UPLOAD_BLOCK)
    return extra


def table_limit(edition: str) -> int | None:
    if edition not in EDITION_TABLE_LIMITS:
        raise ValueError(
            f"unknown Dynamics 365 edition {edition!r} (known: {', '.join(EDITION_TABLE_LIMITS)})"
        )
    return EDITION_TABLE_LIMITS[edition]


def custom_tables_used(planned: int, existing: int, edition: str) -> Mapping[str, object]:
    limit = table_limit(edition)
    total = planned + existing
    return {
        "planned_custom_tables": planned,
        "existing_custom_tables": existing,
        "total": total,
        "limit": limit,
        "within_limit": limit is None or total <= limit,
    }
