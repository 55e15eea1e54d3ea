"""The spot check's Close side without the API: the raw JSON kept in close.* (a JSON export file)."""

from __future__ import annotations

import json

import duckdb

from migration_assets.audit.spot_sources import CloseSource


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("CREATE SCHEMA close")
    con.execute("CREATE TABLE close.leads (id VARCHAR, raw VARCHAR)")
    con.execute(
        "CREATE TABLE close.contacts (id VARCHAR, lead_id VARCHAR, date_created VARCHAR, raw VARCHAR)"
    )
    con.execute("CREATE TABLE close.users (id VARCHAR, name VARCHAR)")  # no raw JSON kept
    con.execute(
        "INSERT INTO close.leads VALUES ('lead_1', ?), ('lead_2', ?)",
        [
            json.dumps({"id": "lead_1", "name": "Acme"}),
            json.dumps({"id": "lead_2", "name": "Globex", "contacts": []}),
        ],
    )
    con.execute(
        "INSERT INTO close.contacts VALUES ('cont_b', 'lead_1', '2024-02-01', ?), ('cont_a', 'lead_1', '2024-01-01', ?)",
        [json.dumps({"id": "cont_b"}), json.dumps({"id": "cont_a"})],
    )
    return con


def test_objects_are_read_from_the_raw_json_and_tables_without_it_are_not_sources() -> None:
    con = _warehouse()
    source = CloseSource(con, None, {})
    first = source.raw("leads", "lead_1")
    assert first is not None and [c["id"] for c in first["contacts"]] == ["cont_a", "cont_b"]  # oldest first
    assert source.raw("leads", "lead_2") == {"id": "lead_2", "name": "Globex", "contacts": []}
    assert source.raw("leads", "lead_9") is None
    assert source.raw("users", "user_1") is None and not source.readable("users", "user")
    assert source.raw("sms", "acti_1") is None and not source.readable("sms", "sms")
    assert source.readable("leads", "lead")
    # Created after the first look: a spot check reads one warehouse state, the answer is kept.
    con.execute("CREATE TABLE close.sms (id VARCHAR, raw VARCHAR)")
    assert source.raw("sms", "acti_1") is None
    assert CloseSource(con, None, {}).readable("sms", "sms")
