"""Every step that talks to an API reports its requests and retries; the run's totals are their sum."""

# No `from __future__ import annotations`: Dagster reads the context annotation as an object.
from typing import Any

import dagster as dg

from migration_assets.clients.call_scope import count
from migration_assets.resources.api_calls import (
    calls_line,
    reports_api_calls,
    run_call_totals,
    step_calls,
)
from migration_assets.runtime import step_metadata


class CountingApi(dg.ConfigurableResource):
    """Stands in for a Dataverse client: it counts what it sends where the real clients do."""

    def call(self, retries: int = 0, throttled: int = 0) -> None:
        count("dataverse", "requests", 1 + retries)
        count("dataverse", "retries", retries)
        count("dataverse", "throttled_429", throttled)


def test_step_calls_is_the_growth_per_service_and_skips_services_not_called() -> None:
    before = {"dataverse": {"requests": 10, "retries": 1, "throttled_429": 0}, "close": {"requests": 3}}
    after = {
        "dataverse": {"requests": 15, "retries": 3, "throttled_429": 1},
        "close": {"requests": 3, "retries": 0, "throttled_429": 0},
    }
    assert step_calls(before, after) == {
        "dataverse_requests": 5,
        "dataverse_retries": 2,
        "dataverse_throttled_429": 1,
    }


def test_run_totals_sum_metadata_values_and_the_line_names_both_services() -> None:
    metas: list[dict[str, Any]] = [
        {"dataverse_requests": dg.MetadataValue.int(4), "dataverse_retries": dg.MetadataValue.int(1)},
        {"dataverse_requests": 6, "dataverse_retries": 2, "dataverse_throttled_429": 2, "other": "x"},
        {"close_requests": 9, "close_retries": 0},
    ]
    totals = run_call_totals(metas)
    assert totals == {
        "dataverse_requests": 10,
        "dataverse_retries": 3,
        "dataverse_throttled_429": 2,
        "close_requests": 9,
        "close_retries": 0,
    }
    line = calls_line(totals)
    assert line == (
        "API calls: Close 9 requests, 0 retried (0 rate-limited, 429); "
        "Dataverse 10 requests, 3 retried (2 throttled, 429)"
    )
    assert calls_line({}) is None


def test_assets_and_checks_carry_their_own_retries_and_a_failed_step_logs_them() -> None:
    @dg.asset
    @reports_api_calls
    def reads(context: dg.AssetExecutionContext, dataverse: CountingApi) -> dg.MaterializeResult:
        dataverse.call(retries=2, throttled=1)
        return dg.MaterializeResult(metadata={"rows": 1})

    @dg.asset_check(asset=reads)
    @reports_api_calls
    def looks_up(context: dg.AssetCheckExecutionContext, dataverse: CountingApi) -> dg.AssetCheckResult:
        dataverse.call(retries=1)
        return dg.AssetCheckResult(passed=True)

    @dg.asset(deps=[reads])
    @reports_api_calls
    def quiet(context: dg.AssetExecutionContext, dataverse: CountingApi) -> None:
        return None  # no call: no counts in its metadata

    @dg.asset(deps=[quiet])
    @reports_api_calls
    def breaks(context: dg.AssetExecutionContext, dataverse: CountingApi) -> None:
        dataverse.call(retries=4)
        raise RuntimeError("stopped")

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [reads, looks_up, quiet, breaks],
        resources={"dataverse": CountingApi()},
        raise_on_error=False,
        instance=instance,
    )
    by_key = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert by_key["reads"]["rows"].value == 1
    assert by_key["reads"]["dataverse_retries"].value == 2
    assert by_key["reads"]["dataverse_throttled_429"].value == 1
    assert "dataverse_requests" not in by_key["quiet"]
    (check,) = result.get_asset_check_evaluations()
    assert check.metadata["dataverse_retries"].value == 1
    assert run_call_totals(step_metadata(result))["dataverse_retries"] == 3
    warnings = [
        e.user_message for e in instance.all_logs(result.run_id) if "before it stopped" in e.user_message
    ]
    assert warnings and "'dataverse_retries': 4" in warnings[0]
