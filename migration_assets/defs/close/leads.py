"""Leads, contacts and opportunities: from the API (lead query windows, /opportunity/ date windows)
or from a JSON export, per `CloseResource.source`."""

from __future__ import annotations

from migration_assets.defs.close._common import close_asset, table_source

leads = close_asset(
    "leads",
    "Close leads (the organisations). `raw` is the full lead without its embedded contacts, "
    "opportunities and tasks, which are extracted into their own tables.",
    table_source("leads"),
)
contacts = close_asset(
    "contacts",
    "Close contacts, read from the leads that embed them (never capped by max_skip).",
    table_source("contacts"),
)
opportunities = close_asset(
    "opportunities", "Close opportunities (money in integer cents).", table_source("opportunities")
)
