"""Every environment variable the product reads, by name, in one place.

Each constant is named after the variable it holds, so a search for the variable finds this file and
every reader. The README's configuration section documents the same list for users.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# --- Close ---------------------------------------------------------------------------------------------
CLOSE_API_KEY = "CLOSE_API_KEY"  # secret: the Close API key (a dg.EnvVar, resolved when a run starts)
CLOSE_BASE_URL = "CLOSE_BASE_URL"  # the Close API root; default https://api.close.com/api/v1/
CLOSE2D365_CLOSE_SOURCE = "CLOSE2D365_CLOSE_SOURCE"  # where close/* reads: "api" (default), "export", "file"
CLOSE2D365_EXPORT_FILE = "CLOSE2D365_EXPORT_FILE"  # the Close JSON export read when the source is "file"
CLOSE2D365_OBSERVE_SECONDS = "CLOSE2D365_OBSERVE_SECONDS"  # close_changes_sensor's interval; default 300

# --- Dataverse -----------------------------------------------------------------------------------------
DATAVERSE_URL = "DATAVERSE_URL"  # the environment, e.g. https://org.crm.dynamics.com
DATAVERSE_TENANT_ID = "DATAVERSE_TENANT_ID"  # the Entra ID tenant of the app registrations
DATAVERSE_CLIENT_IDS = "DATAVERSE_CLIENT_IDS"  # app registration ids, comma-separated (one per app user)
DATAVERSE_CLIENT_SECRETS = "DATAVERSE_CLIENT_SECRETS"  # secret: their client secrets, in the same order
DATAVERSE_AUTHORITY_HOST = "DATAVERSE_AUTHORITY_HOST"  # the identity provider; default Microsoft's login
DATAVERSE_CA_BUNDLE = "DATAVERSE_CA_BUNDLE"  # a CA bundle to trust (the emulator's self-signed HTTPS)

# --- Local files -----------------------------------------------------------------------------------------
CLOSE2D365_HOME = "CLOSE2D365_HOME"  # working folder: warehouse, Dagster instance, reports; ./.close2d365
CLOSE2D365_WAREHOUSE = "CLOSE2D365_WAREHOUSE"  # the DuckDB file; default $CLOSE2D365_HOME/warehouse.duckdb
CLOSE2D365_WAREHOUSE_KEY = "CLOSE2D365_WAREHOUSE_KEY"  # secret: encrypts the warehouse file when set
CLOSE2D365_WAREHOUSE_MEMORY = "CLOSE2D365_WAREHOUSE_MEMORY"  # DuckDB's memory cap, e.g. 1GB; default 512MB
CLOSE2D365_STEP_THREADS = "CLOSE2D365_STEP_THREADS"  # steps of a run under way at once; default 2
CLOSE2D365_MAPPINGS = "CLOSE2D365_MAPPINGS"  # the reviewed mappings folder; default the repository's
DAGSTER_HOME = "DAGSTER_HOME"  # Dagster's instance folder; default $CLOSE2D365_HOME/dagster_home

# What a real migration needs (the demo sets them itself).
DATAVERSE_CREDENTIALS = (DATAVERSE_URL, DATAVERSE_TENANT_ID, DATAVERSE_CLIENT_IDS, DATAVERSE_CLIENT_SECRETS)
REAL_RUN = (CLOSE_API_KEY, *DATAVERSE_CREDENTIALS)


def missing(names: Iterable[str]) -> list[str]:
    """The variables among `names` that are unset or empty, in order."""
    return [name for name in names if not os.environ.get(name)]


def close_source() -> str:
    """Where the close/* assets read from ("api" unless set)."""
    return os.environ.get(CLOSE2D365_CLOSE_SOURCE, "api")


def observe_interval_seconds(default: int = 300) -> int:
    """How often close_changes_sensor observes Close, in seconds (at least 30: each observation reads the
    event log and the configuration objects)."""
    text = os.environ.get(CLOSE2D365_OBSERVE_SECONDS) or ""
    if not text:
        return default
    if not text.isdigit() or int(text) < 30:
        raise ValueError(
            f"{CLOSE2D365_OBSERVE_SECONDS} must be a whole number of seconds >= 30, got {text!r}"
        )
    return int(text)


def mappings_setting() -> str | None:
    """The mappings folder named by the environment, or None (then the repository's `mappings/`)."""
    return os.environ.get(CLOSE2D365_MAPPINGS) or None


def warehouse_key() -> str | None:
    """The warehouse encryption key, or None for an unencrypted, owner-only file."""
    return os.environ.get(CLOSE2D365_WAREHOUSE_KEY) or None
