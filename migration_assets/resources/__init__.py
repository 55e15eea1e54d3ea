"""Resources: the Close client, the Dataverse client and the DuckDB warehouse.

Secrets are `dg.EnvVar`s, resolved only when a run starts, so nothing secret is stored in the definitions,
the run config or the UI. Non-secret settings are read from the environment when the definitions load.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

CLOSE_API_URL = "https://api.close.com/api/v1/"


def close_resource() -> CloseResource:
    source = os.environ.get("CLOSE2D365_CLOSE_SOURCE", "api")
    return CloseResource(
        api_key=dg.EnvVar("CLOSE_API_KEY"),
        base_url=os.environ.get("CLOSE_BASE_URL", CLOSE_API_URL),
        source=source,  # type: ignore[arg-type]  # validated by the resource's Literal
        export_file=os.environ.get("CLOSE2D365_EXPORT_FILE") or None,
    )


def dataverse_resource() -> DataverseResource:
    return DataverseResource(
        environment_url=dg.EnvVar("DATAVERSE_URL"),
        tenant_id=dg.EnvVar("DATAVERSE_TENANT_ID"),
        client_ids=dg.EnvVar("DATAVERSE_CLIENT_IDS"),
        client_secrets=dg.EnvVar("DATAVERSE_CLIENT_SECRETS"),
        authority_host=os.environ.get("DATAVERSE_AUTHORITY_HOST", "https://login.microsoftonline.com"),
        ca_bundle=os.environ.get("DATAVERSE_CA_BUNDLE") or None,
    )


def build_resources() -> dict[str, Any]:
    """Resources for the deployed Definitions."""
    return {
        "close": close_resource(),
        "dataverse": dataverse_resource(),
        "warehouse": WarehouseResource(),
    }
