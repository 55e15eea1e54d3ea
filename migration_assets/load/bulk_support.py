"""Which bulk messages (CreateMultiple, UpdateMultiple, UpsertMultiple) each table of the target supports,
kept in the warehouse (`loaded.bulk_message_support`) so that a run asks Dataverse only about a table and
message no earlier run asked about (reference §4.1: detect support at runtime, per table).

Support is a property of the environment, not of a run: each answer is recorded under the environment's URL
with where it came from (the `sdkmessagefilters` query), when it was given and by which run. An environment
can gain a message (Microsoft enables bulk messages table by table): `forget_bulk_support` drops the record
(of one environment, or of one table) and the next run asks again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.resources.warehouse import SHARED_RECORDS

SCHEMA = "loaded"
TABLE = "bulk_message_support"
SOURCE = "GET sdkmessagefilters (reference §4.1)"


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (environment_url VARCHAR NOT NULL, message VARCHAR NOT NULL, "
        "table_name VARCHAR NOT NULL, supported BOOLEAN NOT NULL, source VARCHAR NOT NULL, "
        "asked_at TIMESTAMPTZ NOT NULL, run_id VARCHAR, PRIMARY KEY (environment_url, message, table_name))"
    )


def prime_bulk_support(con: duckdb.DuckDBPyConnection, client: DataverseClient) -> int:
    """Give `client` the answers recorded for its environment; returns how many it took."""
    ensure_table(con)
    rows = con.execute(
        f"SELECT message, table_name, supported FROM {SCHEMA}.{TABLE} WHERE environment_url = ?",
        [client.environment_url],
    ).fetchall()
    return client.prime_bulk_support((str(m), str(t), bool(s)) for m, t, s in rows)


def record_bulk_support(con: duckdb.DuckDBPyConnection, client: DataverseClient, run_id: str | None) -> int:
    """Record the answers `client` got from the server (a newer answer replaces an older one); returns how
    many rows were written."""
    answers = client.bulk_support_asked()
    if not answers:
        return 0
    with SHARED_RECORDS:
        ensure_table(con)
        con.executemany(
            f"INSERT OR REPLACE INTO {SCHEMA}.{TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    client.environment_url,
                    a.message,
                    a.table,
                    a.supported,
                    SOURCE,
                    datetime.fromtimestamp(a.asked_at, UTC),
                    run_id,
                )
                for a in answers
            ],
        )
    return len(answers)


def forget_bulk_support(
    con: duckdb.DuckDBPyConnection, environment_url: str | None = None, table: str | None = None
) -> int:
    """Drop recorded answers (all, or of one environment and/or table): the next run asks again. Returns
    how many were dropped."""
    ensure_table(con)
    where, params = [], []
    if environment_url is not None:
        where.append("environment_url = ?")
        params.append(environment_url.rstrip("/"))
    if table is not None:
        where.append("table_name = ?")
        params.append(table)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    count = con.execute(f"SELECT count(*) FROM {SCHEMA}.{TABLE}{clause}", params).fetchall()[0][0]
    con.execute(f"DELETE FROM {SCHEMA}.{TABLE}{clause}", params)
    return int(count)
