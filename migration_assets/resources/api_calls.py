"""Every step that talks to Close or Dataverse says how many requests it sent and how many it had to repeat.

The clients count every request and every retry (429, 5xx, dropped connection, expired token) wherever it
happens: metadata reads, schema writes, loads, read-back, downloads. `reports_api_calls` wraps a step's
function and adds the step's share of those counts to its materialization or check result
(`dataverse_requests`, `dataverse_retries`, `dataverse_throttled_429`, and the same for `close_`), so the run's
totals are the sum over its steps (`run_call_totals`) and a retry is never invisible. A step that fails logs
its counts instead. The clients count each request into the scope of the step it was sent for
(clients/call_scope.py), from whichever thread sends it, so a step's counts are its own even while other
steps of the run send requests too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import dagster as dg

from migration_assets.clients.call_scope import COUNTERS, call_scope

F = TypeVar("F", bound=Callable[..., Any])

# The services the clients count for (clients/call_scope.py), each the prefix of its metadata.
SERVICES = ("dataverse", "close")


def step_calls(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """Metadata of one step: the counters' growth per service, for services the step sent requests to."""
    out: dict[str, int] = {}
    for name, now in after.items():
        then = before.get(name, {})
        grown = {k: int(now.get(k, 0) - then.get(k, 0)) for k in COUNTERS}
        if grown["requests"] or grown["retries"]:
            out.update({f"{name}_{k}": v for k, v in grown.items()})
    return out


def _with_metadata(result: Any, calls: dict[str, int], context: Any) -> Any:
    if not calls:
        return result
    if isinstance(result, dg.MaterializeResult | dg.AssetCheckResult):
        return result._replace(metadata={**(result.metadata or {}), **calls})
    if result is None and isinstance(context, dg.AssetExecutionContext):
        context.add_output_metadata(calls)
    return result


def reports_api_calls(fn: F) -> F:
    """Decorate an asset or asset check function (below the Dagster decorator) that takes `dataverse`
    and/or `close` resources: its result carries the requests and retries it caused."""

    @functools.wraps(fn)
    def step(context: Any, *args: Any, **kwargs: Any) -> Any:
        with call_scope() as scope:
            try:
                result = fn(context, *args, **kwargs)
            except BaseException:
                calls = step_calls({}, scope.counts())
                if calls:
                    context.log.warning(f"API calls of this step before it stopped: {calls}")
                raise
        if inspect.isgenerator(result):  # its requests would be sent after the scope closed, uncounted
            raise TypeError(f"{fn.__name__}: reports_api_calls wraps functions that return, not generators")
        return _with_metadata(result, step_calls({}, scope.counts()), context)

    return step  # type: ignore[return-value]


def run_call_totals(metadata: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Sum of the per-step counts over a run's materializations and check evaluations."""
    totals: dict[str, int] = {}
    for meta in metadata:
        for name in SERVICES:
            for k in COUNTERS:
                value = meta.get(f"{name}_{k}")
                value = getattr(value, "value", value)
                if isinstance(value, int):
                    totals[f"{name}_{k}"] = totals.get(f"{name}_{k}", 0) + value
    return totals


def calls_line(totals: Mapping[str, int]) -> str | None:
    """One line for the command line: what each service was asked and how often it had to be asked again."""
    parts = []
    for name, label, throttled in (
        ("close", "Close", "rate-limited"),
        ("dataverse", "Dataverse", "throttled"),
    ):
        requests = totals.get(f"{name}_requests", 0)
        if requests:
            retries, limited = totals.get(f"{name}_retries", 0), totals.get(f"{name}_throttled_429", 0)
            parts.append(f"{label} {requests} requests, {retries} retried ({limited} {throttled}, 429)")
    return "API calls: " + "; ".join(parts) if parts else None
