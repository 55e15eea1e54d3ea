"""The Dagster face of the Dataverse client: `DataverseResource` builds one `DataverseClient` per run from
configuration (secrets from environment variables via `dg.EnvVar`)."""

from __future__ import annotations

import threading

import dagster as dg
from pydantic import Field, PrivateAttr

from migration_assets.clients.dataverse.client import (
    DEFAULT_BATCH_REQUEST_SIZE,
    DEFAULT_BATCH_SIZE,
    DataverseClient,
)
from migration_assets.clients.dataverse.errors import DataverseConfigError
from migration_assets.clients.dataverse.transport import AppUserCredentials, TransportSettings

_CLIENT_LOCK = threading.Lock()


def _split_list(value: str | list[str]) -> list[str]:
    items = value if isinstance(value, list) else value.split(",")
    return [v.strip() for v in items if v and v.strip()]


class DataverseResource(dg.ConfigurableResource):
    """Dataverse connection settings. Wire secrets with dg.EnvVar: DATAVERSE_URL, DATAVERSE_TENANT_ID,
    DATAVERSE_CLIENT_IDS, DATAVERSE_CLIENT_SECRETS (comma-separated, same order: one app user each)."""

    environment_url: str = Field(description="e.g. https://org.crm.dynamics.com")
    tenant_id: str
    client_ids: str = Field(description="application (client) ids, comma-separated")
    client_secrets: str = Field(description="client secrets, comma-separated, same order as client_ids")
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = Field(default=None, description="CA bundle path (the emulator's local CA)")
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, description="rows per CreateMultiple/UpsertMultiple")
    batch_request_size: int = Field(default=DEFAULT_BATCH_REQUEST_SIZE, description="requests per $batch")
    max_in_flight: int = Field(default=4, description="concurrent requests per application user")
    bypass_custom_logic: bool = False
    use_bulk_messages: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 180.0
    max_retries: int = 8

    _client: DataverseClient | None = PrivateAttr(default=None)

    def settings(self) -> TransportSettings:
        ids, secrets = _split_list(self.client_ids), _split_list(self.client_secrets)
        if not ids or len(ids) != len(secrets):
            raise DataverseConfigError(
                f"DATAVERSE_CLIENT_IDS has {len(ids)} entries but DATAVERSE_CLIENT_SECRETS has {len(secrets)}; "
                f"give one secret per client id, comma-separated, in the same order"
            )
        return TransportSettings(
            environment_url=self.environment_url,
            tenant_id=self.tenant_id,
            users=[AppUserCredentials(i, s) for i, s in zip(ids, secrets, strict=True)],
            authority_host=self.authority_host,
            ca_bundle=self.ca_bundle,
            max_in_flight=self.max_in_flight,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retries=self.max_retries,
        )

    def get_client(self) -> DataverseClient:
        """The client of this run (created once; metadata and bulk-support caches live as long as it).

        Locked: steps of one run ask for it from their own threads (step_threads.py); two clients would
        each learn the target afresh, and the answers of the one not kept would never be recorded."""
        with _CLIENT_LOCK:
            if self._client is None:
                self._client = DataverseClient(
                    self.settings(),
                    batch_size=self.batch_size,
                    batch_request_size=self.batch_request_size,
                    bypass_custom_logic=self.bypass_custom_logic,
                    use_bulk_messages=self.use_bulk_messages,
                )
            return self._client

    def call_counts(self) -> dict[str, int]:
        """Requests, retries and 429s of this run's client so far, over all app users (zeros before any
        call)."""
        users = self._client.stats().values() if self._client is not None else []
        return {
            "requests": sum(u.get("requests", 0) for u in users),
            "retries": sum(u.get("retries", 0) for u in users),
            "throttled_429": sum(u.get("throttled", 0) for u in users),
        }

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
