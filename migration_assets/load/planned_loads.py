"""The load a migration plans, counted from the extracted Close data before anything is staged: the input of
the request entitlement estimate (load/estimate.py) shown by reports/load_plan."""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from migration_assets.load.estimate import TableLoad, upload_blocks
from migration_assets.mapping.tables import TableRegistry
from migration_assets.resources.warehouse import table_exists

# Dataverse table -> (close tables whose rows it receives, whether every row also costs a state change after
# create: activities are completed, leads qualified or disqualified).
LoadSources = Mapping[str, tuple[tuple[str, ...], bool]]


def load_sources(registry: TableRegistry) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The registry's tables as `LoadSources`; accounts are counted apart (one per distinct lead name)."""
    return {
        t.name: (t.sources, t.is_activity or t.name == "lead") for t in registry.tables if t.name != "account"
    }


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def planned_loads(
    con: duckdb.DuckDBPyConnection, sources: LoadSources, sms_to_task: bool, status_changes: bool
) -> list[TableLoad]:
    """Upper bound of the load from the extracted Close data (rows rejected in staging only lower it),
    so the figures are there even while staging checks still fail."""

    def rows(table: str) -> int:
        return (
            _count(con, f'SELECT count(*) FROM close."{table}"') if table_exists(con, "close", table) else 0
        )

    loads = [
        TableLoad(
            "account",
            _count(con, "SELECT count(DISTINCT lower(trim(coalesce(name, '')))) FROM close.leads")
            if table_exists(con, "close", "leads")
            else 0,
        )
    ]
    for target, (tables, state) in sources.items():
        used = [
            t for t in tables if (t != "sms" or sms_to_task) and (t != "status_changes" or status_changes)
        ]
        n = sum(rows(t) for t in used)
        actions = (
            _count(con, "SELECT count(*) FROM close.opportunities WHERE status_type IN ('won', 'lost')")
            if target == "opportunity" and table_exists(con, "close", "opportunities")
            else 0
        )
        sizes = (
            [
                r[0]
                for r in con.execute("SELECT size FROM close.attachments WHERE size IS NOT NULL").fetchall()
            ]
            if target == "annotation" and table_exists(con, "close", "attachments")
            else []
        )
        loads.append(TableLoad(target, n, n if state else 0, actions, upload_blocks(sizes)))
    if table_exists(con, "close", "custom_activities"):
        loads.append(TableLoad("custom activities", rows("custom_activities"), rows("custom_activities")))
    return loads


def enabled_licensed_users(con: duckdb.DuckDBPyConnection) -> int:
    """Enabled users of the target that are not application users (staged.target_systemusers; 0 before)."""
    if not table_exists(con, "staged", "target_systemusers"):
        return 0
    return _count(
        con,
        "SELECT count(*) FROM staged.target_systemusers WHERE NOT isdisabled AND applicationid IS NULL",
    )
