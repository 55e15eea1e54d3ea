"""Resources: the Close client, the Dataverse client and the DuckDB warehouse. Secrets come from the environment."""

from __future__ import annotations

from typing import Any

from migration_assets.resources.warehouse import WarehouseResource


def build_resources() -> dict[str, Any]:
    """Resources for the deployed Definitions; secrets are EnvVars, resolved only when a run starts."""
    return {
        "warehouse": WarehouseResource(),
    }
