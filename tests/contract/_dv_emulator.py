"""What the Dataverse client contract tests share: a client of the emulator signed in as some of its
application users, and the emulator's admin endpoint for faults, clock and counters."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from emulators.dataverse.config import AppUser
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.transport import AppUserCredentials, TransportSettings


def post_faults(server: EmulatorServer, document: dict[str, Any]) -> dict[str, Any]:
    """POST `document` to the emulator's `/_emulator/faults` (faults, clock) and return its state."""
    ctx = ssl.create_default_context(cafile=server.ca_bundle)
    resp = httpx.post(server.base_url + "/_emulator/faults", json=document, verify=ctx)
    resp.raise_for_status()
    return resp.json()


def emulator_client(
    server: EmulatorServer, users: list[AppUser], max_in_flight: int = 4, **kw: Any
) -> DataverseClient:
    """A client of `server` as `users`, with short client-side backoffs (the server's Retry-After rules)."""
    settings = TransportSettings(
        environment_url=server.base_url,
        tenant_id=server.config.tenant_id,
        users=[AppUserCredentials(u.client_id, u.client_secret) for u in users],
        authority_host=server.base_url,
        ca_bundle=server.ca_bundle,
        max_in_flight=max_in_flight,
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    return DataverseClient(settings, **kw)
