"""Resources: the Close client, the Dataverse client and the DuckDB warehouse.

Secrets are `dg.EnvVar`s, resolved only when a run starts, so nothing secret is stored in the definitions,
the run config or the UI. Non-secret settings are read from the environment when the definitions load.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from migration_assets.resources import env
from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

CLOSE_API_URL = "https://api.close.com/api/v1/"


def close_resource() -> CloseResource:
    return CloseResource(
        api_key=dg.EnvVar(env.CLOSE_API_KEY),
        base_url=os.environ.get(env.CLOSE_BASE_URL, CLOSE_API_URL),
        source=env.close_source(),  # type: ignore[arg-type]  # validated by the resource's Literal
        export_file=os.environ.get(env.CLOSE2D365_EXPORT_FILE) or None,
    )


class MissingEnvironmentError(RuntimeError):
    """A command needs settings that are not in the environment."""


def dataverse_resource(resolved: bool = False) -> DataverseResource:
    """The Dataverse resource. For the Definitions its secrets are EnvVars, resolved when a run starts;
    `resolved=True` reads the values now, for commands that talk to Dataverse outside a Dagster run."""
    if resolved:
        missing = env.missing(env.DATAVERSE_CREDENTIALS)
        if missing:
            raise MissingEnvironmentError(f"set {', '.join(missing)} to reach the Dataverse environment")
    value = (lambda name: os.environ[name]) if resolved else dg.EnvVar
    return DataverseResource(
        environment_url=value(env.DATAVERSE_URL),
        tenant_id=value(env.DATAVERSE_TENANT_ID),
        client_ids=value(env.DATAVERSE_CLIENT_IDS),
        client_secrets=value(env.DATAVERSE_CLIENT_SECRETS),
        authority_host=os.environ.get(env.DATAVERSE_AUTHORITY_HOST, "https://login.microsoftonline.com"),
        ca_bundle=os.environ.get(env.DATAVERSE_CA_BUNDLE) or None,
    )


def build_resources() -> dict[str, Any]:
    """Resources for the deployed Definitions."""
    return {
        "close": close_resource(),
        "dataverse": dataverse_resource(),
        "warehouse": WarehouseResource(),
    }
