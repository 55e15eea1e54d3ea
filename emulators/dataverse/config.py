"""Configuration of the Dataverse Web API v9.2 emulator (shared by DV-CORE and DV-EDGE).

The shape of these dataclasses is a contract between the two halves of the emulator
(see the emulator spec); add fields only with defaults so both sides keep importing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

# Deterministic ids so tests, demos and the loader can be configured without reading the emulator's state.
_NS = uuid.UUID("6f1c2d36-5000-4000-8000-00000000c10e")


def deterministic_id(*parts: str) -> str:
    """A stable uuid5 derived from `parts` (used for seeded rows and the default app user)."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


DEFAULT_CLIENT_ID = "c2d36500-0000-4000-8000-0000000a0001"
DEFAULT_CLIENT_SECRET = "close2d365-emulator-secret"  # a local test secret, not a real credential


@dataclass
class AppUser:
    client_id: str  # Entra application (client) id
    client_secret: str
    systemuserid: str  # the application user's systemuser row (seeded, applicationid = client_id)
    # Privileges the app user's seeded security role (emulators/dataverse/security.py) does NOT hold (e.g. "prvOverrideCreatedOnCreatedBy",
    # "prvBypassCustomBusinessLogic", "prvCreateAccount"); requests needing one answer 403 0x80040220.
    missing_privileges: list[str] = field(default_factory=list)
    name: str = "close2d365 migration"


def default_app_users() -> list[AppUser]:
    return [
        AppUser(
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            systemuserid=deterministic_id("systemuser", DEFAULT_CLIENT_ID),
        )
    ]


@dataclass
class ServiceProtection:  # per application user, sliding window (real: 6000 req / 300 s, 1_200_000 ms, 52 concurrent)
    enabled: bool = False
    window_seconds: float = 300.0
    max_requests: int = 6000
    max_execution_ms: int = 1_200_000
    max_concurrent: int = 52
    cost_ms_per_request: float = 2.0  # simulated execution time charged per request
    cost_ms_per_record: float = 2.0  # extra per record in a bulk message / batch part


@dataclass
class Latency:  # how long answers take (emulators/dataverse/latency.py); off by default
    round_trip_ms: float = 0.0  # the network, on every Web API request (throttled and failed ones too)
    # Hold each admitted request for the execution time service protection charges it (ServiceProtection
    # costs), so that the execution-time budget and the wall time agree.
    execution_time: bool = False


@dataclass
class Faults:  # fault injection on demand (rates 0..1, deterministic with seed)
    seed: int = 0
    error_5xx_rate: float = 0.0  # answer 503 (or 500/502/504) before doing any work
    drop_rate: float = 0.0  # close the connection without an answer (before doing the work)
    drop_after_work_rate: float = (
        0.0  # do the work, then drop the connection (client sees an error, write landed)
    )
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    throttle_storm_rate: float = 0.0  # answer 429 with Retry-After regardless of limits
    # Hold the first request that matches this regular expression (searched in "METHOD /path", then the
    # body of a POST, so a `$batch` part's request line matches too) until its client goes away: a test
    # sees it arrive (stats held) and kills the client from outside. "" = off; set again to re-arm.
    hold_request: str = ""
    hold_after_work: bool = False  # do the work first (the write lands), then hold: the answer never comes


def default_seed_users() -> list[dict]:
    """A small default user list; the demo/e2e passes the Close org's users instead."""
    return [
        {
            "firstname": "Alice",
            "lastname": "Admin",
            "internalemailaddress": "alice@example.com",
            "isdisabled": False,
        },
        {
            "firstname": "Bob",
            "lastname": "Seller",
            "internalemailaddress": "bob@example.com",
            "isdisabled": False,
        },
        {
            "firstname": "Dana",
            "lastname": "Former",
            "internalemailaddress": "dana@example.com",
            "isdisabled": True,
        },
    ]


@dataclass
class DataverseEmulatorConfig:
    tenant_id: str = "00000000-0000-0000-0000-00000000c10e"
    org_name: str = "close2d365emu"
    app_users: list[AppUser] = field(default_factory=default_app_users)
    token_lifetime_seconds: int = 3599
    # No customization prefix here: publishers and solutions are records, as on the real service; the Default
    # Solution's publisher has the prefix "new" (emulators/dataverse/solutions.py).
    # systemusers to seed: {"firstname","lastname","internalemailaddress","isdisabled"}
    seed_users: list[dict] = field(default_factory=default_seed_users)
    max_upload_file_size: int = 5_242_880  # organization.maxuploadfilesize (bytes)
    key_activation_seconds: float = 0.5  # alternate key index Pending -> Active
    dop_hint: int = 8  # x-ms-dop-hint
    protection: ServiceProtection = field(default_factory=ServiceProtection)
    faults: Faults = field(default_factory=Faults)
    latency: Latency = field(default_factory=Latency)
    persist_path: str | None = None  # JSON file: load at start if present, save on change/shutdown
    # Currencies enabled besides the base currency (USD): ISO code -> (name, symbol, exchange rate to base).
    # A real org has only what its admin enabled; records in any other currency are rejected at staging.
    extra_currencies: dict[str, tuple[str, str, float]] = field(
        default_factory=lambda: {"EUR": ("Euro", "€", 0.92), "GBP": ("Pound Sterling", "£", 0.79)}
    )
    # Global privilege switch: when False, no app user may set overriddencreatedon (403 0x80040220),
    # in addition to the per-app-user `missing_privileges`.
    allow_override_createdon: bool = True
    # The environment URL used in OData-EntityId/@odata.context/nextLink; None = the request's base URL.
    org_url: str | None = None
    # Tables that answer CreateMultiple/UpdateMultiple/UpsertMultiple. None = the seeded choice: account,
    # contact, lead, opportunity, annotation and custom non-activity tables (activity tables need $batch).
    bulk_message_tables: list[str] | None = None
    # The calling user's time zone (IANA name): formatted values of UserLocal date-time columns use it.
    user_time_zone: str = "UTC"

    def app_user_by_client_id(self, client_id: str) -> AppUser | None:
        for user in self.app_users:
            if user.client_id == client_id:
                return user
        return None
