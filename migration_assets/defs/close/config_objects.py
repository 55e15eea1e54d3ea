"""Small configuration objects, always read through the API: users, statuses, pipelines, custom
fields, custom activity types, sequences (Workflows) and Smart Views."""

from __future__ import annotations

import dagster as dg

from migration_assets.defs.close._common import Pages, close_asset, run_close_tables
from migration_assets.extract.sources import api_config, prepare_run
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource


def _config_source(table: str):  # noqa: ANN202 - returns a PageSource
    def source(
        context: dg.AssetExecutionContext, close: CloseResource, warehouse: WarehouseResource
    ) -> Pages:
        prepare_run(close, context.run.run_id, run_close_tables(context))  # an export builds meanwhile
        yield api_config(close.get_client(), table)

    return source


users = close_asset(
    "users",
    "Close users: active members (/user/) and deactivated ones (organization inactive_memberships), "
    "which still own records. `is_active` tells them apart.",
    _config_source("users"),
)
lead_statuses = close_asset(
    "lead_statuses",
    "Lead statuses (/status/lead/) in display order (`position`).",
    _config_source("lead_statuses"),
)
pipelines = close_asset(
    "pipelines",
    "Opportunity pipelines (/pipeline/) with their embedded statuses.",
    _config_source("pipelines"),
)
opportunity_statuses = close_asset(
    "opportunity_statuses",
    "Opportunity statuses (/status/opportunity/): label, type active|won|lost, pipeline.",
    _config_source("opportunity_statuses"),
)
custom_fields = close_asset(
    "custom_fields",
    "Custom field definitions of leads, contacts, opportunities and custom activities (/custom_field/<object>/).",
    _config_source("custom_fields"),
)
custom_activity_types = close_asset(
    "custom_activity_types",
    "Custom Activity types (/custom_activity/) with their field metadata.",
    _config_source("custom_activity_types"),
)
sequences = close_asset(
    "sequences",
    "Sequences, called Workflows in Close's UI (/sequence/), with steps.",
    _config_source("sequences"),
)
smart_views = close_asset(
    "smart_views", "Smart Views (/saved_search/) of every object type.", _config_source("smart_views")
)
